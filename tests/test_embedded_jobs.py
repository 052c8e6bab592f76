"""Without a broker, jobs run inside an app process (the embedded profile). When that
process exits — a restart, a Ctrl-C in ``manage.py train`` — its queued and running jobs
are failed, not left waiting forever, and a training it left behind does not block the next."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.test import override_settings

from clmsite.tenancy import tenant_context
from modeling import jobs
from modeling.models import Job
from modeling.services import TrainingAlreadyRunning, do_start_training
from tests.test_modeling import END, load_demo


@pytest.fixture
def app_process():
    """A real process standing in for an app process that queued jobs, then exits."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def job_row(tenant, pk):
    with tenant_context(tenant):
        return Job.objects.get(pk=pk)


def test_jobs_of_an_exited_app_process_are_failed_and_unblock_training(tenant_a, app_process, django_capture_on_commit_callbacks):
    load_demo(tenant_a, customers=60, seed=5, reviews=False)
    runner = jobs._process_identity(app_process.pid)
    with tenant_context(tenant_a):
        training = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.QUEUED, runner=runner)
        mine = Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.QUEUED, runner=jobs.this_process())
        on_a_worker = Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.QUEUED)

    # While the process lives, its jobs are its own, and the queued training blocks another.
    assert not jobs.runner_is_gone(runner)
    assert jobs.reap_stale_jobs() == 0
    with override_settings(CELERY_TASK_ALWAYS_EAGER=False), pytest.raises(TrainingAlreadyRunning):
        do_start_training(tenant_a, as_of=END)

    app_process.kill()
    app_process.wait()
    assert jobs.runner_is_gone(runner)
    # Without a broker, creating a job reaps first: the new training is accepted (and runs here).
    with override_settings(CELERY_TASK_ALWAYS_EAGER=True), django_capture_on_commit_callbacks(execute=True):
        started = do_start_training(tenant_a, as_of=END, family="bgnbd", score_after=False)

    left = job_row(tenant_a, training.pk)
    assert left.state == Job.State.FAILED and "stopped" in left.message and left.finished_at is not None
    assert job_row(tenant_a, mine.pk).state == Job.State.QUEUED  # this process is alive
    assert job_row(tenant_a, on_a_worker.pk).state == Job.State.QUEUED  # a worker's: its heartbeat tells
    assert job_row(tenant_a, started.pk).state == Job.State.SUCCEEDED
    assert job_row(tenant_a, started.pk).runner == jobs.this_process()


def test_requests_reap_at_most_once_a_minute(tenant_a, app_process, monkeypatch):
    monkeypatch.setattr(jobs, "_last_reap", None)
    runner = jobs._process_identity(app_process.pid)
    with tenant_context(tenant_a):
        first = Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.RUNNING, runner=runner)
    app_process.kill()
    app_process.wait()

    jobs.reap_now_and_then()
    assert job_row(tenant_a, first.pk).state == Job.State.FAILED
    with tenant_context(tenant_a):
        second = Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.QUEUED, runner=runner)
    jobs.reap_now_and_then()  # within the minute: no query
    assert job_row(tenant_a, second.pk).state == Job.State.QUEUED
    monkeypatch.setattr(jobs, "_last_reap", jobs.time.monotonic() - 61)
    jobs.reap_now_and_then()
    assert job_row(tenant_a, second.pk).state == Job.State.FAILED


def test_a_reused_pid_is_not_the_same_process(app_process):
    host, pid, start = jobs._process_identity(app_process.pid).split(":")
    assert start, "Linux gives the process start time"
    assert jobs.runner_is_gone(f"{host}:{pid}:{int(start) + 1}")
    assert not jobs.runner_is_gone(f"elsewhere.example:{pid}:{start}")
