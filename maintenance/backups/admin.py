"""The backups' admin: the catalogue, "Create backup now" and "Verify" (both enqueue jobs,
needing `maintenance.create_backup`). Restore stays a command-line operation: too dangerous for
a button; the changelist says how.

maintenance/admin.py imports this module, which registers the admin.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html

from core.jobs import enqueue
from maintenance.backups import tasks
from maintenance.models import BackupRecord

CREATE_PERMISSION = "maintenance.create_backup"
CREATE_JOB = "maintenance.backups.tasks.backup_create_job"


@admin.register(BackupRecord)
class BackupRecordAdmin(admin.ModelAdmin):
    list_display = ["name", "engine", "status", "size", "created_at", "verified_at",
                    "encrypted", "key"]
    list_filter = ["status", "engine", "encrypted", "trigger"]
    search_fields = ["name", "sha256"]
    date_hierarchy = "created_at"
    actions = ["verify_selected"]
    change_list_template = "admin/maintenance/backuprecord/change_list.html"
    fields = ["name", "engine", "status", "trigger", "created_at", "finished_at", "duration_ms",
              "size", "sha256", "encrypted", "key_fingerprint", "verified_at", "verify_detail",
              "offsite_name", "offsite_at", "error", "manifest_pretty"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # A record is the history of a file; retention deletes files and marks their records.
        return False

    def has_create_backup_permission(self, request) -> bool:
        return request.user.has_perm(CREATE_PERMISSION)

    @admin.display(description="Size", ordering="size_bytes")
    def size(self, obj: BackupRecord) -> str:
        return filesizeformat(obj.size_bytes) if obj.size_bytes is not None else "-"

    @admin.display(description="Key")
    def key(self, obj: BackupRecord) -> str:
        return f"{obj.key_fingerprint[:12]}…" if obj.key_fingerprint else "-"

    @admin.display(description="Manifest")
    def manifest_pretty(self, obj: BackupRecord) -> str:
        return format_html('<pre style="white-space: pre-wrap">{}</pre>',
                           json.dumps(obj.manifest, indent=2, sort_keys=True))

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
