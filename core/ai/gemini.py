"""Gemini through `google-genai`: embeddings (`GeminiEmbedder`) and explanations and metadata
(`GeminiGenerator`), behind one small adapter (`GeminiConnection`).

Every request goes through `GeminiConnection.send`, the one place that
- takes a slot from the shared limits first (`core/ai/limits.py`: the request rate and the
  daily caps; a cap reached sends nothing),
- maps failures to the contract's errors (`map_gemini_error`): 408, 429, 5xx, timeouts and
  connection failures are `ProviderUnavailable` (transient: the job system retries them with
  backoff); other 4xx are `ProviderError` with the status (permanent, recorded),
- and adds the tokens the request used to the day's count.

The SDK's own retries are switched off (the job system owns retries) and every request has a
timeout. `GEMINI_BASE_URL` replaces Google's endpoint, so a proxy, or in tests a fake server on
loopback (`core/tests/fake_gemini.py`), stands in. The settings are read in one place,
`gemini_settings()`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import httpx2
import pydantic
from django.conf import settings
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from core.ai.limits import LimitSettings, ProviderLimits
from core.ai.types import (
    Explanation,
    Generated,
    ProviderError,
    ProviderUnavailable,
    QuestionInput,
    QuestionMetadata,
)

try:  # the SDK talks through httpx2 by default, through httpx when GOOGLE_GENAI_HTTP_CLIENT=httpx
    import httpx
except ImportError:  # httpx is only an optional extra of google-genai
    httpx = None

_http_packages = [package for package in (httpx2, httpx) if package is not None]
# Worth retrying later: no answer in time, the connection failed or broke, the proxy failed.
TRANSIENT_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    cls for package in _http_packages
    for cls in (package.TimeoutException, package.NetworkError, package.RemoteProtocolError,
                package.ProxyError))
TIMEOUT_ERRORS = tuple(package.TimeoutException for package in _http_packages)
# A base URL the client cannot use: a configuration mistake, not worth retrying.
BAD_URL_ERRORS = tuple(cls for package in _http_packages
                       for cls in (package.UnsupportedProtocol, package.InvalidURL))

TRANSIENT_STATUSES = frozenset({408, 429})  # and every 5xx
EMBEDDING_TASK_TYPE = "SEMANTIC_SIMILARITY"
MAX_TEXTS_PER_EMBED_REQUEST = 100  # batchEmbedContents refuses more


# --- Settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeminiSettings:
    api_key: str = ""
    base_url: str = ""  # "": Google's endpoint
    timeout_seconds: float = 30.0
    model: str = "gemini-3.8-flash"
    embedding_model: str = "gemini-embedding-001"
    embedding_dimension: int = 768
    # Google publishes no duplicate threshold for gemini-embedding-001. Its embeddings guide
    # shows, with SEMANTIC_SIMILARITY, a paraphrase pair in the mid 0.9s and unrelated
    # questions in the mid 0.7s; 0.90 sits between them. A starting point, to be calibrated on
    # the project's paraphrase set with a real key (GEMINI_DUPLICATE_THRESHOLD).
    duplicate_threshold: float = 0.90
    requests_per_minute: int = 0
    daily_requests: int = 0
    daily_tokens: int = 0
    rate_max_wait_seconds: float = 60.0

    @property
    def configured(self) -> bool:
        return bool(self.api_key)

    @property
    def limits(self) -> LimitSettings:
        return LimitSettings(requests_per_minute=self.requests_per_minute,
                             daily_requests=self.daily_requests, daily_tokens=self.daily_tokens,
                             max_wait_seconds=self.rate_max_wait_seconds)


def gemini_settings() -> GeminiSettings:
    """The one place that reads Gemini's settings (the defaults are GeminiSettings')."""
    default = GeminiSettings()
    return GeminiSettings(
        api_key=getattr(settings, "GEMINI_API_KEY", default.api_key) or "",
        base_url=getattr(settings, "GEMINI_BASE_URL", default.base_url) or "",
        timeout_seconds=float(getattr(settings, "GEMINI_TIMEOUT_SECONDS",
                                      default.timeout_seconds)),
        model=getattr(settings, "GEMINI_MODEL", "") or default.model,
        embedding_model=getattr(settings, "GEMINI_EMBEDDING_MODEL", "")
        or default.embedding_model,
        embedding_dimension=int(getattr(settings, "GEMINI_EMBEDDING_DIM",
                                        default.embedding_dimension)),
        duplicate_threshold=float(getattr(settings, "GEMINI_DUPLICATE_THRESHOLD",
                                          default.duplicate_threshold)),
        requests_per_minute=int(getattr(settings, "GEMINI_RPM", default.requests_per_minute)),
        daily_requests=int(getattr(settings, "GEMINI_DAILY_REQUESTS", default.daily_requests)),
        daily_tokens=int(getattr(settings, "GEMINI_DAILY_TOKENS", default.daily_tokens)),
        rate_max_wait_seconds=float(getattr(settings, "GEMINI_RATE_MAX_WAIT_SECONDS",
                                            default.rate_max_wait_seconds)),
    )


# --- The adapter ----------------------------------------------------------------------------


def gemini_client(config: GeminiSettings) -> genai.Client:
    """A google-genai client for the Gemini Developer API with our timeout and no retries."""
    if not config.api_key:
        raise ProviderError("GEMINI_API_KEY is not set: Gemini is not configured.")
    http_options = genai_types.HttpOptions(
        base_url=config.base_url or None,
        # HttpOptions.timeout is in milliseconds; the SDK hands httpx timeout/1000 seconds (for
        # connecting, each read and each write) and sends it as X-Server-Timeout.
        timeout=max(1, round(config.timeout_seconds * 1000)),
        # One attempt: with no retry_options the sync client already stops after one attempt,
        # but the aiohttp path retries connection errors by itself unless retry_options is set,
        # and a default may change between releases. The job system owns retries.
        retry_options=genai_types.HttpRetryOptions(attempts=1),
    )
    # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in a worker's environment must not reroute us.
    return genai.Client(api_key=config.api_key, vertexai=False, http_options=http_options)


def map_gemini_error(exc: BaseException, *, timeout_seconds: float | None = None
                     ) -> ProviderError | ProviderUnavailable | None:
    """The contract's error for a failure of a Gemini request, or None when it is not one (a
    bug of ours, which must surface as it is)."""
    if isinstance(exc, genai_errors.APIError):
        code = exc.code or 0
        what = f"Gemini answered {code} {exc.status or ''}: {exc.message or exc.details}".strip()
        if code in TRANSIENT_STATUSES or 500 <= code < 600:
            return ProviderUnavailable(what)
        return ProviderError(what, status=code, raw=_details_text(exc.details))
    if isinstance(exc, TIMEOUT_ERRORS):
        limit = f" within {timeout_seconds:g} s" if timeout_seconds else " in time"
        return ProviderUnavailable(f"Gemini did not answer{limit} ({type(exc).__name__}).")
    if isinstance(exc, TRANSIENT_TRANSPORT_ERRORS):
        return ProviderUnavailable(f"Could not reach Gemini: {type(exc).__name__}: {exc}")
    if isinstance(exc, BAD_URL_ERRORS):
        return ProviderError(f"GEMINI_BASE_URL cannot be used: {exc}")
    if isinstance(exc, (json.JSONDecodeError, genai_errors.UnknownApiResponseError)):
        # A 200 whose body is not JSON: a proxy's error page or a cut-off answer.
        return ProviderUnavailable(f"Gemini's response was not JSON: {exc}")
    return None


def _details_text(details) -> str:
    try:
        return json.dumps(details, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(details)


R = TypeVar("R")


class GeminiConnection:
    """One client, the shared limits and the error mapping: every request to Gemini goes
    through `send`."""

    def __init__(self, config: GeminiSettings | None = None, *,
                 client: genai.Client | None = None, limits: ProviderLimits | None = None):
        self.config = config or gemini_settings()
        self.client = client or gemini_client(self.config)
        self.limits = limits or ProviderLimits("gemini", self.config.limits)

    def send(self, request: Callable[[genai.Client], R]) -> R:
        self.limits.acquire()  # may wait for the minute; raises when a cap is reached
        try:
            response = request(self.client)
        except Exception as exc:
            mapped = map_gemini_error(exc, timeout_seconds=self.config.timeout_seconds)
            if mapped is None:
                raise
            raise mapped from exc
        self.limits.record_tokens(tokens_used(response))
        return response

    def close(self) -> None:
        self.client.close()


def tokens_used(response) -> int:
    usage = getattr(response, "usage_metadata", None)
    return (getattr(usage, "total_token_count", None) or 0) if usage else 0


# --- Embeddings -----------------------------------------------------------------------------


class GeminiEmbedder:
    """gemini-embedding-001 (by default) through batchEmbedContents, at most 100 texts per
    request, L2-normalised (below 3072 dimensions the API's vectors are not).

    Task type SEMANTIC_SIMILARITY: the vectors serve symmetric comparisons of texts of one kind
    (a question against the other questions, for duplicates and `find_similar`), and one
    `embed()` serves both the stored side and the looked-up side. RETRIEVAL_DOCUMENT is half of
    an asymmetric pair meant for RETRIEVAL_QUERY lookups, which this protocol does not have.
    """

    max_batch = MAX_TEXTS_PER_EMBED_REQUEST

    def __init__(self, config: GeminiSettings | None = None, *,
                 connection: GeminiConnection | None = None):
        self.connection = connection or GeminiConnection(config)
        config = self.connection.config
        self.model = config.embedding_model
        self.name = f"gemini:{config.embedding_model}"
        self.dimension = config.embedding_dimension
        self.duplicate_threshold = config.duplicate_threshold

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        texts = list(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.max_batch):
            vectors.extend(self._embed_batch(texts[start:start + self.max_batch]))
        return vectors

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        config = genai_types.EmbedContentConfig(task_type=EMBEDDING_TASK_TYPE,
                                                output_dimensionality=self.dimension)
        response = self.connection.send(
            lambda client: client.models.embed_content(model=self.model, contents=texts,
                                                       config=config))
        embeddings = response.embeddings or []
        if len(embeddings) != len(texts):
            raise ProviderUnavailable(
                f"Gemini returned {len(embeddings)} embeddings for {len(texts)} texts.")
        return [self._normalised(embedding.values or []) for embedding in embeddings]

    def _normalised(self, values: list[float]) -> list[float]:
        if len(values) != self.dimension:
            raise ProviderError(
                f"{self.model} returned {len(values)} dimensions where GEMINI_EMBEDDING_DIM asks "
                f"for {self.dimension}.")
        norm = math.sqrt(math.fsum(value * value for value in values))
        if not norm:
            raise ProviderError(f"{self.model} returned a zero vector, which has no direction.")
        return [value / norm for value in values]


# --- Generation -----------------------------------------------------------------------------


class InvalidAnswer(ValueError):
    """The model's answer is not what was asked: not JSON, against the schema, or a concluded
    option that is not one of the question's."""


SYSTEM_INSTRUCTION = (
    "You help students practise past exam questions. Answer only with JSON that follows the "
    "given schema. Be accurate: your answers are checked.")


def question_block(question: QuestionInput) -> str:
    lines = [f"Subject: {question.subject}"]
    if question.topic:
        lines.append(f"Topic: {question.topic}")
    lines.append(f"Question type: {question.question_type}")
    lines.append(f"Marks: {question.marks}")
    if question.year:
        lines.append(f"Exam year: {question.year}")
    lines += ["", "Question:", question.text.strip()]
    if question.choices:
        # The options only: which one is correct is never sent, so the model's conclusion can
        # be checked against the answer key.
        lines += ["", "Options:"]
        lines += [f"{choice.label}. {choice.text.strip()}" for choice in question.choices]
    return "\n".join(lines)


def explanation_prompt(question: QuestionInput) -> str:
    labels = ", ".join(choice.label for choice in question.choices)
    if question.choices:
        task = (
            "Solve this question yourself, step by step, without assuming that any option is "
            "correct. Then write the explanation a student needs: the method, the working, and "
            "why the other options are wrong. Finally give, in `concluded_label`, the label of "
            f"the option your working arrives at (one of {labels}); leave `concluded_answer` "
            "null.")
    else:
        task = (
            "Solve this question yourself, step by step. Then write the explanation a student "
            "needs: the method and the working. Finally give your final answer, as short as "
            "possible (a number with its unit, a word, a sentence), in `concluded_answer`; "
            "leave `concluded_label` null.")
    return f"{question_block(question)}\n\n{task}"


def metadata_prompt(question: QuestionInput) -> str:
    topics = (
        "Choose `topics` (one to three) from this list of the subject's topics, spelt exactly "
        "as listed: " + "; ".join(question.topics_available) + "."
        if question.topics_available else
        "Give `topics`: one to three short topic names within the subject.")
    return (
        f"{question_block(question)}\n\n"
        "Describe this question for an exam-practice question bank.\n"
        f"- {topics}\n"
        "- `keywords`: up to ten terms a student would search for.\n"
        "- `difficulty`: easy, medium or hard for a student sitting this exam.\n"
        "- `bloom_level`: the level of Bloom's taxonomy the question tests.\n"
        "- `question_type`: one of multiple_choice, true_false, numeric, short_answer, essay.\n"
        "- `estimated_time_seconds`: how long a prepared student needs to answer it.")


def explanation_schema(labels: Sequence[str]) -> type[Explanation]:
    """`Explanation`, with `concluded_label` narrowed to the question's labels: the model is
    steered to a valid label, and the answer is validated against `Explanation` either way."""
    if not labels:
        return Explanation
    return pydantic.create_model(
        "Explanation", __base__=Explanation, __doc__=Explanation.__doc__,
        concluded_label=(Literal[tuple(labels)] | None, None))  # type: ignore[valid-type]


def parse_explanation(text: str, labels: Sequence[str]) -> Explanation:
    explanation = _validated(Explanation, text)
    if labels:
        given = (explanation.concluded_label or "").strip()
        canonical = {label.strip().casefold(): label for label in labels}
        if given.casefold() not in canonical:
            raise InvalidAnswer(
                f"concluded_label {explanation.concluded_label!r} is not one of the options "
                f"({', '.join(labels)}).")
        explanation = explanation.model_copy(update={"concluded_label": canonical[given.casefold()]})
    return explanation


def parse_metadata(text: str) -> QuestionMetadata:
    return _validated(QuestionMetadata, text)


def _validated(model: type[pydantic.BaseModel], text: str):
    if not text.strip():
        raise InvalidAnswer("the answer is empty.")
    try:
        return model.model_validate_json(text)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'answer'}: {error['msg']}"
            for error in exc.errors()[:5])
        raise InvalidAnswer(problems) from exc


class GeminiGenerator:
    """Explanations and metadata with structured JSON output. An invalid answer is asked for
    again once; a second invalid answer raises ProviderError with the raw text kept."""

    def __init__(self, config: GeminiSettings | None = None, *,
                 connection: GeminiConnection | None = None):
        self.connection = connection or GeminiConnection(config)
        self.model = self.connection.config.model
        self.name = f"gemini:{self.model}"

    def explain(self, question: QuestionInput) -> Generated:
        labels = [choice.label for choice in question.choices]
        return self._generate(explanation_prompt(question), explanation_schema(labels),
                              lambda text: parse_explanation(text, labels), what="explanation")

    def metadata(self, question: QuestionInput) -> Generated:
        return self._generate(metadata_prompt(question), QuestionMetadata, parse_metadata,
                              what="metadata")

    def _generate(self, prompt: str, schema: type[pydantic.BaseModel],
                  parse: Callable[[str], Explanation | QuestionMetadata], *, what: str
                  ) -> Generated:
        config = genai_types.GenerateContentConfig(
            system_instruction=SYSTEM_INSTRUCTION,
            response_mime_type="application/json",
            response_schema=schema,
            # One HTTP request per call, so each passes the limits: the SDK would otherwise send
            # follow-up requests by itself (a response ending in CONTINUATION, tools' calls).
            automatic_continuation=False,
            automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
        )
        tokens, problems, raw = 0, [], ""
        for attempt in (1, 2):
            contents = prompt if attempt == 1 else (
                f"{prompt}\n\nYour previous answer could not be used ({problems[-1]}). Answer "
                "again with JSON that follows the schema exactly.")
            response = self.connection.send(
                lambda client, contents=contents: client.models.generate_content(
                    model=self.model, contents=contents, config=config))
            tokens += tokens_used(response)
            raw = response.text or ""
            try:
                value = parse(raw)
            except InvalidAnswer as exc:
                problems.append(str(exc) if raw.strip() else _why_empty(response))
                continue
            return Generated(value=value, model=self.model, tokens=tokens, raw=raw)
        raise ProviderError(
            f"Gemini's {what} was invalid twice: first {problems[0]}; then {problems[1]}",
            raw=raw)


def _why_empty(response) -> str:
    candidates = response.candidates or []
    finish = candidates[0].finish_reason if candidates else None
    feedback = response.prompt_feedback
    blocked = feedback.block_reason if feedback else None
    return (f"the answer is empty (finish reason {finish or 'none'}"
            f"{f', blocked: {blocked}' if blocked else ''}).")
