"""The contract between the pipeline and its providers: inputs, outputs and errors.

Providers never touch the database: the pipeline reads questions, hands providers plain
`QuestionInput`s, and writes what comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from core.jobs import TransientError


@dataclass(frozen=True)
class ChoiceInput:
    label: str
    text: str
    is_correct: bool


@dataclass(frozen=True)
class QuestionInput:
    """A question as a provider sees it."""

    id: int
    subject: str  # the subject's name, e.g. "Mathematics"
    topic: str  # the topic's name, or ""
    question_type: str  # a Question.Type value
    text: str
    choices: tuple[ChoiceInput, ...] = ()
    answer: str = ""  # the model answer of a non-choice question
    marks: int = 1
    year: int | None = None
    topics_available: tuple[str, ...] = field(default=())  # the subject's topic names

    @property
    def key_label(self) -> str | None:
        return next((c.label for c in self.choices if c.is_correct), None)


# --- What generation returns ----------------------------------------------------------------

BloomLevel = Literal["remember", "understand", "apply", "analyze", "evaluate", "create"]
DifficultyLevel = Literal["easy", "medium", "hard"]


class QuestionMetadata(BaseModel):
    """Metadata of a question (Gemini's structured output, validated; the offline provider fills
    what it can measure and leaves the rest None)."""

    topics: list[str] = Field(default_factory=list, max_length=10)
    keywords: list[str] = Field(default_factory=list, max_length=20)
    difficulty: DifficultyLevel | None = None
    bloom_level: BloomLevel | None = None
    question_type: str | None = None
    estimated_time_seconds: int | None = Field(default=None, ge=5, le=7200)


class Explanation(BaseModel):
    """A worked explanation, and which option (or answer) it concludes, so the pipeline can
    check it against the answer key."""

    explanation: str = Field(min_length=1)
    concluded_label: str | None = None  # choice questions: the option the explanation picks
    concluded_answer: str | None = None  # other questions: the answer it reaches


@dataclass
class Generated:
    """A generation's result with what it cost."""

    value: QuestionMetadata | Explanation
    model: str
    tokens: int = 0
    raw: str = ""


# --- Providers ------------------------------------------------------------------------------


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of `dimension` floats."""

    name: str  # identifies the vector space: a collection per (name, dimension)
    dimension: int
    # Cosine similarity above which two questions are recorded as possible duplicates: a
    # sentence model scores paraphrases far higher than feature hashing does.
    duplicate_threshold: float
    # How many texts one call (one request, for a remote provider) takes at most.
    max_batch: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class Generator(Protocol):
    """Writes explanations and metadata (Gemini); offline there is none for explanations."""

    name: str

    def explain(self, question: QuestionInput) -> Generated: ...

    def metadata(self, question: QuestionInput) -> Generated: ...


# --- Errors ---------------------------------------------------------------------------------


class ProviderError(Exception):
    """A provider failed for this input and retrying will not help (a 4xx other than 429, an
    answer that stays invalid): recorded as the step's failure, with the raw answer if any."""

    def __init__(self, message: str, *, raw: str = "", status: int | None = None):
        super().__init__(message)
        self.raw, self.status = raw, status


class ProviderUnavailable(TransientError):
    """Worth retrying later: a 429, a 5xx, a timeout, a connection refused."""


class QuotaExhausted(ProviderUnavailable):
    """A daily cap (requests or tokens) is reached: nothing more is sent until it resets; the
    steps stay pending."""
