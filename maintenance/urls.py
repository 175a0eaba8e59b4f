"""URLs of the maintenance app, mounted by pastq/urls.py: the operations page under the admin
(its URL, /admin/operations/, is bookmarked by operators) and the health endpoints."""

from django.contrib import admin
from django.urls import path

from maintenance import views

operations_patterns = ([
    path("", admin.site.admin_view(views.dashboard), name="dashboard"),
    path("schedules/<int:schedule_id>/run/", admin.site.admin_view(views.schedule_run),
         name="schedule_run"),
    path("schedules/<int:schedule_id>/pause/", admin.site.admin_view(views.schedule_pause),
         name="schedule_pause"),
    path("schedules/<int:schedule_id>/resume/", admin.site.admin_view(views.schedule_resume),
         name="schedule_resume"),
    path("tasks/<int:task_id>/cancel/", admin.site.admin_view(views.task_cancel),
         name="task_cancel"),
    path("queues/<str:queue>/purge/", admin.site.admin_view(views.queue_purge),
         name="queue_purge"),
    path("alerts/<int:alert_id>/acknowledge/",
         admin.site.admin_view(views.alert_acknowledge_view), name="alert_acknowledge"),
], "operations")

health_patterns = ([
    path("", views.health, name="ready"),
    path("live", views.health_live, name="live"),
], "health")
