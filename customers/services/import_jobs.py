"""Imports as background jobs: the web upload and the API create one, a worker runs it."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context
from customers.services.imports import KINDS, ImportResult, import_csv
from modeling import jobs
from modeling.models import Job

log = logging.getLogger(__name__)


def upload_path(tenant: Tenant, token: str) -> Path:
    directory = Path(settings.UPLOAD_DIR) / str(tenant.pk)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{token}.csv"


def import_params(kind: str, filename: str, *, dry_run: bool = False, **more: Any) -> dict[str, Any]:
    """An import job's params; ``dry_run`` is there only for a check, so an import's stay as they were."""
    return {"kind": kind, "filename": Path(filename).name[:200], **({"dry_run": True} if dry_run else {}), **more}


def do_start_import(tenant: Tenant, kind: str, source: IO[bytes], filename: str, *, acting_user: Any = None, dry_run: bool = False) -> Job:
    """Save the uploaded file where workers can read it and queue an import job (with
    ``dry_run``, a check that writes nothing)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown import kind {kind!r}")
    forget_old_checks(tenant)
    job = jobs.create_job(tenant, Job.Kind.IMPORT, params=import_params(kind, filename, dry_run=dry_run), acting_user=acting_user)
    path = upload_path(tenant, f"{'check' if dry_run else 'job'}-{job.pk}")
    with open(path, "wb") as target:
        shutil.copyfileobj(source, target, length=1 << 20)
    with tenant_context(tenant):
        Job.objects.filter(pk=job.pk).update(params={**job.params, "path": str(path), "size": path.stat().st_size})
    from customers.tasks import run_import

    jobs.enqueue_job(job, run_import)
    return job


def run_import_job(tenant_id: int, job_id: int, *, task: Any = None) -> ImportResult | None:
    """Run a queued import job once. Called by the Celery task with ids, never objects."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return None
    job = jobs.claim_job(tenant, job_id)  # re-checks that the job belongs to this tenant
    if job is None:
        jobs.retry_if_held_elsewhere(task, tenant, job_id)
        log.info("import job %s for tenant %s is not queued; skipping", job_id, tenant_id)
        return None
    path = job.params.get("path", "")
    result = _run(tenant, job, path)
    if not (result is not None and result.ok and result.dry_run):
        # Imported, refused or cancelled, the upload is not needed again: the report keeps the
        # errors. A check that passed keeps its file for a while, to be imported as checked.
        Path(path).unlink(missing_ok=True)
    return result


# How long a passed check's upload is kept for "Import this file".
CHECK_KEPT_HOURS = 24


def checked_file(job: Job) -> Path | None:
    """The upload of a passed check, while it is kept; None once imported or forgotten."""
    path = Path(job.params.get("path", ""))
    kept = job.is_check and job.state == Job.State.SUCCEEDED and path.name.startswith("check-") and path.is_file()
    return path if kept else None


def do_import_checked(tenant: Tenant, check: Job, *, acting_user: Any = None) -> Job | None:
    """Import the file a passed check read, as checked: a new import job (which checks it
    again against the data as it is by then). None when the file is no longer kept."""
    path = checked_file(check)
    if path is None:
        return None
    with open(path, "rb") as source:
        job = do_start_import(tenant, check.params["kind"], source, check.params.get("filename", path.name), acting_user=acting_user)
    path.unlink(missing_ok=True)
    return job


def forget_old_checks(tenant: Tenant | None = None) -> int:
    """Remove kept check uploads older than CHECK_KEPT_HOURS: the shop's (at each upload), or
    every shop's (beat's reaper, each minute). Returns how many went."""
    cutoff = time.time() - CHECK_KEPT_HOURS * 3600
    removed = 0
    for path in Path(settings.UPLOAD_DIR).glob(f"{tenant.pk if tenant else '*'}/check-*.csv"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def do_import_here(tenant: Tenant, kind: str, path: str, *, echo: Any = None, dry_run: bool = False) -> tuple[Job, ImportResult | None]:
    """Import a file in this process (the command line) as an import job, as an upload is:
    listed on the Imports page and in the API with its result, its progress shown there as it
    runs (and through ``echo`` here), cancellable from there. The file is left where it is.
    Returns the job and the result, None when it was cancelled."""
    job = jobs.create_job(tenant, Job.Kind.IMPORT, params=import_params(kind, path, dry_run=dry_run, source="command line"))
    claimed = jobs.claim_job(tenant, job.pk)
    if claimed is None:  # just created and queued for no worker: only a cancel asked this instant
        jobs.cancel_job(job, "Cancelled; nothing was imported.")
        return job, None
    return claimed, _run(tenant, claimed, path, echo=echo)


def _run(tenant: Tenant, job: Job, path: str, *, echo: Any = None) -> ImportResult | None:
    try:
        # The write step is one transaction with no progress reports: the side thread keeps
        # the heartbeat fresh, so the reaper does not take a long write for a dead worker.
        with jobs.heartbeat(job):
            result = import_csv(tenant, job.params["kind"], path, progress=jobs.JobReporter(job, echo=echo), dry_run=job.params.get("dry_run", False))
    except jobs.JobCancelled:
        jobs.cancel_job(job, "Cancelled; nothing was imported.")
        return None
    except Exception:
        log.exception("import job %s failed", job.pk)
        jobs.finish_job(job, result={}, succeeded=False, message="The import failed with an internal error; nothing was imported.")
        raise
    too_late = jobs.cancel_was_requested(job)
    message = f"{result.message} (The cancel came too late: the rows were already written.)" if too_late and result.ok and not result.dry_run else result.message
    jobs.finish_job(job, result=result.as_dict(), succeeded=result.ok, message=message)
    return result
