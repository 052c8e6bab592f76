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
