"""Models of the core app: the domain (domain.py) and the job plumbing's records, which live
with the plumbing (core/jobs/models.py) and are registered here."""

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
    ProcessingStatus,
    Question,
    SeedRecord,
    StudentProfile,
    Subject,
    Topic,
    User,
    UserManager,
    validate_timezone,
)
