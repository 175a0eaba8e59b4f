import json
import time

from django.core.management.base import BaseCommand, CommandError

from maintenance.health import FAIL, PASS, health_watch


class Command(BaseCommand):
    help = (
        "Check the system's health and tell the staff. Critical checks: the database (a round "
        "trip, migrations applied); for each queue, that a live qcluster serves it, its "
        "heartbeat, its oldest waiting task and the jobs that failed in the last hour; free "
        "disk under var/; Chroma (reachable, a vector for each embedded question). Warnings "
        "only: Gemini (a cheap call when GEMINI_API_KEY is set), the email backend (SMTP: "
        "connect, EHLO, NOOP), the age of the last verified backup. Each run is stored (the "
        "admin's health history); an alert, emailed once to ADMINS, opens when queues lose "
        "their last live cluster, work stops moving, or the disk or Chroma fails, and resolves "
        "when that clears. Run it from cron, a systemd timer or any monitor, every minute or "
        "few: it must not run inside the cluster it watches. Exit status 1 when a critical "
        "check fails, else 0. --json prints the report for scripts (docs/operations.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json",
                            help="Print the report as JSON.")
        parser.add_argument(
            "--repeat", type=int, metavar="SECONDS", default=0,
            help="Check again every SECONDS until stopped (for a process manager); prints a "
                 "report only when the overall status changes.")

    def handle(self, *args, as_json=False, repeat=0, **options):
        if repeat < 0:
            raise CommandError("--repeat takes a positive number of seconds.", returncode=2)
        last_status = None
        while True:
            report = health_watch(source="command")
            if report.status != last_status or not repeat:
                self._print(report, as_json)
            last_status = report.status
            if not repeat:
                break
            time.sleep(repeat)
        if report.status == FAIL:
            raise SystemExit(1)

    def _print(self, report, as_json):
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), default=str))
            return
        style = {PASS: self.style.SUCCESS, FAIL: self.style.ERROR}
        for check in report.checks:
            mark = style.get(check.status, self.style.WARNING)(f"{check.status.upper():4}")
            critical = "" if check.critical else " (warning only)"
            self.stdout.write(f"{mark}  {check.name}{critical}: {check.output}")
        self.stdout.write(f"Health: {report.status} at {report.checked_at:%Y-%m-%d %H:%M:%S} UTC "
                          f"({report.duration_ms:.0f} ms)")
