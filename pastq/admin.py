"""pastq's admin site: Django's, with its own header. Installed as the admin app's default
site (pastq/apps.py), so every `admin.site.register` (the apps' and django-q2's) lands here.
Each app's pages are mounted by pastq/urls.py (the operations page: maintenance)."""

from django.contrib import admin


class PastqAdminSite(admin.AdminSite):
    site_header = "pastq operations"
    site_title = "pastq"
