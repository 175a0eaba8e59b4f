"""Limits on a remote AI provider, shared by every worker on every machine.

- A request rate (requests per minute). A request that finds the current minute full waits for
  the next one, up to `max_wait_seconds`; past that it raises `ProviderUnavailable`, so the job
  is retried later by the job system.
- Daily caps on requests and tokens (cost control), per UTC day. A cap reached raises
  `QuotaExhausted` before anything is sent; the steps stay pending until the next UTC day.
  Tokens are known only after a request: they are added then, and once the day's tokens reach the
  cap no new request starts (the request that crosses it is not cut short).

0 means "no limit" for each of them. The counters are kept with atomic operations only:

- Redis, when the default cache is Redis: `INCR` returns each caller its own count, so exactly
  the callers whose count is within the cap get a slot; the others give theirs back (`DECR`).
- Otherwise the database (`AiUsage` rows): one conditional `UPDATE … SET requests = requests + 1
  WHERE … AND requests < cap`, whose row count says whether the slot was granted; the window's
  row is created first with `INSERT … ON CONFLICT DO NOTHING`. Django's database cache is not
  used: its `incr` is a get-then-set that lets concurrent workers race past a cap.

Windows are calendar minutes and days in UTC (fixed windows): around a minute boundary up to
twice the rate can be sent within 60 seconds, so set the rate a little under the provider's
quota; a 429 that still happens is transient and retried.

Call these outside database transactions (no network call happens inside one anyway): inside a
transaction the counter row would stay locked, and other workers waiting, until it commits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db.models import F
from django.utils import timezone

from core.ai.models import AiUsage
from core.ai.types import ProviderUnavailable, QuotaExhausted

Window = AiUsage.Window

# Minute rows older than this are deleted when a new minute starts (the rate needs only the
# current one); day rows stay.
MINUTE_ROWS_KEPT = timedelta(hours=1)
# Redis keys outlive their window by a margin, so a slow request never finds its key gone.
REDIS_KEY_SECONDS = {Window.MINUTE: 120, Window.DAY: 2 * 86_400}


@dataclass(frozen=True)
class LimitSettings:
    requests_per_minute: int = 0
    daily_requests: int = 0
    daily_tokens: int = 0
    max_wait_seconds: float = 60.0


@dataclass(frozen=True)
class Usage:
    requests: int = 0
    tokens: int = 0


class UsageCounters(Protocol):
    """Where the counters live: every worker on every machine must see the same ones."""

    def take(self, provider: str, window: str, start: datetime, *, cap: int,
             token_cap: int = 0) -> bool:
        """Count one request in the window if it has fewer than `cap` requests (0: no cap) and,
        with a `token_cap`, fewer tokens than that; whether it was counted."""

    def add_tokens(self, provider: str, window: str, start: datetime, tokens: int) -> None: ...

    def read(self, provider: str, window: str, start: datetime) -> Usage: ...


class DatabaseCounters:
    """`AiUsage` rows changed with conditional UPDATEs (atomic on PostgreSQL and SQLite)."""

    def take(self, provider, window, start, *, cap, token_cap=0):
        rows = AiUsage.objects.filter(provider=provider, window=window, window_start=start)
        if cap:
            rows = rows.filter(requests__lt=cap)
        if token_cap:
            rows = rows.filter(tokens__lt=token_cap)
        if rows.update(requests=F("requests") + 1):
            return True
        # No row for this window yet (or it is full): create it, race-free, and try again.
        self._create_row(provider, window, start)
        return bool(rows.update(requests=F("requests") + 1))

    def add_tokens(self, provider, window, start, tokens):
        if tokens <= 0:
            return
        rows = AiUsage.objects.filter(provider=provider, window=window, window_start=start)
        if not rows.update(tokens=F("tokens") + tokens):
            self._create_row(provider, window, start)  # the day turned during the request
            rows.update(tokens=F("tokens") + tokens)

    def read(self, provider, window, start):
        row = (AiUsage.objects.filter(provider=provider, window=window, window_start=start)
               .values("requests", "tokens").first())
        return Usage(**row) if row else Usage()

    def _create_row(self, provider, window, start):
        # INSERT … ON CONFLICT DO NOTHING (INSERT OR IGNORE on SQLite): two workers starting the
        # same window both succeed, and neither sees an IntegrityError.
        AiUsage.objects.bulk_create(
            [AiUsage(provider=provider, window=window, window_start=start)], ignore_conflicts=True)
        if window == Window.MINUTE:
            AiUsage.objects.filter(provider=provider, window=Window.MINUTE,
                                   window_start__lt=start - MINUTE_ROWS_KEPT).delete()


class RedisCounters:
    """Keys in the default cache when it is Redis, changed with INCR/DECR (atomic in Redis)."""

    def __init__(self, cache: RedisCache):
        self.cache = cache

    @staticmethod
    def _key(provider, window, start, what):
        return f"ai-usage:{provider}:{window}:{start:%Y%m%dT%H%M}:{what}"

    def _incr(self, key, window, delta=1):
        # Django's Redis incr refuses a missing key: create it with its expiry first (SET NX).
        self.cache.add(key, 0, timeout=REDIS_KEY_SECONDS[window])
        try:
            return self.cache.incr(key, delta)
        except ValueError:  # expired between the two calls: only long after its window
            self.cache.add(key, 0, timeout=REDIS_KEY_SECONDS[window])
            return self.cache.incr(key, delta)

    def take(self, provider, window, start, *, cap, token_cap=0):
        if token_cap and (self.cache.get(self._key(provider, window, start, "tokens")) or 0) \
                >= token_cap:
            return False
        key = self._key(provider, window, start, "requests")
        count = self._incr(key, window)
        if cap and count > cap:
            # Each caller got its own count from INCR: those above the cap give their slot back.
            with contextlib.suppress(ValueError):  # long expired: nothing to give back
                self.cache.decr(key)
            return False
        return True

    def add_tokens(self, provider, window, start, tokens):
        if tokens > 0:
            self._incr(self._key(provider, window, start, "tokens"), window, tokens)

    def read(self, provider, window, start):
        keys = [self._key(provider, window, start, what) for what in ("requests", "tokens")]
        values = self.cache.get_many(keys)
        return Usage(requests=int(values.get(keys[0], 0)), tokens=int(values.get(keys[1], 0)))


def usage_counters() -> UsageCounters:
    """Redis when the default cache is Redis, else the database."""
    cache = caches["default"]
    return RedisCounters(cache) if isinstance(cache, RedisCache) else DatabaseCounters()


def minute_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class ProviderLimits:
    """The limits of one provider (`provider` names its counters, e.g. "gemini").

        limits.acquire()            # before each request: waits, or raises
        response = send(...)
        limits.record_tokens(n)     # after it, with what it used
    """

    def __init__(self, provider: str, limits: LimitSettings, *,
                 counters: UsageCounters | None = None,
                 now: Callable[[], datetime] = timezone.now,
                 sleep: Callable[[float], None] = time.sleep):
        self.provider, self.limits = provider, limits
        self.counters = counters if counters is not None else usage_counters()
        self.now, self.sleep = now, sleep

    def acquire(self) -> None:
        """Take a slot for one request: raises QuotaExhausted when a daily cap is reached (and
        sends nothing), ProviderUnavailable when the minute stays full longer than allowed."""
        limits = self.limits
        if limits.daily_requests or limits.daily_tokens:
            # Refuse before waiting for a minute slot the day could not use anyway.
            self._refuse_if_day_exhausted(day_start(self.now()))
        if limits.requests_per_minute:
            self._wait_for_minute_slot()
        # The authoritative, atomic check of the day's caps; the day's requests are counted even
        # with no cap, as a record of use.
        day = day_start(self.now())
        if not self.counters.take(self.provider, Window.DAY, day, cap=limits.daily_requests,
                                  token_cap=limits.daily_tokens):
            self._refuse_if_day_exhausted(day)
            raise QuotaExhausted(f"{self.provider}: a daily cap was reached{self._until(day)}.")

    def record_tokens(self, tokens: int) -> None:
        self.counters.add_tokens(self.provider, Window.DAY, day_start(self.now()), tokens)

    def usage_today(self) -> Usage:
        return self.counters.read(self.provider, Window.DAY, day_start(self.now()))

    def _wait_for_minute_slot(self) -> None:
        waited = 0.0
        while True:
            now = self.now()
            minute = minute_start(now)
            if self.counters.take(self.provider, Window.MINUTE, minute,
                                  cap=self.limits.requests_per_minute):
                return
            pause = (minute + timedelta(minutes=1) - now).total_seconds()
            if waited + pause > self.limits.max_wait_seconds:
                raise ProviderUnavailable(
                    f"{self.provider}: the rate of {self.limits.requests_per_minute} requests "
                    f"per minute is used up and the next minute is more than "
                    f"{self.limits.max_wait_seconds:g} s of waiting away; retry later.")
            self.sleep(pause)
            waited += pause

    def _refuse_if_day_exhausted(self, day: datetime) -> None:
        used = self.counters.read(self.provider, Window.DAY, day)
        limits = self.limits
        if limits.daily_requests and used.requests >= limits.daily_requests:
            raise QuotaExhausted(
                f"{self.provider}: the daily cap of {limits.daily_requests} requests is reached "
                f"({used.requests} sent today){self._until(day)}.")
        if limits.daily_tokens and used.tokens >= limits.daily_tokens:
            raise QuotaExhausted(
                f"{self.provider}: the daily cap of {limits.daily_tokens} tokens is reached "
                f"({used.tokens} used today){self._until(day)}.")

    @staticmethod
    def _until(day: datetime) -> str:
        return f"; nothing more is sent until {day + timedelta(days=1):%Y-%m-%d %H:%M} UTC"
