"""10,000 daily summaries rendered and delivered to an SMTP sink on loopback (`send_due`: claim,
contents, render, send over one connection per batch, record), beside bare `smtplib` sending
the same messages, already rendered, over one connection.

    .venv/bin/python bench/notifications.py                    # SQLite (a scratch file)
    .venv/bin/python bench/notifications.py --postgres         # PostgreSQL (scratch database
                                                               # pastq_bench_notifications)
    .venv/bin/python bench/notifications.py --students 1000    # a quick look
    .venv/bin/python bench/notifications.py --profile          # and cProfile one more run

The students live in eleven time zones from UTC−11 to UTC+14. Each has a DailyStudentStats
row for their last closed local day (so every summary has something to say) and two in three
a StudentInsight (a streak). At NOW (2026-12-04 12:00 UTC) their summaries are planned as
`send_notifications --kind daily_summary` plans them (`planning.rows_for_kind` + `write`:
each student's local yesterday, due now), then `sending.send_due(now=NOW)` sends them with
Django's SMTP backend (EMAIL_URL) to the sink. The sink is a minimal asyncio SMTP server in a
process of its own (`--sink aiosmtpd` for aiosmtpd's), so it is not the bottleneck; it counts
what arrives.

*Limit*: the same messages (the ledger's subject, text and HTML after our run, built into the
same MIME bytes with `sending.message_build`, as Django's backend serialises them) sent by one
`smtplib.SMTP` connection in a `sendmail` loop; only the loop is timed. Target: our throughput
at least half of the limit's. Runs alternate (ours, bare) --repeat times; medians are shown.

Queries: every statement of `send_due` is counted (a connection execute wrapper, what
CaptureQueriesContext counts, without its per-query cost); a first run of 1,000 students
(--check-students) shows the same queries per batch as 10,000: they grow with batches, not
with students. DEBUG is switched off after set-up, as in production (the scratch database
sets it on, and Django then keeps every statement's SQL).
"""

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file's name would
# shadow the project's `notifications` app: put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import datetime  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import smtplib  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from bench.scratch import scratch_django  # noqa: E402

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
ZONES = ["Pacific/Pago_Pago", "Pacific/Honolulu", "America/Los_Angeles", "America/New_York",
         "America/Sao_Paulo", "Europe/London", "Africa/Lagos", "Asia/Kolkata", "Asia/Tokyo",
         "Australia/Sydney", "Pacific/Kiritimati"]
FIRST_NAMES = ["Ada", "Kwame", "Priya", "Mei", "Lucas", "Amara", "Sven", "Yuki", "Omar", "Zoë"]
LAST_NAMES = ["Okafor", "Tanaka", "Silva", "Müller", "Nguyen", "Smith", "Haddad", "Kowalski"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--pg-database", default="pastq_bench_notifications",
                        help="scratch PostgreSQL database (dropped and created)")
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--check-students", type=int, default=1_000,
                        help="the smaller run whose queries per batch are compared")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="NOTIFICATIONS_BATCH_SIZE (default: the setting's, 200)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--sink", choices=["minimal", "aiosmtpd"], default="minimal")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one more run of ours (top 25 by cumulative time)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch database (and print where it is)")
    args = parser.parse_args()

    sink = Sink(args.sink)
    try:
        # Before Django reads its settings: mail goes to the sink through Django's SMTP backend.
        os.environ["EMAIL_URL"] = f"smtp://127.0.0.1:{sink.port}"
        os.environ.pop("EMAIL_BACKEND", None)
        if args.batch_size:
            os.environ["NOTIFICATIONS_BATCH_SIZE"] = str(args.batch_size)
        with scratch_django(postgres=args.postgres, name=args.pg_database, keep=args.keep):
            from django.conf import settings

            settings.DEBUG = False  # no query log; the template engine is made after this
            run(args, sink)
    finally:
        sink.stop()


# --- The SMTP sink --------------------------------------------------------------------------


class _SinkProtocol(asyncio.Protocol):
    """Just enough SMTP for smtplib: 250 to every command, 354 to DATA, then the message up to
    the lone dot; counts messages and their bytes."""

    def __init__(self, counts):
        self.counts = counts

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()
        self.searched = 0
        self.in_data = False
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data):
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n", self.searched)
                if end < 0:
                    self.searched = max(0, len(self.buffer) - 4)
                    return
                self.counts[0] += 1
                self.counts[1] += end + 2
                del self.buffer[:end + 5]
                self.searched = 0
                self.in_data = False
                self.transport.write(b"250 2.0.0 queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            verb = bytes(self.buffer[:4]).upper()
            del self.buffer[:end + 2]
            if verb == b"EHLO":
                self.transport.write(b"250-sink\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 end with <CRLF>.<CRLF>\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 OK\r\n")


def _sink_minimal(port, counts, ready):
    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _SinkProtocol(counts), "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def _sink_aiosmtpd(port, counts, ready):
    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            counts[0] += 1
            counts[1] += len(envelope.content)
            return "250 2.0.0 queued"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


class Sink:
    """The sink in a process of its own (forked before Django is set up), so it has a core to
    itself rather than sharing this process's GIL."""

    def __init__(self, kind: str):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        context = multiprocessing.get_context("fork")
        self.counts = context.Array("q", 2, lock=False)  # messages, bytes; one writer
        ready = context.Event()
        target = _sink_minimal if kind == "minimal" else _sink_aiosmtpd
        self.process = context.Process(target=target, args=(self.port, self.counts, ready),
                                       daemon=True)
        self.process.start()
        if not ready.wait(10):
            raise RuntimeError("the SMTP sink did not start")

    def received(self) -> tuple[int, int]:
        return self.counts[0], self.counts[1]

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


# --- Data -----------------------------------------------------------------------------------


def local_yesterday(zone: str) -> datetime.date:
    return NOW.astimezone(ZoneInfo(zone)).date() - datetime.timedelta(days=1)


def load_world(students: int) -> None:
    """Users, profiles and default preferences as `student_create` makes them (its signal adds
    the NotificationPreference), in bulk; each student's closed day in DailyStudentStats; a
    StudentInsight for two students in three."""
    from analytics.models import DailyStudentStats, StudentInsight
    from core.models import StudentProfile, User
    from notifications.models import NotificationPreference

    User.objects.bulk_create(
        [User(email=f"student{n}@example.com", password="!", is_demo=True,
              first_name=FIRST_NAMES[n % len(FIRST_NAMES)],
              last_name=LAST_NAMES[n * 7 % len(LAST_NAMES)]) for n in range(students)],
        batch_size=2_000)
    ids = list(User.objects.order_by("pk").values_list("pk", flat=True))
    zones = {pk: ZONES[n % len(ZONES)] for n, pk in enumerate(ids)}
    StudentProfile.objects.bulk_create(
        [StudentProfile(user_id=pk, timezone=zones[pk], daily_question_goal=(5, 10, 20)[n % 3])
         for n, pk in enumerate(ids)], batch_size=2_000)
    NotificationPreference.objects.bulk_create(
        [NotificationPreference(user_id=pk) for pk in ids], batch_size=2_000)
    stats = []
    for n, pk in enumerate(ids):
        attempts = 1 + n * 37 % 40
        correct = attempts * (40 + n * 13 % 60) // 100
        stats.append(DailyStudentStats(
            student_id=pk, date=local_yesterday(zones[pk]), attempts=attempts, correct=correct,
            accuracy=correct / attempts, time_spent_ms=attempts * (20_000 + n * 101 % 90_000),
            distinct_questions=max(1, attempts - n % 4), first_attempts=max(1, attempts - n % 3),
            sessions=1 + n % 3, updated_at=NOW))
    DailyStudentStats.objects.bulk_create(stats, batch_size=2_000)
    StudentInsight.objects.bulk_create(
        [StudentInsight(student_id=pk, as_of=local_yesterday(zones[pk]), computed_at=NOW,
                        current_streak=n % 9, longest_streak=n % 9 + n % 5)
         for n, pk in enumerate(ids) if n % 3], batch_size=2_000)


def plan(emails: list[str] | None = None) -> int:
    """Ledger rows for the daily summaries, as `send_notifications --kind daily_summary`
    writes them. Returns how many are queued."""
    from notifications import planning
    from notifications.models import Notification

    rows = planning.rows_for_kind(Notification.Kind.DAILY_SUMMARY, now=NOW, emails=emails)
    outcome = planning.write(rows, now=NOW)
    return sum(outcome.planned.values())


def ledger_requeue() -> int:
    """Every row back to queued, as planning left it: the next run does the same work."""
    from notifications.models import Notification

    return Notification.objects.update(
        status=Notification.Status.QUEUED, reason="", detail="", claim="", claimed_at=None,
        attempts=0, message_id="", subject="", text="", html="", sent_at=None, retry_at=None,
        updated_at=NOW)


# --- Ours -----------------------------------------------------------------------------------


_STATEMENT = re.compile(r'^\s*(SAVEPOINT|RELEASE|ROLLBACK|BEGIN|COMMIT|SELECT|UPDATE|INSERT|DELETE)'
                        r'(?:.*?\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?)?', re.S | re.I)


def statement_label(sql: str) -> str:
    match = _STATEMENT.match(sql)
    if not match:
        return sql.split(None, 1)[0].upper()
    verb, table = match.group(1).upper(), match.group(2)
    if verb == "UPDATE":
        table = sql.split()[1].strip('"')
    return f"{verb} {table}" if table else verb


_TRANSACTION = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def is_transaction(label_or_sql: str) -> bool:
    return label_or_sql.lstrip().upper().startswith(_TRANSACTION)


class Measured:
    """Wall time of the steps of send_due (wrapping the module's functions), and every
    statement counted and labelled."""

    STEPS = ["claim", "contents", "render", "build", "serialise", "smtp", "record"]

    def __init__(self):
        self.spent = dict.fromkeys(self.STEPS, 0.0)
        self.statements = collections.Counter()
        self._undo = []

    def _wrap(self, owner, name, step):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[step] += time.perf_counter() - started

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def __enter__(self):
        from django.core.mail.backends.smtp import EmailBackend
        from django.db import connection

        from notifications import sending

        self._wrap(sending, "claim", "claim")
        self._wrap(sending, "batch_contents", "contents")
        self._wrap(sending, "render_row", "render")
        self._wrap(sending, "message_build", "build")
        self._wrap(sending, "_flush", "record")
        # Django's backend: the message serialised (message() and as_bytes) and then smtplib.
        self._wrap(EmailBackend, "send_messages", "serialise")
        self._wrap(smtplib.SMTP, "sendmail", "smtp")

        def count(execute, sql, params, many, context):
            self.statements[statement_label(sql)] += 1
            return execute(sql, params, many, context)

        self._wrapper = connection.execute_wrapper(count)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc):
        self._wrapper.__exit__(*exc)
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        # serialise was timed around smtplib's sendmail: keep only its own part. Opening the
        # connection (once per batch) is left in "other".
        self.spent["serialise"] -= self.spent["smtp"]

    @property
    def queries(self) -> int:
        return sum(n for label, n in self.statements.items() if not is_transaction(label))


def ours(sink) -> dict:
    from notifications import sending

    before = sink.received()[0]
    with Measured() as measured:
        started, cpu = time.perf_counter(), time.process_time()
        outcome = sending.send_due(now=NOW, budget_seconds=10**9)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    received = sink.received()[0] - before
    return {"seconds": seconds, "cpu": cpu, "sent": outcome.counts.get("sent", 0),
            "counts": outcome.counts, "batches": outcome.batches, "received": received, "queries": measured.queries,
            "statements": measured.statements, "spent": measured.spent}


# --- Bare smtplib ---------------------------------------------------------------------------


def messages_prebuilt() -> list[tuple[str, list[str], bytes]]:
    """The ledger's sent messages as Django's SMTP backend hands them to smtplib: the same
    MIME (sending.message_build from the stored subject, text and HTML), the same bytes."""
    from django.conf import settings
    from django.core.mail.message import sanitize_address

    from notifications.models import Notification
    from notifications.rendering import RenderedEmail
    from notifications.sending import message_build

    out = []
    rows = Notification.objects.filter(status=Notification.Status.SENT).order_by("send_after", "id")
    for row in rows.iterator(chunk_size=2_000):
        message = message_build(row, RenderedEmail(row.subject, row.text, row.html))
        encoding = message.encoding or settings.DEFAULT_CHARSET
        out.append((sanitize_address(message.from_email, encoding),
                    [sanitize_address(a, encoding) for a in message.recipients()],
                    message.message().as_bytes(linesep="\r\n")))
    return out


def bare(sink, messages) -> dict:
    before = sink.received()[0]
    smtp = smtplib.SMTP("127.0.0.1", sink.port, local_hostname="localhost", timeout=10)
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for from_address, recipients, data in messages:
            smtp.sendmail(from_address, recipients, data)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        smtp.quit()
    return {"seconds": seconds, "cpu": cpu, "sent": len(messages),
            "received": sink.received()[0] - before}


# --- The run --------------------------------------------------------------------------------


def run(args, sink):
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.models import User
    from notifications.models import Notification

    started = time.perf_counter()
    load_world(args.students)
    print(f"data: {args.students:,} students in {len(ZONES)} time zones, "
          f"{args.students:,} daily stats rows ({connection.vendor}, sink: {args.sink}) in "
          f"{time.perf_counter() - started:.1f} s; batch size "
          f"{settings.NOTIFICATIONS_BATCH_SIZE}", flush=True)

    # 1. Queries at check_students, then at all students: the same per batch. The first run
    # also warms up (templates compiled, the backend imported).
    small = min(args.check_students, args.students)
    emails = list(User.objects.order_by("pk").values_list("email", flat=True)[:small])
    plan(emails)
    with CaptureQueriesContext(connection) as captured:
        check = ours(sink)
    # The same count as CaptureQueriesContext's, less transaction control (which it logs
    # too: SQLite's BEGIN IMMEDIATE and every COMMIT).
    data_statements = [q for q in captured if not is_transaction(q["sql"])]
    if len(data_statements) != check["queries"]:
        raise SystemExit(f"CaptureQueriesContext saw {len(data_statements)} statements, the "
                         f"counter {check['queries']}")
    if not check["sent"] == check["received"] == small:
        raise SystemExit(f"lost mail at {small}: sent {check['sent']}, received "
                         f"{check['received']}")
    transactions = sum(q["sql"].upper().startswith("COMMIT") for q in captured)
    Notification.objects.all().delete()

    started = time.perf_counter()
    queued = plan()
    plan_seconds = time.perf_counter() - started
    print(f"planned: {queued:,} daily summaries queued in {plan_seconds:.2f} s "
          f"(rows_for_kind + write)", flush=True)

    runs_ours, runs_bare, messages = [], [], None
    for attempt in range(args.repeat):
        if attempt:
            ledger_requeue()
        result = ours(sink)
        runs_ours.append(result)
        print(f"  ours #{attempt + 1}: {result['sent']:,} sent in {result['seconds']:.2f} s "
              f"({result['sent'] / result['seconds']:,.0f}/s), {result['queries']} queries, "
              f"{result['received']:,} received by the sink", flush=True)
        if messages is None:
            messages = messages_prebuilt()
            sizes = [len(data) for _f, _t, data in messages]
        result = bare(sink, messages)
        runs_bare.append(result)
        print(f"  bare #{attempt + 1}: {result['sent']:,} sent in {result['seconds']:.2f} s "
              f"({result['sent'] / result['seconds']:,.0f}/s), "
              f"{result['received']:,} received by the sink", flush=True)

    for result in runs_ours + runs_bare:
        if result["received"] != result["sent"] or result["sent"] != queued:
            raise SystemExit(f"lost mail: planned {queued}, sent {result['sent']}, "
                             f"received {result['received']}")

    # The median run of each side (the faster of the two middle ones for an even count).
    main_run = sorted(runs_ours, key=lambda r: r["seconds"])[(len(runs_ours) - 1) // 2]
    bare_seconds = statistics.median_low(r["seconds"] for r in runs_bare)
    ours_rate = queued / main_run["seconds"]
    bare_rate = queued / bare_seconds
    ratio = ours_rate / bare_rate

    best_ours = min(r["seconds"] for r in runs_ours)
    best_bare = min(r["seconds"] for r in runs_bare)
    print(f"\nmessages: {queued:,} ({statistics.mean(sizes) / 1024:.1f} KiB on average); "
          f"medians of {args.repeat} runs, the fastest run in brackets; cpu: this process")
    print(f"{'':30}{'seconds':>16}{'msgs/s':>16}{'cpu s':>8}")
    print(f"{'ours (send_due)':30}{main_run['seconds']:8.2f} ({best_ours:5.2f})"
          f"{ours_rate:8,.0f} ({queued / best_ours:5,.0f})"
          f"{statistics.median(r['cpu'] for r in runs_ours):8.2f}")
    print(f"{'bare smtplib, one connection':30}{bare_seconds:8.2f} ({best_bare:5.2f})"
          f"{bare_rate:8,.0f} ({queued / best_bare:5,.0f})"
          f"{statistics.median(r['cpu'] for r in runs_bare):8.2f}")
    print(f"ratio ours/bare throughput: {ratio:.3f} (fastest runs: {best_bare / best_ours:.3f}); "
          f"target >= 0.5: {'PASS' if ratio >= 0.5 else 'FAIL'}")
    spent = main_run["spent"]
    other = main_run["seconds"] - sum(spent.values())
    per = 1000 / queued
    print("ours per message: " + ", ".join(
        f"{step} {spent[step] * per:.3f} ms" for step in Measured.STEPS)
        + f", other {other * per:.3f} ms; total {main_run['seconds'] * per:.3f} ms "
          f"(bare: {bare_seconds * per:.3f} ms)")

    print(f"\nqueries: {check['queries']} for {small:,} students in {check['batches']} batches; "
          f"{main_run['queries']} for {queued:,} in {main_run['batches']} batches "
          f"(statements; transaction control not counted: {transactions} commits at {small:,})")
    b1, b2 = check["batches"], main_run["batches"]
    if b2 != b1:
        # Each kind of statement as fixed + per_batch x batches, from the two runs.
        labels = sorted(label for label in set(check["statements"]) | set(main_run["statements"])
                        if not is_transaction(label))
        per_batch, fixed = {}, {}
        for label in labels:
            slope = (main_run["statements"][label] - check["statements"][label]) / (b2 - b1)
            per_batch[label] = slope
            fixed[label] = check["statements"][label] - slope * b1
        print("  per batch: " + ", ".join(f"{label} {n:g}" for label, n in per_batch.items()
                                           if n))
        print("  once per run: " + ", ".join(f"{label} {n:g}" for label, n in fixed.items()
                                              if n))
        print(f"  queries = {sum(fixed.values()):g} + {sum(per_batch.values()):g} x batches, "
              f"batches = ceil(due / {settings.NOTIFICATIONS_BATCH_SIZE}) "
              f"(the last claim, which finds nothing, is in the fixed part)")

    if args.profile:
        profile_run()


def profile_run():
    import cProfile
    import pstats

    from notifications import sending

    ledger_requeue()
    profiler = cProfile.Profile()
    profiler.enable()
    sending.send_due(now=NOW, budget_seconds=10**9)
    profiler.disable()
    print("\ncProfile of one more run of ours, top 25 by cumulative time:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
