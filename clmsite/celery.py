"""The Celery app. Queues: ``default`` for imports and light work, ``gpu`` for
fine-tuning and batch inference (run those workers on the machine with the GPU)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clmsite.settings")

app = Celery("clmsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.autodiscover_tasks()
