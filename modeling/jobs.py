"""Job lifecycle shared by every background job: create, enqueue on commit, claim,
report progress with a heartbeat, finish, fail, cancel, and reap the dead."""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from clmsite.models import Role, Tenant, role_at_least
from clmsite.tenancy import tenant_context
from modeling.models import Job

JOB_MESSAGE_MAX = 5000  # a bound, not a cut: an import's longest message (every finding named) is shorter

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was requested."""


class JobFailed(Exception):
    """Raised by a job's work that ran to its end without doing what it was asked: the job
    fails with this message, and keeps ``result`` (what it did do)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


def create_job(tenant: Tenant, kind: str, *, params: dict[str, Any] | None = None, acting_user: Any = None) -> Job:
    """A queued job. Without a broker it will run in this process, which it records; jobs
    left behind by an app process that has since exited are failed first, so that one of
    them (a training, which is one per shop) does not stand in the way of the new one."""
    runner = ""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        reap_stale_jobs()
        runner = this_process()
    with tenant_context(tenant):
        return Job.objects.create(kind=kind, params=params or {}, runner=runner, created_by=acting_user if getattr(acting_user, "pk", None) else None)


def enqueue_job(job: Job, task: Any, *, run_in_thread: bool | None = None) -> None:
    """Send ``task(tenant_id, job_id)`` once the surrounding transaction commits.

    Without a broker (the embedded profile) the task runs in-process; on a web request
    it runs on the process's one background job thread, so that the page can show its
    progress.
    """

    send_on_commit(task, job.tenant_id, job.pk, run_in_thread=run_in_thread)


def send_on_commit(task: Any, *args: Any, run_in_thread: bool | None = None) -> None:
    """Send ``task(*args)`` to the workers once the surrounding transaction commits; without a
    broker, onto the process's background job thread (on a web request), so that the request
    does not wait for it: a campaign launch waited 15 s for its webhook's retries."""

    def send() -> None:
        in_thread = settings.CELERY_TASK_ALWAYS_EAGER and (
            run_in_thread if run_in_thread is not None else getattr(settings, "JOBS_IN_THREAD", False)
        )
        if in_thread:
            _in_process_jobs.put(task, args)
        else:
            task.delay(*args)

    transaction.on_commit(send)


class _InProcessJobs:
    """The embedded profile's worker: one thread that runs queued tasks one after another,
    as a one-process Celery worker would. Jobs in parallel threads fought over SQLite's one
    writer ("database is locked"), and one left behind as running was never reaped (there
    is no beat here), so before each task the thread also reaps jobs whose heartbeat stopped."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Any, tuple[Any, ...]]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def put(self, task: Any, args: tuple[Any, ...]) -> None:
        self.queue.put((task, args))
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._drain, name="clm-jobs", daemon=True)
                self.thread.start()

    def _drain(self) -> None:
        while True:
            task, args = self.queue.get()
            try:
                reap_stale_jobs()
                task.apply(args=args)
            except Exception:  # a task's own errors are caught by apply(); this is the reaper's
                log.exception("in-process job %s%r failed", getattr(task, "name", task), args)
            finally:
                connection.close()


_in_process_jobs = _InProcessJobs()


MAX_ATTEMPTS = 3


def claim_job(tenant: Tenant, job_id: int) -> Job | None:
    """Take a job for this worker, atomically. Returns None when the job is gone, belongs
    to another tenant, is finished, or is running with a live heartbeat elsewhere — so a
    task delivered twice runs once. A running job whose heartbeat is older than the lease
    was orphaned by a dead worker and is taken over; after MAX_ATTEMPTS it is failed
    instead, so a poison job cannot loop forever."""
    now = timezone.now()
    stale = now - dt.timedelta(seconds=settings.JOB_LEASE_SECONDS)
    with tenant_context(tenant):
        claimed = (
            Job.objects.filter(pk=job_id, cancel_requested=False)
            .filter(Q(state=Job.State.QUEUED) | Q(state=Job.State.RUNNING, heartbeat_at__lt=stale))
            .update(state=Job.State.RUNNING, started_at=now, heartbeat_at=now, message="Started", attempts=F("attempts") + 1)
        )
        if not claimed:
            return None
        job = Job.objects.get(pk=job_id)
    if job.attempts > MAX_ATTEMPTS:
        finish_job(job, result=job.result, succeeded=False, message=f"Gave up after {MAX_ATTEMPTS} attempts; the job kept failing or its worker kept dying.")
        return None
    return job


def retry_if_held_elsewhere(task: Any, tenant: Tenant, job_id: int) -> None:
    """After ``claim_job`` refused a job that is running with a fresh heartbeat: when its worker
    process was killed, Celery hands the task straight back (``reject_on_worker_lost``) while
    the dead process's last heartbeat is still fresh. Ask again once the lease has had time to
    go stale, so the job is taken over then rather than left for the reaper to fail. A task
    delivered twice while the first run lives gives up after the task's retries."""
    if settings.CELERY_TASK_ALWAYS_EAGER or task is None:
        return
    with tenant_context(tenant):
        held = Job.objects.filter(pk=job_id, state=Job.State.RUNNING, cancel_requested=False).exists()
    if held:
        log.info("job %s is held by another worker with a fresh lease; asking again in %s s", job_id, settings.JOB_LEASE_SECONDS)
        raise task.retry(countdown=settings.JOB_LEASE_SECONDS + 5)


@contextmanager
def heartbeat(job: Job, interval: float = 10.0) -> Iterator[None]:
    """Refresh the job's heartbeat from a side thread while the block runs, so a long step
    without progress reports (a big tree fit) is not mistaken for a dead worker."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                with tenant_context(job.tenant):
                    Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(heartbeat_at=timezone.now())
            except Exception:  # noqa: BLE001 - a missed beat is retried on the next tick
                log.warning("heartbeat for job %s failed", job.pk, exc_info=True)
            finally:
                connection.close()

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


def cancel_was_requested(job: Job) -> bool:
    """Whether someone asked to cancel the job (read fresh: the ask comes from another process).
    Past a job's checkpoint the answer only changes its closing message."""
    with tenant_context(job.tenant):
        return Job.objects.filter(pk=job.pk, cancel_requested=True).exists()


class JobReporter:
    """Writes progress and heartbeat to the job row at most every ``interval`` seconds,
    and raises :class:`JobCancelled` when a cancel was requested."""

    def __init__(self, job: Job, *, interval: float = 0.5, echo: Callable[[float, str], None] | None = None) -> None:
        self.job = job
        self.interval = interval
        self.echo = echo
        self._last = 0.0
        self._cancellable = True

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.echo is not None:
            self.echo(fraction, message)
        now = time.monotonic()
        if now - self._last < self.interval and fraction < 1.0:
            return
        self._last = now
        with tenant_context(self.job.tenant):
            Job.objects.filter(pk=self.job.pk).update(progress=round(max(0.0, min(fraction, 1.0)), 4), message=message[:JOB_MESSAGE_MAX], heartbeat_at=timezone.now())
            if self._cancellable and cancel_was_requested(self.job):
                raise JobCancelled

    def checkpoint(self, fraction: float, message: str = "") -> None:
        """Report now, whatever the interval: the last report that can stop the job. Past it
        the job commits its work (an import can still be stopped inside its transaction, see
        :meth:`cancel_watch`), so a cancel asked later is too late and is not raised: the job
        finishes and says what it did."""
        self._last = 0.0
        self(fraction, message)
        self._cancellable = False

    @contextmanager
    def cancel_watch(self, every: float = 1.0) -> Iterator[None]:
        """Inside one long transaction, which cannot report progress (the job row it would
        update stays locked until the commit): before a statement, at most every ``every``
        seconds, look for a cancel and raise :class:`JobCancelled`, which rolls the
        transaction back. So a cancel stops an import until its last statement."""
        last = 0.0
        looking = False

        def before(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
            nonlocal last, looking
            if not looking and time.monotonic() - last >= every:
                looking, last = True, time.monotonic()
                try:
                    if cancel_was_requested(self.job):
                        raise JobCancelled
                finally:
                    looking = False
            return execute(sql, params, many, context)

        with connection.execute_wrapper(before):
            yield


def finish_job(job: Job, *, result: dict[str, Any], succeeded: bool, message: str) -> None:
    with tenant_context(job.tenant):
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.SUCCEEDED if succeeded else Job.State.FAILED,
            progress=1.0 if succeeded else job.progress,
            result=result,
            message=message[:JOB_MESSAGE_MAX],
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )


def cancel_job(job: Job, message: str = "Cancelled") -> None:
    with tenant_context(job.tenant):
        Job.objects.filter(pk=job.pk).exclude(state__in=Job.FINISHED_STATES).update(
            state=Job.State.CANCELLED, message=message[:JOB_MESSAGE_MAX], finished_at=timezone.now()
        )


# Who may stop a job: whoever may start it. Training is started by admins; imports and
# scoring by analysts.
CANCEL_ROLES = {Job.Kind.TRAIN: Role.ADMIN}


class CancelNotAllowed(PermissionError):
    pass


class JobFinished(Exception):
    """A cancel asked of a job that has already succeeded, failed or been cancelled."""


def do_request_cancel(tenant: Tenant, job_id: int, *, role: str = Role.OWNER) -> Job:
    """Ask a job to stop, for a caller with ``role``. A queued job is cancelled at once; a
    running one stops at its next progress report."""
    with tenant_context(tenant):
        job = Job.objects.get(pk=job_id)
        needed = CANCEL_ROLES.get(job.kind, Role.ANALYST)
        if not role_at_least(role, needed):
            raise CancelNotAllowed(f"Only a{'n' if needed[0] in 'aeiou' else ''} {needed} or above can cancel a {job.get_kind_display().lower()} job.")
        if job.state == Job.State.QUEUED:
            cancel_job(job)
        elif job.state == Job.State.RUNNING:
            Job.objects.filter(pk=job.pk).update(cancel_requested=True, message="Cancelling…")
        else:
            raise JobFinished(f"Job {job.pk} has already finished ({job.get_state_display().lower()}): there is nothing to cancel.")
        job.refresh_from_db()
        return job


def reap_stale_jobs(*, now: dt.datetime | None = None) -> int:
    """Mark as failed the unfinished jobs nothing will finish: running jobs whose heartbeat
    stopped, and jobs whose app process (no broker: see ``Job.runner``) has exited, queued
    ones included. Runs across tenants: beat calls it every minute; without a broker,
    ``create_job`` and ``reap_now_and_then`` do."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS)
    silent = Job.unscoped.filter(state=Job.State.RUNNING, heartbeat_at__lt=cutoff)
    stopped = list(silent.values_list("pk", flat=True))
    reaped = silent.filter(pk__in=stopped).update(
        state=Job.State.FAILED,
        finished_at=now,
        message="The worker stopped responding (no heartbeat); the job was marked failed.",
    )
    unfinished = Job.unscoped.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING]).exclude(runner="")
    orphans = [pk for pk, runner in unfinished.values_list("pk", "runner") if runner_is_gone(runner)]
    if orphans:
        reaped += unfinished.filter(pk__in=orphans).update(
            state=Job.State.FAILED,
            finished_at=now,
            message="The process running this job stopped (a restart, or Ctrl-C) before it finished. Start it again.",
        )
    for job in Job.unscoped.filter(pk__in=stopped + orphans, kind=Job.Kind.SCORE, state=Job.State.FAILED, finished_at=now).select_related("tenant"):
        _withdraw_reaped_scoring(job)
    return reaped


def _withdraw_reaped_scoring(job: Job) -> None:
    """A scoring reaped halfway takes back what it wrote for a date no scoring had completed,
    as a failed or cancelled one does: a half-scored new date must not become the latest."""
    from modeling.scoring import settle_unfinished_date

    as_of = dt.date.fromisoformat(job.params["as_of"])
    withdrawn, _ = settle_unfinished_date(job.tenant, as_of, job.started_at or job.created_at)
    if withdrawn:
        with tenant_context(job.tenant):
            Job.objects.filter(pk=job.pk).update(message=f"{job.message} The {withdrawn:,} predictions it had written for {as_of} were taken back.")


_last_reap: float | None = None


def reap_now_and_then(**_: Any) -> None:
    """Without a broker there is no beat: the app reaps on a request, at most once a minute
    per process (connected to ``request_started`` in ``ModelingConfig.ready``)."""
    global _last_reap
    if _last_reap is not None and time.monotonic() - _last_reap < 60:
        return
    _last_reap = time.monotonic()
    try:
        reap_stale_jobs()
    except DatabaseError:  # not migrated yet, or the database is down: the page says so itself
        log.warning("could not reap stale jobs", exc_info=True)


def _process_identity(pid: int) -> str:
    """This process as host:pid:start. The start time (clock ticks after boot, from /proc on Linux) tells
    a live process from a later one that was given the same pid."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = ""
    return f"{socket.gethostname()}:{pid}:{start}"


def this_process() -> str:
    return _process_identity(os.getpid())


def runner_is_gone(runner: str) -> bool:
    """Whether the process ``runner`` names has exited. A process on another machine cannot
    be looked at: its job's heartbeat tells instead."""
    host, _, rest = runner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if start:
        return _process_identity(int(pid)) != runner
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False
