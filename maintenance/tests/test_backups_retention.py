"""Retention (maintenance/backups/retention.py) over a synthetic calendar: no database, no files,
only (name, created_at, verified) and a clock that moves."""

import datetime

from maintenance.backups.retention import retention_plan

UTC = datetime.UTC
START = datetime.datetime(2026, 1, 1, 4, 0, tzinfo=UTC)  # a Thursday
POLICY = dict(keep_last=3, keep_daily=7, keep_weekly=4)


def _name(at: datetime.datetime) -> str:
    return f"pastq-{at:%Y%m%dT%H%M%SZ}-0000.pgdump.zst"


def _simulate(days: int, *, per_day=(datetime.time(4, 0),), verified=lambda at: True,
              policy=POLICY):
    """Backups made every day at the given times for `days` days, cleanup run after each one
    (as the verify job does). Returns the backups left and every plan along the way."""
    kept: dict[str, tuple[datetime.datetime, bool]] = {}
    deleted_ever: set[str] = set()
    for day in range(days):
        for time_of_day in per_day:
            at = datetime.datetime.combine(START.date() + datetime.timedelta(days=day),
                                           time_of_day, tzinfo=UTC)
            kept[_name(at)] = (at, verified(at))
            plan = retention_plan([(n, c, v) for n, (c, v) in kept.items()],
                                  now=at + datetime.timedelta(minutes=5), **policy)
            assert not deleted_ever & set(plan.keep), "a deleted backup was wanted again"
            for name in plan.delete:
                deleted_ever.add(name)
                del kept[name]
    return kept


def test_ninety_days_of_daily_backups_keep_the_last_the_dailies_and_the_weeklies():
    kept = _simulate(90)
    last_day = START + datetime.timedelta(days=89)  # 2026-03-31, a Tuesday
    days_kept = sorted(c.date() for c, _ in kept.values())

    # 7 dailies (the last 3 are among them) …
    dailies = [(last_day - datetime.timedelta(days=n)).date() for n in range(7)]
    assert set(dailies) <= set(days_kept)
    # … and one a week for 4 ISO weeks: this week's is today's; the 3 weeks before keep their
    # Sunday (the newest of the week).
    sundays = [datetime.date(2026, 3, 29), datetime.date(2026, 3, 22), datetime.date(2026, 3, 15)]
    assert set(sundays) <= set(days_kept)
    assert sorted(days_kept) == sorted(set(dailies) | set(sundays))
    assert len(kept) == 9


def test_the_newest_verified_backup_is_kept_however_old():
    # Verification broke on day 10: nothing after it verified.
    broke = START + datetime.timedelta(days=10)
    kept = _simulate(60, verified=lambda at: at < broke)
    newest_verified = max(c for c, v in kept.values() if v)
    assert newest_verified.date() == (broke - datetime.timedelta(days=1)).date()
    assert sum(1 for _c, v in kept.values() if v) == 1


def test_a_day_keeps_its_verified_backup_over_a_newer_unverified_one():
    morning = datetime.datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
    evening = morning.replace(hour=20)
    later = [(f"n{n}", evening + datetime.timedelta(days=n), True) for n in range(1, 4)]
    plan = retention_plan([("morning", morning, True), ("evening", evening, False), *later],
                          now=evening + datetime.timedelta(days=4), keep_last=3, keep_daily=7,
                          keep_weekly=0)
    assert "morning" in plan.keep and plan.delete == ["evening"]


def test_several_backups_a_day_keep_one_per_day_beyond_the_last_n():
    kept = _simulate(10, per_day=(datetime.time(4, 0), datetime.time(12, 0),
                                  datetime.time(20, 0)), policy=dict(keep_last=3, keep_daily=7,
                                                                     keep_weekly=0))
    dates = sorted(c.date() for c, _ in kept.values())
    # the last 3 (today's three) and the newest of each of the 6 days before
    assert len(kept) == 3 + 6 and len(set(dates)) == 7


def test_nothing_to_keep_by_policy_still_keeps_the_newest_verified_and_future_dates():
    now = datetime.datetime(2026, 6, 1, tzinfo=UTC)
    backups = [("old-verified", now - datetime.timedelta(days=400), True),
               ("old", now - datetime.timedelta(days=300), False),
               ("future", now + datetime.timedelta(days=1), False)]
    plan = retention_plan(backups, now=now, keep_last=0, keep_daily=0, keep_weekly=0)
    assert plan.keep == {"old-verified": ["newest verified"], "future": ["dated in the future"]}
    assert plan.delete == ["old"]


def test_reasons_name_the_rule():
    now = datetime.datetime(2026, 3, 4, 5, 0, tzinfo=UTC)  # Wednesday
    plan = retention_plan([("today", now.replace(hour=4), True)], now=now, **POLICY)
    assert plan.keep["today"] == ["last", "daily 2026-03-04", "weekly 2026-W10",
                                  "newest verified"]


def test_deploy_check_warns_without_a_backup_key_and_refuses_a_bad_one(settings):
    from maintenance.backups import crypto
    from maintenance.checks import backups_encrypted

    settings.DEBUG = False
    settings.BACKUP_ENCRYPTION_KEY = ""
    settings.BACKUP_DECRYPTION_KEYS = []
    [warning] = backups_encrypted(None)
    assert warning.id == "maintenance.W001"
    settings.BACKUP_ENCRYPTION_KEY = "not-a-key"
    [error] = backups_encrypted(None)
    assert error.id == "maintenance.E001" and "not-a-key" not in error.msg
    settings.BACKUP_ENCRYPTION_KEY = crypto.key_generate()
    assert backups_encrypted(None) == []
