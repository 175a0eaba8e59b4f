"""The project's URLs plus what this work adds, until the integrator adds them to pastq/urls.py:
`/metrics`, and the admin mounted again so its URLs include the SystemReport admin (the
admin's URL list is built when pastq.urls is first imported, perhaps before
maintenance.system_report_admin registered its model)."""

from django.contrib import admin
from django.urls import path

import maintenance.system_report_admin  # noqa: F401  (registers SystemReport)
from maintenance import metrics_views
from pastq import urls as project_urls

urlpatterns = [
    path("metrics", metrics_views.metrics, name="metrics"),
    *[path("admin/", admin.site.urls) if str(p.pattern) == "admin/" else p
      for p in project_urls.urlpatterns],
]
