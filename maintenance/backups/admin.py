"""The backups' admin: the catalogue, "Create backup now" and "Verify" (both enqueue jobs,
needing `maintenance.create_backup`). Restore stays a command-line operation: too dangerous for
a button; the changelist says how.

maintenance/admin.py imports this module, which registers the admin.
"""

from __future__ import annotations

import datetime
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.jobs import enqueue
from maintenance.backups import tasks
from maintenance.models import BackupRecord
from maintenance.records_admin import ReadOnlyAdmin

CREATE_PERMISSION = "maintenance.create_backup"
CREATE_JOB = "maintenance.backups.tasks.backup_create_job"


@admin.register(BackupRecord)
class BackupRecordAdmin(ReadOnlyAdmin):
    # Narrow enough to fit beside the filters: compact times, and the encryption in one column
    # (the engine is a filter, and on the detail page).
    list_display = ["name", "status", "size", "created", "verified", "key"]
    list_filter = ["status", "engine", "encrypted", "trigger"]
    search_fields = ["name", "sha256"]
    date_hierarchy = "created_at"
    actions = ["verify_selected"]
    change_list_template = "admin/maintenance/backuprecord/change_list.html"
    fields = ["name", "engine", "status", "trigger", "created_at", "finished_at", "took",
              "size", "checksum", "encrypted", "key_fingerprint", "verified_at", "verify_detail",
              "offsite_name", "offsite_at", "error", "manifest_pretty"]
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None):
        # A record is the history of a file; retention deletes files and marks their records.
        return False

    def has_create_backup_permission(self, request) -> bool:
        return request.user.has_perm(CREATE_PERMISSION)

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: BackupRecord) -> str:
        return filesizeformat(obj.size_bytes) if obj.size_bytes is not None else "-"

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: BackupRecord):
        return _moment(obj.created_at)

    @admin.display(description="Verified", ordering="verified_at")
    def verified(self, obj: BackupRecord):
        return _moment(obj.verified_at)

    @admin.display(description="Encryption key")
    def key(self, obj: BackupRecord):
        if obj.key_fingerprint:
            return format_html('<code title="{}">{}…</code>', obj.key_fingerprint,
                               obj.key_fingerprint[:12])
        if obj.encrypted:
            return "encrypted"
        return format_html('<span style="color: #b26a00">not encrypted</span>')

    @admin.display(description="Took", ordering="duration_ms")
    def took(self, obj: BackupRecord) -> str:
        return "-" if obj.duration_ms is None else f"{obj.duration_ms:,} ms"

    @admin.display(description="SHA-256")
    def checksum(self, obj: BackupRecord) -> str:
        return obj.sha256 or "-"

    @admin.display(description="Manifest")
    def manifest_pretty(self, obj: BackupRecord):
        """What the manifest says that the fields above do not, then the whole of it (long: every
        migration and every table's row count) folded away."""
        manifest = obj.manifest if isinstance(obj.manifest, dict) else {}
        rows = [(label, text) for label, text in _manifest_rows(manifest) if text]
        summary = format_html(
            '<table style="margin-bottom: .8em">{}</table>',
            format_html_join("", '<tr><th style="width: 14em">{}</th><td>{}</td></tr>', rows),
        ) if rows else ""
        return format_html(
            '{}<details><summary style="cursor: pointer">The whole manifest (JSON)</summary>'
            '<pre style="white-space: pre-wrap; margin: .5em 0 0; padding: 0">{}</pre>'
            "</details>", summary, json.dumps(obj.manifest, indent=2, sort_keys=True))

    @admin.action(description="Verify (restore into a scratch database)",
                  permissions=["create_backup"])
    def verify_selected(self, request, queryset):
        names = list(queryset.exclude(status__in=[BackupRecord.Status.DELETED,
                                                  BackupRecord.Status.CREATING])
                     .values_list("name", flat=True))
        for name in names:
            enqueue(tasks.VERIFY_JOB, args=[name])
        self.message_user(request, f"Verification of {len(names)} backups queued on the "
                                   "maintenance queue.", messages.SUCCESS)

    def get_urls(self):
        return [path("create/", self.admin_site.admin_view(self.create_view),
                     name="maintenance_backuprecord_create"), *super().get_urls()]

    def create_view(self, request):
        return _create_view(self, request)

    def changelist_view(self, request, extra_context=None):
        latest = BackupRecord.objects.filter(status=BackupRecord.Status.VERIFIED).first()
        extra_context = {
            **(extra_context or {}),
            "can_create_backup": self.has_create_backup_permission(request),
            "restore_name": latest.name if latest else "NAME",
        }
        return super().changelist_view(request, extra_context)


def _moment(value: datetime.datetime | None):
    """A compact time in UTC for the list's narrow columns (as the notifications' admin)."""
    if value is None:
        return "-"
    return format_html('<span style="white-space: nowrap">{}</span>',
                       value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M"))


def _manifest_rows(manifest: dict) -> list[tuple[str, str]]:
    """[label, text] of what the manifest says beyond the record's own fields; "" when absent."""
    row_counts = manifest.get("row_counts")
    row_counts = row_counts if isinstance(row_counts, dict) and row_counts else None
    tables, rows, dump = manifest.get("tables"), manifest.get("rows"), manifest.get("dump_bytes")
    if not isinstance(tables, int) and row_counts:
        tables = len(row_counts)
    if not isinstance(rows, int) and row_counts:
        rows = sum(n for n in row_counts.values() if isinstance(n, int))
    contents = ", ".join(part for part in (
        f"{tables:,} tables" if isinstance(tables, int) else "",
        f"{rows:,} rows" if isinstance(rows, int) else "") if part)
    migrations = manifest.get("migrations")
    migrations = migrations if isinstance(migrations, dict) else {}
    return [
        ("Database", manifest.get("database", "")),
        ("Server version", manifest.get("server_version", "")),
        ("Made with", manifest.get("tool", "")),
        ("On host", manifest.get("host", "")),
        ("Contents", contents),
        ("Dump before compression", filesizeformat(dump) if isinstance(dump, int) else ""),
        ("Compression", manifest.get("compression", "")),
        ("Encryption", manifest.get("encryption", "")),
        ("Latest migrations", format_html_join(
            mark_safe("<br>"), "{}: {}", sorted(migrations.items()))),
    ]


def _create_view(model_admin: BackupRecordAdmin, request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not model_admin.has_create_backup_permission(request):
        raise PermissionDenied
    enqueue(CREATE_JOB, kwargs={"trigger": "admin"})
    model_admin.message_user(request, "A backup was queued on the maintenance queue; it is "
                                      "verified by a job of its own when it is written.",
                             messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:maintenance_backuprecord_changelist"))
