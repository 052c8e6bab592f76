from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "modeling"

    def ready(self) -> None:
        from django.conf import settings
        from django.core.signals import request_started

        from modeling import jobs

        if settings.CELERY_TASK_ALWAYS_EAGER:  # no broker, so no beat to reap dead jobs
            request_started.connect(jobs.reap_now_and_then, dispatch_uid="clm-reap-jobs")
