"""Worker faults with a real worker, a real broker and a real database: a training job
whose worker is killed with SIGKILL leaves the active models serving, is redelivered
(acks_late + a short Redis visibility timeout), taken over through its stale lease, and
finishes exactly once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clmsite.tenancy import tenant_context
from modeling import registry
from modeling.jobs import reap_stale_jobs
from modeling.models import Job, ModelVersion
from modeling.scoring import score_customers
from modeling.services import do_start_training
from modeling.training import train_models
from tests.conftest import shared_database_url
from tests.test_modeling import END, load_demo

BROKER = os.environ.get("CELERY_BROKER_URL", "")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not BROKER, reason="needs CELERY_BROKER_URL (Redis); .ci/run sets it"),
]


def start_worker(tmp_path: Path, queue: str, name: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "CELERY_BROKER_URL": BROKER,
        "CLM_VAR_DIR": str(tmp_path / "var"),
        "CLM_MODEL_DIR": str(tmp_path / "models"),
        "CELERY_VISIBILITY_TIMEOUT": "4",  # redeliver unacknowledged tasks after 4 s
        "JOB_LEASE_SECONDS": "3",
    }
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "clmsite", "worker", "--pool=solo", "-Q", queue, "-n", f"{name}@%h", "--loglevel=INFO",
         "--without-heartbeat", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def job_state(tenant, job_id):
    with tenant_context(tenant):
        return Job.objects.get(pk=job_id)


def test_killed_training_keeps_the_active_model_and_is_taken_over(tenant_a, tmp_path, settings):
    from clmsite.celery import app

    settings.MODEL_DIR = tmp_path / "models"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    load_demo(tenant_a, customers=300, seed=11)
    tenant_a.settings = {"sentiment_candidates": ["ngram"]}
    tenant_a.save()
    train_models(tenant_a, END, 60, family="tabular")
    serving = {t: v.pk for t, v in registry.active_versions(tenant_a).items()}

    queue = f"faults-{os.getpid()}"
    app.conf.update(task_always_eager=False, broker_url=BROKER, task_routes={"*": {"queue": queue}})
    # The second run is slow enough to be killed in the middle: the transformer candidate.
    tenant_a.settings = {"sentiment_candidates": ["ngram", "transformer"], "max_sentiment_seconds": 20}
    tenant_a.save()
    first = start_worker(tmp_path, queue, "first")
    try:
        job = do_start_training(tenant_a, as_of=END, horizon_days=60, family="tabular", score_after=False)
        assert wait_for(lambda: job_state(tenant_a, job.pk).state == Job.State.RUNNING and job_state(tenant_a, job.pk).progress > 0.0, 120), (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        # The worker is gone mid-training: the job is orphaned, the old models still serve.
        orphan = job_state(tenant_a, job.pk)
        assert orphan.state == Job.State.RUNNING and orphan.attempts == 1
        assert {t: v.pk for t, v in registry.active_versions(tenant_a).items()} == serving
        assert score_customers(tenant_a, END).scored > 0

        # A new worker restores the unacknowledged task and takes the stale job over.
        second = start_worker(tmp_path, queue, "second")
        try:
            assert wait_for(lambda: job_state(tenant_a, job.pk).is_finished, 240), (tmp_path / "second.log").read_text()[-3000:]
        finally:
            second.terminate()
            second.wait(timeout=30)
    finally:
        app.conf.update(task_always_eager=True, task_routes={})
        if first.poll() is None:
            first.kill()

    done = job_state(tenant_a, job.pk)
    assert (done.state, done.attempts) == (Job.State.SUCCEEDED, 2)
    with tenant_context(tenant_a):
        # Exactly one new set of versions: the killed attempt registered nothing.
        assert ModelVersion.objects.filter(job_id=job.pk, target="purchase").count() >= 1
        assert ModelVersion.objects.filter(job_id=job.pk, target="purchase", family="tabular").count() == 1
    assert registry.active_versions(tenant_a)["purchase"].pk != serving["purchase"]


def test_reaper_fails_jobs_whose_worker_vanished(tenant_a):
    with tenant_context(tenant_a):
        job = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.RUNNING, heartbeat_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        fresh = Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.RUNNING, heartbeat_at=dt.datetime.now(dt.UTC))

    assert reap_stale_jobs() == 1

    with tenant_context(tenant_a):
        assert Job.objects.get(pk=job.pk).state == Job.State.FAILED
        assert "no heartbeat" in Job.objects.get(pk=job.pk).message
        assert Job.objects.get(pk=fresh.pk).state == Job.State.RUNNING
