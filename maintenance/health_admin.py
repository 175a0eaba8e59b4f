"""The admin's health history: each stored run of the health checks (the health-checks job every
5 minutes, and `manage.py health_check`), read-only. maintenance/admin.py imports this module."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from maintenance.models import HealthCheckRun

STATUS_COLOURS = {"pass": "#2e7d32", "warn": "#b26a00", "fail": "#c62828"}


def _status_badge(status: str):
    return format_html('<strong style="color: {}">{}</strong>',
                       STATUS_COLOURS.get(status, "inherit"), status.upper())


@admin.register(HealthCheckRun)
class HealthCheckRunAdmin(admin.ModelAdmin):
    """Written by the checks, never by hand: viewable (and deletable), not added or edited."""

    list_display = ["checked_at", "status_badge", "source", "duration", "problems"]
    list_filter = ["status", "source"]
    date_hierarchy = "checked_at"
    show_full_result_count = False  # a count over months of runs, on every page, is not needed
    fields = ["checked_at", "status", "source", "duration_ms", "checks_table"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: HealthCheckRun):
        return _status_badge(obj.status)

    @admin.display(description="Took", ordering="duration_ms")
    def duration(self, obj: HealthCheckRun) -> str:
        return f"{obj.duration_ms:.0f} ms"

    @admin.display(description="Checks that did not pass")
    def problems(self, obj: HealthCheckRun) -> str:
        failing = [f"{c.get('name')} ({c.get('status')})" for c in self._checks(obj)
                   if c.get("status") != "pass"]
        return ", ".join(failing) or "—"

    @admin.display(description="Checks")
    def checks_table(self, obj: HealthCheckRun):
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((check.get("name", ""), _status_badge(str(check.get("status", ""))),
              "critical" if check.get("critical") else "warning", check.get("output", ""),
              self._observed(check), f"{check.get('duration_ms') or 0:.1f} ms")
             for check in self._checks(obj)))
        return format_html(
            "<table><thead><tr><th>Check</th><th>Status</th><th>Kind</th><th>Output</th>"
            "<th>Observed</th><th>Took</th></tr></thead><tbody>{}</tbody></table>", rows)

    @staticmethod
    def _checks(obj: HealthCheckRun) -> list[dict]:
        return [c for c in (obj.checks or []) if isinstance(c, dict)]

    @staticmethod
    def _observed(check: dict) -> str:
        observed = check.get("observed")
        if observed is None or observed == "":
            return "—"
        return f"{observed} {check.get('unit') or ''}".strip()
