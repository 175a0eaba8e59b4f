"""The base of the maintenance admin pages that show records of what happened (job runs,
presences, alerts, health-check runs, system reports, backups)."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: viewable (and deletable), never added or edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
