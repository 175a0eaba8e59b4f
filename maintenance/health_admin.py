"""The admin's health history: each stored run of the health checks (the health-checks job every
5 minutes, and `manage.py health_check`), read-only. maintenance/admin.py imports this module."""

from __future__ import annotations

import datetime

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from maintenance.models import HealthCheckRun
from maintenance.records_admin import ReadOnlyAdmin

STATUS_COLOURS = {"pass": "#2e7d32", "warn": "#b26a00", "fail": "#c62828"}


def _status_badge(status: str):
    return format_html('<strong style="color: {}">{}</strong>',
                       STATUS_COLOURS.get(status, "inherit"), status.upper())


def _ms(ms: float | None):
    return format_html('<span style="white-space: nowrap">{} ms</span>', f"{ms or 0:,.0f}")


def _figure(value: float) -> str:
    """A measured number as a person reads it: 698.268 -> "698", 7.11 -> "7.1"."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.2f}"


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("pass", "Pass"), ("warn", "Warn"), ("fail", "Fail")]

    def queryset(self, request, queryset):
        return queryset.filter(status=self.value()) if self.value() else queryset


@admin.register(HealthCheckRun)
class HealthCheckRunAdmin(ReadOnlyAdmin):
    """Written by the checks, never by hand: viewable (and deletable), not added or edited."""

    list_display = ["checked", "status_badge", "source", "duration", "problems"]
    list_filter = [StatusFilter, "source"]
    date_hierarchy = "checked_at"
    show_full_result_count = False  # a count over months of runs, on every page, is not needed
    fields = ["checked_at", "status_badge", "source", "duration", "checks_table"]
    readonly_fields = fields

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: HealthCheckRun):
        return _status_badge(obj.status)

    @admin.display(description="Took", ordering="duration_ms")
    def duration(self, obj: HealthCheckRun):
        return _ms(obj.duration_ms)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        if run is not None:  # the heading: "Health checks at 2026-12-04 22:21 UTC: FAIL"
            extra_context = {**(extra_context or {}), "subtitle": (
                f"Health checks at {run.checked_at.astimezone(datetime.UTC):%Y-%m-%d %H:%M} "
                f"UTC: {run.status.upper()}")}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Checked at", ordering="checked_at")
    def checked(self, obj: HealthCheckRun):
        # To the second: runs of the command may be seconds apart.
        return format_html('<span style="white-space: nowrap">{}</span>',
                           f"{obj.checked_at.astimezone(datetime.UTC):%Y-%m-%d %H:%M:%S}")

    @admin.display(description="Checks that did not pass")
    def problems(self, obj: HealthCheckRun):
        failing = [(c.get("name"), c.get("status")) for c in self._checks(obj)
                   if c.get("status") != "pass"]
        if not failing:
            return "—"
        return format_html_join(", ", '<span style="white-space: nowrap">{} ({})</span>',
                                failing)

    @admin.display(description="Checks")
    def checks_table(self, obj: HealthCheckRun):
        rows = format_html_join(
            "", '<tr><td style="white-space: nowrap">{}</td><td>{}</td><td>{}</td><td>{}</td>'
                '<td style="white-space: nowrap">{}</td><td style="text-align: right">{}</td>'
                "</tr>",
            ((check.get("name", ""), _status_badge(str(check.get("status", ""))),
              "critical" if check.get("critical") else "warning only", check.get("output", ""),
              self._observed(check), _ms(check.get("duration_ms")))
             for check in self._checks(obj)))
        return format_html(
            '<table style="width: 100%"><thead><tr><th>Check</th><th>Status</th><th>Kind</th>'
            '<th>Output</th><th>Observed</th><th style="text-align: right">Took</th></tr>'
            "</thead><tbody>{}</tbody></table>", rows)

    @staticmethod
    def _checks(obj: HealthCheckRun) -> list[dict]:
        return [c for c in (obj.checks or []) if isinstance(c, dict)]

    @staticmethod
    def _observed(check: dict) -> str:
        observed = check.get("observed")
        if observed is None or observed == "":
            return "—"
        unit = check.get("unit") or ""
        if isinstance(observed, bool) or not isinstance(observed, int | float):
            return f"{observed} {unit}".strip()
        if unit == "MB" and observed >= 10 * 1024:  # free disk space, as the check says it
            observed, unit = observed / 1024, "GB"
        return f"{_figure(observed)} {unit}".strip()
