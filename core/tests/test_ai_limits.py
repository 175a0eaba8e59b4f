"""The shared limits on AI providers (core/ai/limits.py): the request rate, the daily caps, and
the atomicity of their counters under real concurrency (threads with their own database
connections on PostgreSQL; a real Redis when one runs on 127.0.0.1:6379)."""

import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache.backends.redis import RedisCache
from django.db import connection

from core.ai.limits import (
    DatabaseCounters,
    LimitSettings,
    ProviderLimits,
    RedisCounters,
    day_start,
    minute_start,
    usage_counters,
)
from core.ai.models import AiUsage
from core.ai.types import ProviderUnavailable, QuotaExhausted

MINUTE, DAY = AiUsage.Window.MINUTE, AiUsage.Window.DAY


class Clock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, start: datetime):
        self.moment, self.slept = start, []

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.moment += timedelta(seconds=seconds)


def limits_with(clock: Clock, counters=None, **settings) -> ProviderLimits:
    return ProviderLimits("test-provider", LimitSettings(**settings), counters=counters,
                          now=clock.now, sleep=clock.sleep)


# --- Sequential behaviour (any database) ----------------------------------------------------


@pytest.mark.django_db
def test_windows_are_utc_minutes_and_days():
    moment = datetime(2026, 3, 10, 23, 59, 42, 123, tzinfo=UTC)
    assert minute_start(moment) == datetime(2026, 3, 10, 23, 59, tzinfo=UTC)
    assert day_start(moment) == datetime(2026, 3, 10, tzinfo=UTC)


@pytest.mark.django_db
def test_the_database_counter_grants_up_to_the_cap_and_no_more():
    counters = DatabaseCounters()
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    granted = [counters.take("p", MINUTE, start, cap=3) for _ in range(5)]

    assert granted == [True, True, True, False, False]
    assert AiUsage.objects.get(provider="p", window=MINUTE, window_start=start).requests == 3


@pytest.mark.django_db
def test_no_cap_counts_every_request():
    counters = DatabaseCounters()
    start = datetime(2026, 3, 10, tzinfo=UTC)
    assert all(counters.take("p", DAY, start, cap=0) for _ in range(4))
    assert counters.read("p", DAY, start).requests == 4


@pytest.mark.django_db
def test_a_request_in_a_full_minute_waits_for_the_next_one():
    clock = Clock(datetime(2026, 3, 10, 12, 0, 45, tzinfo=UTC))
    limits = limits_with(clock, requests_per_minute=2, max_wait_seconds=60)

    for _ in range(3):
        limits.acquire()

    assert clock.slept == [15.0]  # from 12:00:45 to 12:01:00
    rows = AiUsage.objects.filter(provider="test-provider", window=MINUTE).order_by("window_start")
    assert [(r.window_start.minute, r.requests) for r in rows] == [(0, 2), (1, 1)]
    assert limits.usage_today().requests == 3


@pytest.mark.django_db
def test_a_full_minute_further_away_than_the_wait_allowed_is_transient():
    clock = Clock(datetime(2026, 3, 10, 12, 0, 5, tzinfo=UTC))
    limits = limits_with(clock, requests_per_minute=1, max_wait_seconds=30)
    limits.acquire()

    with pytest.raises(ProviderUnavailable, match="1 requests per minute"):
        limits.acquire()  # the next minute is 55 s away
    assert clock.slept == []


@pytest.mark.django_db
def test_the_daily_request_cap_raises_quota_exhausted_without_waiting_for_the_minute():
    clock = Clock(datetime(2026, 3, 10, 12, 0, 5, tzinfo=UTC))
    limits = limits_with(clock, requests_per_minute=1, daily_requests=1, max_wait_seconds=60)
    limits.acquire()

    with pytest.raises(QuotaExhausted, match="daily cap of 1 requests .* until 2026-03-11 00:00"):
        limits.acquire()
    assert clock.slept == []

    clock.moment = datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC)  # a new UTC day
    limits.acquire()


@pytest.mark.django_db
def test_tokens_are_added_after_and_the_day_refuses_once_they_reach_the_cap():
    clock = Clock(datetime(2026, 3, 10, 8, 0, tzinfo=UTC))
    limits = limits_with(clock, daily_tokens=1000)
    limits.acquire()
    limits.record_tokens(999)
    limits.acquire()  # 999 < 1000: one more may start
    limits.record_tokens(500)  # it crosses the cap: known only now

    with pytest.raises(QuotaExhausted, match="daily cap of 1000 tokens .*1499 used"):
        limits.acquire()
    assert limits.usage_today().requests == 2


@pytest.mark.django_db
def test_old_minute_rows_are_pruned_and_day_rows_kept():
    clock = Clock(datetime(2026, 3, 10, 8, 0, tzinfo=UTC))
    limits = limits_with(clock, requests_per_minute=100)
    limits.acquire()
    clock.moment += timedelta(hours=2)
    limits.acquire()

    minutes = AiUsage.objects.filter(window=MINUTE).values_list("window_start", flat=True)
    assert list(minutes) == [datetime(2026, 3, 10, 10, 0, tzinfo=UTC)]
    assert AiUsage.objects.get(window=DAY).requests == 2


def test_the_counters_follow_the_default_cache(settings):
    assert isinstance(usage_counters(), DatabaseCounters)  # the tests' cache: the database
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:6379/15"}}
    assert isinstance(usage_counters(), RedisCounters)


# --- Concurrency ----------------------------------------------------------------------------


def race(count: int, call, *, database: bool = True):
    """Run `call` in `count` threads released together by a barrier (each with its own
    database connection); returns what each returned or raised."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(index):
        try:
            if database:
                connection.ensure_connection()  # connect first: the race is between the writes
            barrier.wait(timeout=10)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001  (reported to the test)
            results[index] = exc
        finally:
            if database:
                connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
    return results


POSTGRES_ONLY = pytest.mark.postgres_only(
    reason="concurrent writers need PostgreSQL; SQLite runs one write transaction at a time")


@pytest.mark.django_db(transaction=True)
@POSTGRES_ONLY
@pytest.mark.parametrize("already_used", [0, 7])  # a window started by the race, or nearly full
def test_workers_racing_for_the_last_slots_never_pass_the_cap(already_used):
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    if already_used:
        AiUsage.objects.create(provider="p", window=MINUTE, window_start=start,
                               requests=already_used)
    cap = 10

    results = race(16, lambda: DatabaseCounters().take("p", MINUTE, start, cap=cap))

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert results.count(True) == cap - already_used
    assert AiUsage.objects.get(provider="p", window=MINUTE, window_start=start).requests == cap


@pytest.mark.django_db(transaction=True)
@POSTGRES_ONLY
def test_workers_racing_for_the_daily_cap_through_the_limits():
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    AiUsage.objects.create(provider="test-provider", window=DAY,
                           window_start=day_start(clock.now()), requests=95)

    def acquire():
        limits_with(clock, daily_requests=100).acquire()
        return "granted"

    results = race(12, acquire)

    assert results.count("granted") == 5
    assert all(isinstance(r, QuotaExhausted) for r in results if r != "granted")
    assert AiUsage.objects.get(provider="test-provider", window=DAY).requests == 100


# --- Redis ----------------------------------------------------------------------------------


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def redis_cache():
    if not _redis_up():
        pytest.skip("no Redis on 127.0.0.1:6379")
    cache = RedisCache("redis://127.0.0.1:6379/15",
                       {"KEY_PREFIX": f"pastq-test-{uuid.uuid4().hex[:8]}"})
    keys = []
    original = RedisCounters._key

    def remembered(provider, window, start, what):
        key = original(provider, window, start, what)
        keys.append(key)
        return key

    yield cache, remembered, keys
    cache.delete_many(set(keys))


def test_redis_counters_grant_up_to_the_cap_and_expire(redis_cache, monkeypatch):
    cache, remembered, keys = redis_cache
    monkeypatch.setattr(RedisCounters, "_key", staticmethod(remembered))
    counters = RedisCounters(cache)
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    assert [counters.take("p", MINUTE, start, cap=2) for _ in range(3)] == [True, True, False]
    assert counters.read("p", MINUTE, start).requests == 2  # the refused one gave its slot back
    client = cache._cache.get_client(write=False)
    assert 0 < client.ttl(cache.make_key(keys[0])) <= 120


def test_redis_token_cap(redis_cache, monkeypatch):
    cache, remembered, _ = redis_cache
    monkeypatch.setattr(RedisCounters, "_key", staticmethod(remembered))
    clock = Clock(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    limits = limits_with(clock, counters=RedisCounters(cache), daily_tokens=100)
    limits.acquire()
    limits.record_tokens(100)

    with pytest.raises(QuotaExhausted, match="100 tokens"):
        limits.acquire()


@pytest.mark.parametrize("already_used", [0, 7])
def test_redis_workers_racing_for_the_last_slots_never_pass_the_cap(redis_cache, monkeypatch,
                                                                    already_used):
    cache, remembered, _ = redis_cache
    monkeypatch.setattr(RedisCounters, "_key", staticmethod(remembered))
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    for _ in range(already_used):
        RedisCounters(cache).take("p", DAY, start, cap=0)

    results = race(16, lambda: RedisCounters(cache).take("p", DAY, start, cap=10),
                   database=False)

    assert [r for r in results if isinstance(r, BaseException)] == []
    assert results.count(True) == 10 - already_used
    assert RedisCounters(cache).read("p", DAY, start).requests == 10
