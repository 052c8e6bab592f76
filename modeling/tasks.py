"""Celery entry points for models. Thin: take ids, re-check the tenant, call a service.

Training and scoring run on the ``gpu`` queue. Only named transient errors (a dropped
database connection) are retried; anything else fails the job with its message.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.db import OperationalError
from django.db.models import F

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context
from modeling import jobs
from modeling.models import Job, Prediction

log = logging.getLogger(__name__)
# Scoring chunks fill the progress bar up to here; stages, segments and actions the rest.
SCORING_SHARE = 0.8
TRANSIENT = (OperationalError,)


def _tenant(tenant_id: int) -> Tenant | None:
    return Tenant.objects.filter(pk=tenant_id).first()


def _run_claimed_job(
    tenant_id: int, job_id: int, what: str, work: Callable[[Tenant, Job], tuple[dict[str, Any], str]], *, cancelled: str, task: Any = None,
) -> tuple[Tenant, Job, dict[str, Any]] | None:
    """Claim the job, run ``work(tenant, job)`` (returning the result and the message) under a
    heartbeat, and finish the job. Cancellation ends it with ``cancelled``; a transient error
    puts it back in the queue and is raised for Celery to retry; anything else fails it with its
    message. Returns (tenant, job, result) when it succeeded."""
    tenant = _tenant(tenant_id)
    job = jobs.claim_job(tenant, job_id) if tenant else None
    if tenant is None or job is None:
        if tenant is not None:
            jobs.retry_if_held_elsewhere(task, tenant, job_id)
        return None
    try:
        with jobs.heartbeat(job):
            result, message = work(tenant, job)
    except jobs.JobCancelled:
        jobs.cancel_job(job, cancelled)
        return None
    except jobs.JobFailed as failed:
        jobs.finish_job(job, result=failed.result, succeeded=False, message=str(failed))
        return None
    except TRANSIENT:
        with tenant_context(tenant):
            Job.objects.filter(pk=job.pk).update(state=Job.State.QUEUED, message="Retrying after a database error")
        raise
    except Exception as exc:
        log.exception("%s job %s failed", what, job_id)
        jobs.finish_job(job, result={}, succeeded=False, message=f"{what} failed: {exc}"[:500])
        return None
    jobs.finish_job(job, result=result, succeeded=True, message=message)
    return tenant, job, result


TRAINING_CANCELLED = "Cancelled; the active models keep serving."


def train(tenant: Tenant, job: Job, echo: Callable[[float, str], None] | None = None) -> tuple[dict[str, Any], str]:
    """A training job's work: the worker's, and ``train --sync``'s in the command (``echo``
    draws its terminal bar)."""
    from modeling.training import train_models

    params = job.params
    if params.get("sentiment_candidates"):  # this run's choice; the shop's saved settings are unchanged
        tenant.settings = {**tenant.settings, "sentiment_candidates": params["sentiment_candidates"]}
    report = train_models(
        tenant, dt.date.fromisoformat(params["as_of"]), params.get("horizon_days"), family=params.get("family", "auto"),
        job_id=job.pk, progress=jobs.JobReporter(job, echo=echo), acting_user=job.created_by,
    )
    if not report.serves_customers:  # what did train (sentiment, say) stands; the job says what did not
        raise jobs.JobFailed(f"No customer model can serve from this training. {report.summary()}", report.as_dict())
    return report.as_dict(), report.summary()


def score_whole(tenant: Tenant, job: Job, echo: Callable[[float, str], None] | None = None) -> tuple[dict[str, Any], str]:
    """A scoring job's work in one process, every customer at once (``score --sync``); the
    workers split it in chunks (below). Its predictions are written in one transaction at
    the end of the scoring: a cancel before then leaves the date as it was. Past that
    checkpoint a cancel is too late, as for the chunked job."""
    from modeling.insights import insights_summary, refresh_after_scoring
    from modeling.scoring import score_customers, settle_unfinished_date
    from modeling.sentiment_training import score_unscored_reviews

    as_of = dt.date.fromisoformat(job.params["as_of"])
    reporter = jobs.JobReporter(job, echo=echo)
    reporter(0.0, "Scoring reviews")
    score_unscored_reviews(tenant)
    report = score_customers(tenant, as_of, progress=lambda f, m: reporter(SCORING_SHARE * f, m) if f < 1.0 else None)
    try:
        reporter.checkpoint(SCORING_SHARE, "Stages, segments and actions")
    except jobs.JobCancelled:  # asked while the predictions were written: a new date is taken back
        settle_unfinished_date(tenant, as_of, job.started_at or job.created_at)
        raise
    summary = refresh_after_scoring(tenant, as_of, progress=lambda f, m: reporter(SCORING_SHARE + (1 - SCORING_SHARE) * f, m))
    late = " (The cancel came after every customer was scored.)" if jobs.cancel_was_requested(job) else ""
    return ({"as_of": as_of.isoformat(), "chunks": 1, "scored": report.scored, "insights": summary},
            f"{report.summary()} {insights_summary(summary)}{late}")


def run_job_here(tenant: Tenant, job: Job, work: Callable[..., tuple[dict[str, Any], str]], what: str, cancelled: str,
                 echo: Callable[[float, str], None]) -> dict[str, Any] | None:
    """Run a job created for this process (not queued) as a worker runs it: claimed, under a
    heartbeat, cancellable from the pages and the API, finished with its result. None when
    it did not succeed (the job's message says why)."""
    done = _run_claimed_job(tenant.pk, job.pk, what, lambda t, j: work(t, j, echo), cancelled=cancelled)
    return None if done is None else done[2]


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def train_models_task(self, tenant_id: int, job_id: int) -> None:
    done = _run_claimed_job(tenant_id, job_id, "Training", train, cancelled=TRAINING_CANCELLED, task=self)
    if done is None:
        return
    tenant, job, result = done
    if job.params.get("score_after") and result["champions"]:
        from modeling.services import do_start_scoring

        do_start_scoring(tenant, as_of=dt.date.fromisoformat(job.params["as_of"]), acting_user=job.created_by, new_models=True)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def score_customers_task(self, tenant_id: int, job_id: int) -> None:
    """Split the tenant's customers into chunks and send one task per chunk."""
    from modeling.scoring import chunk_customer_ids

    tenant = _tenant(tenant_id)
    job = jobs.claim_job(tenant, job_id) if tenant else None
    if job is None:
        return
    from modeling.sentiment_training import score_unscored_reviews

    score_unscored_reviews(tenant)
    chunks = chunk_customer_ids(tenant)
    with tenant_context(tenant):
        Job.objects.filter(pk=job.pk).update(steps_total=len(chunks), steps_done=0, message=f"Scoring customers in {len(chunks)} batch{'es' if len(chunks) != 1 else ''}")
    if not chunks:
        jobs.finish_job(job, result={"scored": 0}, succeeded=True, message="No customers to score.")
        return
    for index, ids in enumerate(chunks):
        score_chunk.delay(tenant_id, job_id, index, ids)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def score_chunk(self, tenant_id: int, job_id: int, index: int, customer_ids: list[int]) -> None:
    from modeling.scoring import NoActiveModel, assign_value_tiers, score_customers, settle_unfinished_date

    tenant = _tenant(tenant_id)
    if tenant is None:
        return
    with tenant_context(tenant):
        job = Job.objects.filter(pk=job_id, kind=Job.Kind.SCORE).first()  # re-checks the tenant
    if job is None or job.is_finished:
        return
    as_of = dt.date.fromisoformat(job.params["as_of"])
    if job.cancel_requested:
        _stop_scoring(tenant, job, as_of, "Cancelled", cancelled=True)
        return
    try:
        score_customers(tenant, as_of, customer_ids=customer_ids)
    except NoActiveModel as exc:
        _stop_scoring(tenant, job, as_of, str(exc))
        return
    except TRANSIENT:
        raise
    except Exception as exc:
        log.exception("scoring chunk %s of job %s failed", index, job_id)
        _stop_scoring(tenant, job, as_of, f"Scoring failed on batch {index + 1} of {job.steps_total}: {exc}")
        return
    with tenant_context(tenant):
        Job.objects.filter(pk=job.pk).update(steps_done=F("steps_done") + 1, heartbeat_at=jobs.timezone.now())
        job.refresh_from_db()
    if job.is_finished:  # another chunk failed, or the job was cancelled, while this one ran
        settle_unfinished_date(tenant, as_of, job.started_at or job.created_at)
        return
    with tenant_context(tenant):
        Job.objects.filter(pk=job.pk).update(progress=round(SCORING_SHARE * job.steps_done / max(job.steps_total, 1), 4), message=f"Scored batch {job.steps_done} of {job.steps_total}")
    if job.steps_done >= job.steps_total:
        # The last chunk assigns tiers (they need every customer's predicted value), then
        # stages, segments and actions, which need every customer's scores.
        assign_value_tiers(tenant, as_of)
        with tenant_context(tenant):
            scored = Prediction.objects.filter(as_of=as_of).count()
        result = {"as_of": as_of.isoformat(), "chunks": job.steps_total, "scored": scored}
        from modeling.insights import insights_summary, refresh_after_scoring

        # Every customer is scored: past this checkpoint a cancel is too late. The stages,
        # segments and actions are brought in line with the new predictions all the same,
        # as stopping halfway would leave pages that disagree with each other.
        reporter = jobs.JobReporter(job)
        try:
            reporter.checkpoint(SCORING_SHARE, "Stages, segments and actions")
        except jobs.JobCancelled:  # asked while the last chunk ran
            _stop_scoring(tenant, job, as_of, "Cancelled", cancelled=True)
            return
        try:
            result["insights"] = refresh_after_scoring(tenant, as_of, progress=lambda f, m: reporter(SCORING_SHARE + (1 - SCORING_SHARE) * f, m))
        except Exception as exc:  # the predictions stand; say plainly what is missing
            log.exception("insights failed for tenant %s as of %s", tenant.slug, as_of)
            reason = str(exc) or type(exc).__name__
            jobs.finish_job(job, result=result, succeeded=False, message=f"Scored {scored:,} customers, but stages, segments and actions failed: {reason}"[:500])
            return
        late = " (The cancel came after every customer was scored.)" if jobs.cancel_was_requested(job) else ""
        updated = f". {insights_summary(result['insights'])}" if "kept_as_of" in result["insights"] else "; stages, segments and actions updated."
        jobs.finish_job(job, result=result, succeeded=True, message=f"Scored {scored:,} customers as of {as_of}{updated}{late}"[:500])


def _stop_scoring(tenant: Tenant, job: Job, as_of: dt.date, reason: str, *, cancelled: bool = False) -> None:
    """End a scoring job that cannot finish (failed or cancelled). The chunks still queued see it
    finished and do nothing; a date no scoring completed before is taken back whole."""
    from modeling.scoring import settle_unfinished_date

    withdrawn, rescored = settle_unfinished_date(tenant, as_of, job.started_at or job.created_at)
    kept = f"; the {withdrawn:,} predictions already written for {as_of} were taken back" if withdrawn else ""
    if rescored:
        kept = (f"; the {rescored:,} customers scored before it keep their new predictions for {as_of}, the others the last complete "
                "scoring's; stages, segments and actions are that scoring's until the next one")
    if cancelled:
        jobs.cancel_job(job, f"{reason.rstrip('.')}{kept}.")
    else:
        jobs.finish_job(job, result={}, succeeded=False, message=f"{reason.rstrip('.')}{kept}.")


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=3)
def refresh_insights_task(self, tenant_id: int, job_id: int) -> None:
    """Stages, segments and actions again for a scoring date (after the thresholds changed),
    or the actions alone (``actions_only``: after a playbook rule changed)."""
    from modeling.insights import insights_summary, refresh_actions, refresh_insights

    def refresh(tenant: Tenant, job: Job) -> tuple[dict[str, Any], str]:
        as_of = dt.date.fromisoformat(job.params["as_of"])
        if job.params.get("actions_only"):
            summary = refresh_actions(tenant, as_of, progress=jobs.JobReporter(job))
            return summary, f"Next actions recomputed as of {as_of} for {summary['customers']:,} customers."
        rebuilt = bool(job.params.get("rebuild_history"))
        summary = refresh_insights(tenant, as_of, progress=jobs.JobReporter(job), rebuild_history=rebuilt)
        return summary, f"Stages recomputed as of {as_of}{' and the month-end history before it' if rebuilt else ''}: {insights_summary(summary)}"

    _run_claimed_job(tenant_id, job_id, "Recomputing", refresh, cancelled="Cancelled: the stage history of that date may already use the new thresholds; save them again to finish.",
                     task=self)


@shared_task
def reap_stale_jobs_task() -> int:
    from customers.services.import_jobs import forget_old_checks

    forget_old_checks()  # a shop that uploads nothing more would otherwise keep its last checks' files
    return jobs.reap_stale_jobs()


@shared_task
def plan_scheduled_jobs_task() -> int:
    from modeling.services import plan_scheduled_jobs

    return len(plan_scheduled_jobs())
