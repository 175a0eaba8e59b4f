from django.contrib.admin.apps import AdminConfig


class PastqAdminConfig(AdminConfig):
    """Django's admin with pastq's site (pastq.admin.PastqAdminSite): the operations page.

    The app label stays "admin", so every `admin.site.register` (ours and django-q2's) lands on
    this site."""

    default_site = "pastq.admin.PastqAdminSite"
