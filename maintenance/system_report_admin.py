"""The daily system reports in the admin: read-only (they are measurements), the figures shown as
the email shows them, the stored figures as JSON below. maintenance/admin.py imports this
module, which registers the admin."""

from __future__ import annotations

import datetime
import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from maintenance.models import SystemReport
from maintenance.records_admin import ReadOnlyAdmin
from maintenance.system_report import seconds_text, size_text, system_report_sections

_TONES = {"healthy": "#1e7d32", "degraded": "#c77c00", "critical": "#c62828"}


@admin.register(SystemReport)
class SystemReportAdmin(ReadOnlyAdmin):
    list_display = ["day", "status_badge", "attempts_on_day", "jobs_on_day", "newest_backup",
                    "database_size", "built_at"]
    list_filter = ["status"]
    date_hierarchy = "day"
    ordering = ["-day"]
    fields = ["day", "status_badge", "built_at", "figures", "stored_figures"]
    readonly_fields = fields

    @admin.display(description="Status", ordering="status")
    def status_badge(self, report: SystemReport):
        return format_html('<strong style="color:{}">{}</strong>',
                           _TONES.get(report.status, "inherit"), report.status)

    @admin.display(description="Built at", ordering="created_at")
    def built_at(self, report: SystemReport):
        return format_html('<span style="white-space:nowrap">{}</span>',
                           report.created_at.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M"))

    @admin.display(description="Attempts")
    def attempts_on_day(self, report: SystemReport):
        attempts = (report.data.get("growth") or {}).get("attempts") or {}
        return "–" if "day" not in attempts else f"{attempts['day']:,}"

    @admin.display(description="Jobs (failed)")
    def jobs_on_day(self, report: SystemReport):
        jobs = report.data.get("jobs") or {}
        return "–" if "runs" not in jobs else f"{jobs['runs']:,} ({jobs['failures']:,})"

    @admin.display(description="Newest backup")
    def newest_backup(self, report: SystemReport):
        latest = (report.data.get("backups") or {}).get("latest")
        if not latest:
            return "none"
        return format_html('<span style="white-space:nowrap">{} old, {}</span>',
                           seconds_text(latest["age_s"]), latest["status"])

    @admin.display(description="Database")
    def database_size(self, report: SystemReport):
        return size_text((report.data.get("database") or {}).get("size_bytes"))

    @admin.display(description="Figures")
    def figures(self, report: SystemReport):
        try:
            sections = system_report_sections(report.data)
        except (KeyError, TypeError, ValueError) as exc:  # a report stored by older code
            return format_html("<em>These figures cannot be shown ({}); see the stored "
                               "figures below.</em>", exc)
        # One width for every section's table and its label column, so they line up.
        return format_html_join(
            "", '<h3 style="margin:1em 0 .3em">{}</h3><table style="width:100%">{}</table>',
            ((section["heading"],
              format_html_join("", '<tr><th style="width:16em">{}</th><td>{}</td></tr>',
                               section["rows"])
              if section["rows"] else format_html('<tr><td colspan="2">{}</td></tr>',
                                                  "Nothing to report."))
             for section in sections))

    @admin.display(description="Stored figures (JSON)")
    def stored_figures(self, report: SystemReport):
        return format_html(
            '<details><summary style="cursor:pointer">Show the JSON</summary>'
            '<pre style="white-space:pre-wrap;margin:.5em 0 0;padding:0">{}</pre></details>',
            json.dumps(report.data, indent=2, sort_keys=True))
