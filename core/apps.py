from django.apps import AppConfig


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "core"

    def ready(self):
        from django_q.signals import post_execute_in_worker, pre_execute

        from core import jobs

        # The worker tells the job plumbing which django-q task it is running.
        pre_execute.connect(jobs.remember_current_task, dispatch_uid="pastq-current-task")
        post_execute_in_worker.connect(jobs.forget_current_task,
                                       dispatch_uid="pastq-forget-task")
