"""pastq's admin site: Django's, plus the operations page (core/operations_views.py).

Installed as the admin app's default site (pastq/apps.py), so `admin.site` is this site and
every registration, django-q2's included, lands here.
"""

from django.contrib import admin
from django.urls import path


class PastqAdminSite(admin.AdminSite):
    site_header = "pastq operations"
    site_title = "pastq"

    def get_urls(self):
        # Imported here: this module loads while the admin app is set up, before the views'
        # models and selectors may be imported.
        from core import operations_views as views

        def wrap(view):
            def site_view(request, *args, **kwargs):
                return view(request, self, *args, **kwargs)

            site_view.__name__ = view.__name__
            return self.admin_view(site_view)

        # Before the admin's own URLs: they end with a catch-all.
        return [
            path("operations/", wrap(views.dashboard), name="operations"),
            path("operations/schedules/<int:schedule_id>/run/", wrap(views.schedule_run),
                 name="operations_schedule_run"),
            path("operations/schedules/<int:schedule_id>/pause/", wrap(views.schedule_pause),
                 name="operations_schedule_pause"),
            path("operations/schedules/<int:schedule_id>/resume/", wrap(views.schedule_resume),
                 name="operations_schedule_resume"),
            path("operations/tasks/<int:task_id>/cancel/", wrap(views.task_cancel),
                 name="operations_task_cancel"),
            path("operations/queues/<str:key>/purge/", wrap(views.queue_purge),
                 name="operations_queue_purge"),
        ] + super().get_urls()
