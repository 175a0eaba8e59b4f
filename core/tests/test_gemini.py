"""Gemini through the real google-genai client, against a fake Gemini API on loopback
(core/tests/fake_gemini.py): request shapes, error mapping, retries of invalid answers,
timeouts, batching and the daily caps. Nothing here may reach beyond loopback: every test runs
under a guard that refuses any other address."""

import ipaddress
import math
import socket
import time

import pytest
from django.db import connection

from core.ai.gemini import (
    GeminiConnection,
    GeminiEmbedder,
    GeminiGenerator,
    GeminiSettings,
    gemini_client,
    gemini_settings,
)
from core.ai.limits import ProviderLimits, day_start
from core.ai.models import AiUsage
from core.ai.types import (
    ChoiceInput,
    Explanation,
    ProviderError,
    ProviderUnavailable,
    QuestionInput,
    QuestionMetadata,
    QuotaExhausted,
)
from core.jobs import RetryPolicy
from core.tests.fake_gemini import fake_vector

pytestmark = pytest.mark.django_db


# --- No network beyond loopback -------------------------------------------------------------


def _is_loopback(host) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse, and record, every name lookup and connection to anything but loopback (and the
    test database's host, should it be elsewhere)."""
    refused = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    database_host = connection.settings_dict.get("HOST") or ""

    def allowed(host) -> bool:
        host = host.decode() if isinstance(host, bytes) else host
        return _is_loopback(host) or (bool(database_host) and host == database_host)

    def getaddrinfo(host, *args, **kwargs):
        if not allowed(host):
            refused.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address[0]):
            refused.append(address[0])
            raise ConnectionRefusedError(f"test guard: no connection to {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return refused


# --- Fixtures -------------------------------------------------------------------------------


@pytest.fixture
def gemini(settings, fake_gemini):
    """Settings pointing the real client at the fake server, with no limits; returns the fake."""
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = fake_gemini.base_url
    settings.GEMINI_TIMEOUT_SECONDS = 5
    settings.GEMINI_MODEL = "gemini-test-flash"
    settings.GEMINI_EMBEDDING_MODEL = "gemini-embedding-001"
    settings.GEMINI_EMBEDDING_DIM = 768
    settings.GEMINI_RPM = 0
    settings.GEMINI_DAILY_REQUESTS = 0
    settings.GEMINI_DAILY_TOKENS = 0
    return fake_gemini


def choice_question(**overrides) -> QuestionInput:
    values = dict(
        id=7, subject="Mathematics", topic="Algebra", question_type="multiple_choice",
        text="Solve for x: 3x + 7 = 22.",
        choices=(ChoiceInput("A", "3", False), ChoiceInput("B", "5", True),
                 ChoiceInput("C", "7", False), ChoiceInput("D", "15", False)),
        marks=2, year=2019, topics_available=("Algebra", "Geometry", "Statistics"))
    return QuestionInput(**{**values, **overrides})


def numeric_question() -> QuestionInput:
    return QuestionInput(id=8, subject="Physics", topic="Mechanics", question_type="numeric",
                         text="A car travels 120 km in 1.5 hours. Its average speed in km/h?",
                         answer="80")


VALID_EXPLANATION = {"explanation": "3x = 22 - 7 = 15, so x = 5.", "concluded_label": "B",
                     "concluded_answer": None}
VALID_METADATA = {"topics": ["Algebra"], "keywords": ["linear equation"], "difficulty": "easy",
                  "bloom_level": "apply", "question_type": "multiple_choice",
                  "estimated_time_seconds": 60}


def is_retried_by_the_job_system(exc: BaseException) -> bool:
    return RetryPolicy().is_transient(exc)


# --- Settings and the client ----------------------------------------------------------------


def test_settings_come_from_django_settings_with_documented_defaults(settings):
    defaults = GeminiSettings()
    assert (defaults.model, defaults.embedding_model, defaults.embedding_dimension,
            defaults.timeout_seconds) == ("gemini-3.8-flash", "gemini-embedding-001", 768, 30.0)
    assert not defaults.configured

    settings.GEMINI_API_KEY = "k"
    settings.GEMINI_EMBEDDING_DIM = 1536
    settings.GEMINI_RPM = 60
    settings.GEMINI_DAILY_TOKENS = 5000
    read = gemini_settings()
    assert read.configured and read.embedding_dimension == 1536
    assert (read.limits.requests_per_minute, read.limits.daily_tokens) == (60, 5000)


def test_the_client_times_out_in_milliseconds_and_never_retries_by_itself():
    client = gemini_client(GeminiSettings(api_key="k", base_url="http://127.0.0.1:9/",
                                          timeout_seconds=2.5))
    options = client._api_client._http_options  # what the SDK will use for every request
    assert options.timeout == 2500  # HttpOptions.timeout is in milliseconds
    assert options.retry_options.attempts == 1
    assert options.base_url == "http://127.0.0.1:9/"


def test_the_api_key_goes_in_a_header_and_the_base_url_is_honoured(settings, gemini):
    settings.GEMINI_BASE_URL = gemini.base_url + "gemini-proxy/"

    GeminiEmbedder().embed(["What is 2 + 2?"])

    (request,) = gemini.requests
    assert request.path == "/gemini-proxy/v1/models/gemini-embedding-001:batchEmbedContents"
    assert request.headers["x-goog-api-key"] == "test-key"
    assert "test-key" not in request.path  # never in the URL, where logs and proxies keep it


def test_google_is_never_reached_without_a_base_url(settings, gemini, loopback_only):
    """The guard every test here runs under: the SDK's default endpoint is refused, and the
    refusal is an ordinary connection failure (transient)."""
    settings.GEMINI_BASE_URL = ""
    with pytest.raises(ProviderUnavailable):
        GeminiEmbedder().embed(["x"])
    assert loopback_only == ["generativelanguage.googleapis.com"]
    assert gemini.requests == []


# --- Embeddings -----------------------------------------------------------------------------


def test_more_than_100_texts_go_in_batches_of_at_most_100_in_order(gemini):
    texts = [f"Question number {i}: what is {i} squared?" for i in range(250)]
    embedder = GeminiEmbedder()

    vectors = embedder.embed(texts)

    sizes = [len(r.body["requests"]) for r in gemini.of("batchEmbedContents")]
    assert sizes == [100, 100, 50]
    assert gemini.violations == []
    assert len(vectors) == 250
    for text, vector in zip(texts, vectors, strict=True):
        expected = fake_vector(text, 768)
        norm = math.sqrt(sum(v * v for v in expected))
        assert vector == pytest.approx([v / norm for v in expected])
        assert math.sqrt(sum(v * v for v in vector)) == pytest.approx(1.0)
    first = gemini.requests[0].body["requests"][0]
    assert first["taskType"] == "SEMANTIC_SIMILARITY"
    assert first["outputDimensionality"] == 768
    assert first["model"] == "models/gemini-embedding-001"
    assert (embedder.name, embedder.dimension, embedder.max_batch) == (
        "gemini:gemini-embedding-001", 768, 100)


def test_nothing_to_embed_sends_nothing(gemini):
    assert GeminiEmbedder().embed([]) == []
    assert gemini.requests == []


def test_a_vector_of_another_dimension_is_refused(gemini):
    gemini.embedding_dimension = 3072  # as if output_dimensionality were ignored

    with pytest.raises(ProviderError, match="3072 dimensions where GEMINI_EMBEDDING_DIM asks"):
        GeminiEmbedder().embed(["x"])


# --- Generation -----------------------------------------------------------------------------


def test_explanation_prompt_gives_the_question_and_labelled_options_but_never_the_key(gemini):
    gemini.answer(VALID_EXPLANATION)

    generated = GeminiGenerator().explain(choice_question())

    assert generated.value == Explanation(**VALID_EXPLANATION)
    assert generated.model == "gemini-test-flash"
    assert generated.tokens == 120
    assert generated.raw.startswith('{"explanation"')
    (request,) = gemini.of("generateContent")
    assert request.path == "/v1/models/gemini-test-flash:generateContent"
    prompt = request.body["contents"][0]["parts"][0]["text"]
    assert "Solve for x: 3x + 7 = 22." in prompt
    assert all(line in prompt for line in ("A. 3", "B. 5", "C. 7", "D. 15"))
    assert "correct" not in prompt.replace("is correct", "")  # only "without assuming ..."
    assert "concluded_label" in prompt
    config = request.body["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config["responseSchema"]
    assert schema["properties"]["concluded_label"]["enum"] == ["A", "B", "C", "D"]
    assert schema["required"] == ["explanation"]


def test_a_numeric_question_concludes_an_answer(gemini):
    gemini.answer({"explanation": "120 / 1.5 = 80", "concluded_label": None,
                   "concluded_answer": "80 km/h"})

    generated = GeminiGenerator().explain(numeric_question())

    assert generated.value.concluded_answer == "80 km/h"
    prompt = gemini.requests[0].body["contents"][0]["parts"][0]["text"]
    assert "concluded_answer" in prompt
    assert "80" not in prompt  # the model answer is the key: never sent


def test_metadata_is_structured_and_validated(gemini):
    gemini.answer(VALID_METADATA)

    generated = GeminiGenerator().metadata(choice_question())

    assert generated.value == QuestionMetadata(**VALID_METADATA)
    request = gemini.requests[0]
    prompt = request.body["contents"][0]["parts"][0]["text"]
    assert "Algebra; Geometry; Statistics" in prompt
    schema = request.body["generationConfig"]["responseSchema"]
    assert schema["properties"]["difficulty"]["enum"] == ["easy", "medium", "hard"]


def test_malformed_json_is_asked_for_again_once_and_then_succeeds(gemini):
    gemini.answer('{"explanation": "3x = 15', VALID_EXPLANATION)

    generated = GeminiGenerator().explain(choice_question())

    assert generated.value.concluded_label == "B"
    assert generated.tokens == 240  # both requests cost
    first, second = gemini.of("generateContent")
    second_prompt = second.body["contents"][0]["parts"][0]["text"]
    assert "previous answer could not be used" in second_prompt


def test_twice_malformed_json_is_a_provider_error_with_the_raw_text_kept(gemini):
    gemini.answer("{not json", "still { not json")

    with pytest.raises(ProviderError) as caught:
        GeminiGenerator().explain(choice_question())

    assert caught.value.raw == "still { not json"
    assert caught.value.status is None
    assert "invalid twice" in str(caught.value)
    assert not is_retried_by_the_job_system(caught.value)
    assert len(gemini.of("generateContent")) == 2  # one retry, no more


def test_a_schema_violation_is_asked_for_again(gemini):
    gemini.answer({**VALID_METADATA, "difficulty": "impossible"}, VALID_METADATA)

    generated = GeminiGenerator().metadata(choice_question())

    assert generated.value.difficulty == "easy"
    second_prompt = gemini.requests[1].body["contents"][0]["parts"][0]["text"]
    assert "difficulty" in second_prompt.split("previous answer could not be used")[1]


def test_a_concluded_label_that_is_not_an_option_is_invalid(gemini):
    gemini.answer({**VALID_EXPLANATION, "concluded_label": "E"},
                  {**VALID_EXPLANATION, "concluded_label": None})

    with pytest.raises(ProviderError, match="not one of the options") as caught:
        GeminiGenerator().explain(choice_question())

    assert '"concluded_label": null' in caught.value.raw


def test_a_label_in_another_case_is_taken_as_the_option(gemini):
    gemini.answer({**VALID_EXPLANATION, "concluded_label": " b"})

    assert GeminiGenerator().explain(choice_question()).value.concluded_label == "B"


# --- Failures: what the job system sees -----------------------------------------------------


def test_429_is_transient_and_a_later_call_succeeds(gemini):
    gemini.fail(429)
    gemini.answer(VALID_EXPLANATION)
    generator = GeminiGenerator()

    with pytest.raises(ProviderUnavailable, match="429 RESOURCE_EXHAUSTED") as caught:
        generator.explain(choice_question())
    assert is_retried_by_the_job_system(caught.value)
    assert len(gemini.requests) == 1  # the SDK did not retry by itself: the job system does

    assert generator.explain(choice_question()).value.concluded_label == "B"
    assert len(gemini.requests) == 2


def test_a_burst_of_500s_is_transient_every_time_until_it_passes(gemini):
    gemini.fail(500, times=3)
    embedder = GeminiEmbedder()

    for _ in range(3):
        with pytest.raises(ProviderUnavailable, match="500") as caught:
            embedder.embed(["x"])
        assert is_retried_by_the_job_system(caught.value)

    assert len(embedder.embed(["x"])) == 1
    assert len(gemini.requests) == 4


def test_503_is_transient(gemini):
    gemini.fail(503)
    with pytest.raises(ProviderUnavailable):
        GeminiGenerator().metadata(choice_question())


def test_a_timeout_is_transient_and_not_retried_by_the_sdk(settings, gemini):
    settings.GEMINI_TIMEOUT_SECONDS = 0.5
    gemini.delay(3)
    started = time.monotonic()

    with pytest.raises(ProviderUnavailable, match="did not answer within 0.5 s") as caught:
        GeminiEmbedder().embed(["slow"])

    assert time.monotonic() - started < 2.5
    assert is_retried_by_the_job_system(caught.value)
    assert len(gemini.requests) == 1
    assert gemini.requests[0].headers["x-server-timeout"] == "1"


def test_a_refused_connection_is_transient(settings, gemini):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.GEMINI_BASE_URL = f"http://127.0.0.1:{closed_port}/"

    with pytest.raises(ProviderUnavailable, match="Could not reach Gemini"):
        GeminiEmbedder().embed(["x"])


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_4xx_are_permanent_with_their_status(gemini, status):
    gemini.fail(status)

    with pytest.raises(ProviderError) as caught:
        GeminiGenerator().explain(choice_question())

    assert caught.value.status == status
    assert not is_retried_by_the_job_system(caught.value)
    assert f'"code": {status}' in caught.value.raw  # the error body, for the admin
    assert len(gemini.requests) == 1


def test_a_wrong_api_key_is_permanent(settings, gemini):
    settings.GEMINI_API_KEY = "not-the-key"
    with pytest.raises(ProviderError) as caught:
        GeminiEmbedder().embed(["x"])
    assert caught.value.status == 403


# --- Limits on the way ----------------------------------------------------------------------


def test_the_daily_request_cap_reached_sends_nothing(settings, gemini):
    settings.GEMINI_DAILY_REQUESTS = 2
    embedder = GeminiEmbedder()
    embedder.embed(["one"])
    embedder.embed(["two"])

    with pytest.raises(QuotaExhausted, match="daily cap of 2 requests") as caught:
        embedder.embed(["three"])

    assert len(gemini.requests) == 2
    assert is_retried_by_the_job_system(caught.value)  # steps stay pending, retried later


def test_the_daily_token_cap_reached_sends_nothing(settings, gemini):
    settings.GEMINI_DAILY_TOKENS = 100
    gemini.answer(VALID_EXPLANATION, VALID_EXPLANATION)
    generator = GeminiGenerator()
    generator.explain(choice_question())  # 120 tokens: the request that crosses the cap ends

    with pytest.raises(QuotaExhausted, match="daily cap of 100 tokens"):
        generator.explain(choice_question())

    assert len(gemini.requests) == 1
    assert gemini.pending_answers == 1


def test_requests_and_tokens_are_counted_per_utc_day(gemini):
    gemini.answer(VALID_METADATA)
    GeminiGenerator().metadata(choice_question())
    GeminiEmbedder().embed(["a", "b", "c"])

    row = AiUsage.objects.get(provider="gemini", window=AiUsage.Window.DAY)
    assert row.window_start == day_start(row.window_start)
    assert (row.requests, row.tokens) == (2, 120 + 3 * 8)


def test_the_rate_full_for_longer_than_the_wait_allowed_is_transient(settings, gemini):
    settings.GEMINI_RPM = 1
    settings.GEMINI_RATE_MAX_WAIT_SECONDS = 0
    embedder = GeminiEmbedder()
    embedder.embed(["first"])

    with pytest.raises(ProviderUnavailable, match="1 requests per minute"):
        embedder.embed(["second"])
    assert len(gemini.requests) == 1


def test_a_connection_can_be_shared_by_the_embedder_and_the_generator(gemini):
    config = gemini_settings()
    limits = ProviderLimits("gemini", config.limits)
    connection = GeminiConnection(config, limits=limits)
    gemini.answer(VALID_METADATA)

    GeminiEmbedder(connection=connection).embed(["x"])
    GeminiGenerator(connection=connection).metadata(choice_question())

    assert limits.usage_today().requests == 2
    connection.close()
