import json

from django.core.management.base import BaseCommand, CommandError

from maintenance.optimise import (
    MIN_DEAD_RATIO,
    MIN_DEAD_TUPLES,
    OptimiseError,
    database_optimise,
)

TABLES_SHOWN = 10


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


class Command(BaseCommand):
    help = (
        "Optimise the database, as the database_optimise job does on Sundays at 05:00. "
        "PostgreSQL: VACUUM (ANALYZE) each table whose dead tuples reach --min-dead-ratio of "
        "its rows (and --min-dead-tuples), then report table and index sizes and the indexes "
        "never scanned (neither unique nor primary). SQLite: PRAGMA optimize, a WAL "
        "checkpoint (TRUNCATE) and PRAGMA integrity_check, with the file's size before and "
        "after. Neither blocks reads or writes for long. --dry-run says which tables would be "
        "vacuumed and changes nothing (SQLite still runs the read-only integrity check). "
        "Exit status 1 when a VACUUM or the integrity check failed, 2 for bad usage."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="Report what would be done; change nothing.")
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print the whole report as JSON.")
        parser.add_argument(
            "--min-dead-ratio", type=float, default=MIN_DEAD_RATIO, metavar="RATIO",
            help=f"PostgreSQL: vacuum a table with at least this share of dead rows "
                 f"(default {MIN_DEAD_RATIO}).")
        parser.add_argument(
            "--min-dead-tuples", type=int, default=MIN_DEAD_TUPLES, metavar="N",
            help=f"PostgreSQL: and at least this many dead rows (default {MIN_DEAD_TUPLES}).")

    def handle(self, *args, dry_run=False, as_json=False, min_dead_ratio=MIN_DEAD_RATIO,
               min_dead_tuples=MIN_DEAD_TUPLES, **options):
        try:
            report = database_optimise(dry_run=dry_run, min_dead_ratio=min_dead_ratio,
                                       min_dead_tuples=min_dead_tuples)
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None
        except OptimiseError as exc:
            raise CommandError(str(exc)) from None
        if as_json:
            self.stdout.write(json.dumps(report))
        elif report["engine"] == "postgresql":
            self._postgresql(report)
        else:
            self._sqlite(report)
        if report["status"] != "ok":
            raise SystemExit(1)

    def _postgresql(self, report: dict) -> None:
        out = self.stdout.write
        thresholds = report["thresholds"]
        out(f"Database: {_size(report['database_bytes'])}. Tables with at least "
            f"{thresholds['min_dead_ratio']:.0%} and {thresholds['min_dead_tuples']} dead rows: "
            f"{len(report['candidates'])}.")
        for candidate in report["candidates"]:
            head = (f"  {candidate['table']}: {candidate['dead_tuples']} dead of "
                    f"{candidate['dead_tuples'] + candidate['live_tuples']} rows "
                    f"({candidate['dead_ratio']:.0%})")
            if candidate["error"]:
                out(self.style.ERROR(f"{head}: VACUUM failed: {candidate['error']}"))
            elif candidate["vacuumed"]:
                out(f"{head}: vacuumed and analysed in {candidate['duration_ms']:.0f} ms")
            else:
                out(f"{head}: would be vacuumed and analysed")
        out(f"Largest tables (of {len(report['tables'])}): total = table + indexes")
        for table in report["tables"][:TABLES_SHOWN]:
            out(f"  {table['table']}: {_size(table['total_bytes'])} = "
                f"{_size(table['table_bytes'])} + {_size(table['index_bytes'])} indexes, "
                f"{table['live_tuples']} rows, {table['dead_tuples']} dead")
        since = report["stats_since"] or "the server's statistics began"
        unused = report["unused_indexes"]
        out(f"Indexes never scanned since {since} (neither unique nor primary): {len(unused)}"
            + (", largest first (a hint, not a verdict: an index on a foreign key serves the "
               "rare delete of the rows it points at):" if unused else "."))
        for index in unused[:TABLES_SHOWN]:
            out(f"  {index['index']} on {index['table']}: {_size(index['bytes'])}")
        self._verdict(report)

    def _sqlite(self, report: dict) -> None:
        out = self.stdout.write
        out(f"Database: {report['database']}")
        if report["dry_run"]:
            out(f"  size {_size(report['size_before_bytes'])} (with its WAL); would run "
                "PRAGMA optimize and a WAL checkpoint (TRUNCATE)")
        else:
            checkpoint = report["checkpoint"]
            busy = " (a reader kept part of the log)" if checkpoint["busy"] else ""
            out(f"  PRAGMA optimize: done; WAL checkpoint: {checkpoint['checkpointed_frames']} "
                f"of {checkpoint['log_frames']} frames{busy}")
            out(f"  size with its WAL: {_size(report['size_before_bytes'])} before, "
                f"{_size(report['size_after_bytes'])} after")
        integrity = report["integrity"]
        if integrity["ok"]:
            out("  integrity check: ok")
        else:
            out(self.style.ERROR("  integrity check FAILED:"))
            for problem in integrity["problems"]:
                out(self.style.ERROR(f"    {problem}"))
        self._verdict(report)

    def _verdict(self, report: dict) -> None:
        if report["dry_run"]:
            verdict = "Dry run: nothing was changed"
        elif report["status"] == "ok":
            verdict = "Optimisation done"
        else:
            verdict = "Optimisation found problems"
        self.stdout.write(f"{verdict} ({report['duration_ms'] / 1000:.1f} s).")
