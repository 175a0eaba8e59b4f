"""
URL configuration for pastq project.

The `urlpatterns` list routes URLs to views. For more information please see:
    https://docs.djangoproject.com/en/5.2/topics/http/urls/
Examples:
Function views
    1. Add an import:  from my_app import views
    2. Add a URL to urlpatterns:  path('', views.home, name='home')
Class-based views
    1. Add an import:  from other_app.views import Home
    2. Add a URL to urlpatterns:  path('', Home.as_view(), name='home')
Including another URLconf
    1. Import the include() function: from django.urls import include, path
    2. Add a URL to urlpatterns:  path('blog/', include('blog.urls'))
"""
from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

from analytics.api import api
from maintenance import metrics_views
from maintenance.urls import health_patterns, operations_patterns

urlpatterns = [
    path("", TemplateView.as_view(template_name="landing.html"), name="landing"),
    path("health/", include(health_patterns)),
    path("api/v1/", api.urls),  # the read API (docs/api.md)
    # Unsubscribe links in student email (notifications/views.py); reached from the internet.
    path("notifications/", include("notifications.urls")),
    # The email service's tracking webhooks, e.g. /anymail/postmark/tracking/, behind basic auth
    # with ANYMAIL_WEBHOOK_SECRET (notifications/webhooks.py records bounces and complaints).
    path("anymail/", include("anymail.urls")),
    # Before the admin's own URLs, which end with a catch-all.
    # Prometheus scrapes this (bearer HEALTH_TOKEN, or staff): docs/metrics.md.
    path("metrics", metrics_views.metrics, name="metrics"),
    path("admin/operations/", include(operations_patterns)),
    path('admin/', admin.site.urls),
]
