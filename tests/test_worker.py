"""A real Celery worker process, a real Redis broker, the real database: an import job
goes from the API through Redis to the worker and back to the job row."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order
from customers.services.import_jobs import do_start_import
from modeling.models import Job
from tests.conftest import ORDERS_A, shared_database_url

BROKER = os.environ.get("CELERY_BROKER_URL", "")
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not BROKER, reason="needs CELERY_BROKER_URL (Redis); .ci/run sets it"),
]


@pytest.fixture
def worker(tmp_path):
    from clmsite.celery import app

    queue = f"test-{os.getpid()}"
    env = {**os.environ, "DATABASE_URL": shared_database_url(), "CELERY_BROKER_URL": BROKER, "CLM_VAR_DIR": str(tmp_path / "var")}
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "clmsite", "worker", "--pool=solo", "--concurrency=1", "-Q", queue, "--loglevel=INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    app.conf.task_always_eager = False
    app.conf.broker_url = BROKER
    app.conf.task_default_queue = queue
    app.conf.task_routes = {"*": {"queue": queue}}
    try:
        yield process
    finally:
        app.conf.task_always_eager = True
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_import_job_runs_on_a_real_worker(tenant_a, worker, tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    job = do_start_import(tenant_a, "orders", SimpleUploadedFile("orders.csv", ORDERS_A.encode()), "orders.csv")

    def finished() -> bool:
        with tenant_context(tenant_a):
            return Job.objects.get(pk=job.pk).is_finished

    assert wait_for(finished), (tmp_path / "worker.log").read_text()[-3000:]
    with tenant_context(tenant_a):
        done = Job.objects.get(pk=job.pk)
        assert (done.state, done.progress, done.attempts) == (Job.State.SUCCEEDED, 1.0, 1)
        assert done.result["created"] == 3
        assert Order.objects.count() == 3
        assert Customer.objects.get(external_id="c1").order_count == 2
    assert worker.poll() is None  # the worker is still alive



def test_fine_tuning_and_batch_inference_are_routed_to_the_gpu_queue():
    """The routes name the tasks as Celery registers them (a route under another name is
    silently ignored, and the task runs on the default queue)."""
    from celery.app.routes import Router, prepare
    from django.conf import settings

    from campaigns import tasks as campaign_tasks
    from clmsite.celery import app
    from customers import tasks as customer_tasks
    from modeling import tasks as modeling_tasks

    router = Router(prepare(settings.CELERY_TASK_ROUTES), app.amqp.queues, app=app)
    gpu = {modeling_tasks.train_models_task, modeling_tasks.score_customers_task, modeling_tasks.score_chunk, modeling_tasks.refresh_insights_task}
    every = {t for module in (modeling_tasks, customer_tasks, campaign_tasks) for t in vars(module).values() if hasattr(t, "apply_async")}
    queues = {task.name: router.route({}, task.name)["queue"].name for task in every}
    assert {name for name, queue in queues.items() if queue == "gpu"} == {task.name for task in gpu}
    assert len(queues) > len(gpu)  # imports, deliveries, planners: the default queue
