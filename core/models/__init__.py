"""Models of the core app: the domain (domain.py), and records that live with their code and are
registered here: the job plumbing's (core/jobs/models.py) and the AI limits' (core/ai/models.py)."""

from core.ai.models import AiUsage  # noqa: F401  (the AI limits' counters)
from core.jobs.models import ClusterPresence, JobRun  # noqa: F401
from core.models.domain import *  # noqa: F403
from core.models.domain import (  # noqa: F401  (explicit names for tools and readers)
    Achievement,
    ApiToken,
    Attempt,
    Choice,
    Difficulty,
    ExamPaper,
    PracticeSession,
    Question,
    SeedRecord,
    StudentProfile,
    Subject,
    Topic,
    User,
    UserManager,
    validate_timezone,
)
from core.models.processing import QuestionStep, SimilarQuestion  # noqa: F401
