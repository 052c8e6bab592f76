"""Starting model jobs: the one path behind the retrain button, the API, the CLI and beat."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from clmsite.models import Tenant
from clmsite.tenancy import lock_tenant, shop_day, shop_midnight, shop_today, shop_zone, tenant_context
from modeling import jobs
from modeling.models import Job

log = logging.getLogger(__name__)


class TrainingAlreadyRunning(Exception):
    """A tenant trains one model set at a time."""


# A shop whose last order is older than this has stopped (or its data is old, as CDNOW's,
# which ends in 1998): as of today every customer would read as lapsed.
STALE_AFTER_DAYS = 365


def last_order_date(tenant: Tenant) -> dt.date | None:
    """The day of the shop's last sale (orders that are not a sale left out, as the
    features and the stages leave them out)."""
    from customers.models import Order

    with tenant_context(tenant):
        last = Order.objects.exclude(status__in=Order.NOT_REVENUE).order_by("-ordered_at").values_list("ordered_at", flat=True).first()
    return shop_day(last, tenant) if last is not None else None


def default_as_of(tenant: Tenant) -> dt.date:
    """Today (the shop's day), so the models learn from everything known so far; but for a shop whose
    last order is more than STALE_AFTER_DAYS old, the latest scoring date (when it covers
    the last order) or else the day after the last order. The Models page's forms, the API
    and the beat all start from this date."""
    from modeling.insights import latest_scoring_date

    today = shop_today(tenant)
    last = last_order_date(tenant)
    if last is None or (today - last).days <= STALE_AFTER_DAYS:
        return today
    scored = latest_scoring_date(tenant)
    return scored if scored is not None and scored >= last else last + dt.timedelta(days=1)


def stale_scoring_warning(tenant: Tenant, as_of: dt.date) -> str | None:
    """What to tell someone who scores more than STALE_AFTER_DAYS after the shop's last
    order: allowed (a merchant may mean it), but rarely what they meant."""
    last = last_order_date(tenant)
    if last is None or (as_of - last).days <= STALE_AFTER_DAYS:
        return None
    return (f"Your last order is on {last.isoformat()}: scoring as of {as_of.isoformat()}, {(as_of - last).days:,} days later, "
            f"counts every customer as lapsed. Score as of {default_as_of(tenant).isoformat()} to see them as your data last saw them.")


class NothingToLearn(Exception):
    """A shop with neither orders nor reviews: a training would only fail."""


class InvalidAsOf(ValueError):
    """An as-of date no model can be trained or scored at."""


def check_as_of(tenant: Tenant, as_of: dt.date) -> dt.date:
    """Refuse a date after the shop's today or before the shop's first order: features would
    see the future, or nothing at all (and every page would then stay on the later date)."""
    from customers.models import Order

    latest = shop_today(tenant)
    if as_of > latest:
        raise InvalidAsOf(f"{as_of.isoformat()} is in the future; the latest as-of date is {latest.isoformat()}.")
    with tenant_context(tenant):
        first = Order.objects.order_by("ordered_at").values_list("ordered_at", flat=True).first()
    first_day = shop_day(first, tenant) if first is not None else None
    if first_day is not None and as_of < first_day:
        raise InvalidAsOf(f"{as_of.isoformat()} is before the shop's first order ({first_day.isoformat()}).")
    return as_of


def do_start_training(
    tenant: Tenant, *, as_of: dt.date | None = None, horizon_days: int | None = None, family: str = "auto", score_after: bool = True,
    sentiment_candidates: list[str] | None = None, acting_user: Any = None, queue: bool = True,
) -> Job:
    """Queue a training job on the gpu queue; refuse if one is already queued or running, if
    the shop has nothing to learn from (``NothingToLearn``), or if the as-of date is out of
    range (``InvalidAsOf``). ``sentiment_candidates`` (ngram,
    transformer) replaces the shop's setting for this run only. With ``queue=False`` the job
    is created for the caller to run itself (``train --sync``)."""
    from customers.models import Order, Review
    from modeling.tasks import train_models_task

    with tenant_context(tenant):
        if not Order.objects.exists() and not Review.objects.exists():
            raise NothingToLearn("The shop has no orders or reviews to learn from yet: import its order history (and reviews), then train.")
    params = {
        "as_of": check_as_of(tenant, as_of or default_as_of(tenant)).isoformat(),
        "horizon_days": horizon_days or tenant.horizon_days,
        "family": family,
        "score_after": score_after,
    }
    if sentiment_candidates:
        params["sentiment_candidates"] = list(sentiment_candidates)
    try:
        with transaction.atomic():
            job = jobs.create_job(tenant, Job.Kind.TRAIN, params=params, acting_user=acting_user)
            if queue:
                jobs.enqueue_job(job, train_models_task)
    except IntegrityError:
        running = active_training(tenant)
        which = f" (job {running.pk}: its progress is at /api/v1/jobs/{running.pk}/)" if running is not None else ""
        raise TrainingAlreadyRunning(f"A training job is already queued or running for this shop{which}.") from None
    log.info("training job %s queued for tenant %s by %s", job.pk, tenant.slug, getattr(acting_user, "username", "system"))
    return job


def scoring_inputs(tenant: Tenant) -> str:
    """A digest of everything a scoring reads: the shop's rows (how many, and the latest
    change), the served model versions, the playbook and the shop's settings. Beat compares it
    with the last nightly scoring's to skip a shop where nothing has changed."""
    from django.db.models import Count, Max

    from campaigns.models import PlaybookRule
    from campaigns.playbook import ensure_default_playbook
    from customers.models import Customer, Order, OrderItem, Product, Review
    from modeling.models import ModelVersion

    ensure_default_playbook(tenant)  # as the scoring will read it: the first use writes the default rules
    with tenant_context(tenant):
        rows = [model.objects.aggregate(n=Count("pk"), latest=Max("updated_at")) for model in (Customer, Product, Order, Review, PlaybookRule)]
        state = {
            "rows": [[row["n"], str(row["latest"])] for row in rows], "items": OrderItem.objects.count(),
            "models": sorted(ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).values_list("pk", flat=True)),
            "shop": [tenant.currency, tenant.horizon_days, tenant.settings],
        }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def nothing_new_to_score(tenant: Tenant, day: dt.date, inputs: str) -> bool:
    """True when the last nightly scoring of ``day`` succeeded on the same inputs: a shop
    whose data stopped (its scoring date no longer moves) is not re-scored night after night."""
    with tenant_context(tenant):
        last = Job.objects.filter(kind=Job.Kind.SCORE, params__scheduled=True).order_by("-created_at").first()
    return last is not None and last.state == Job.State.SUCCEEDED and last.params.get("as_of") == day.isoformat() and last.params.get("inputs") == inputs


def do_start_scoring(tenant: Tenant, *, as_of: dt.date | None = None, acting_user: Any = None, new_models: bool = False,
                     scheduled_inputs: str = "", queue: bool = True) -> Job:
    """Queue a scoring of ``as_of``, or return the one already queued or running for that
    date: a retried API call or beat's nightly run joins it rather than scoring the same
    customers twice at once. After a training (``new_models``) only a queued one is joined:
    it reads the models when it starts, while a running one began with the previous ones.
    A shop with no model serving a target is refused (NoActiveModel). With ``queue=False`` a new job is created for the caller to run itself (``score --sync``)."""
    from modeling.scoring import serving_versions
    from modeling.tasks import score_customers_task

    day = check_as_of(tenant, as_of or default_as_of(tenant)).isoformat()
    if not new_models:
        serving_versions(tenant)  # NoActiveModel: refused now, not a job that fails when it starts
    states = [Job.State.QUEUED] if new_models else [Job.State.QUEUED, Job.State.RUNNING]
    with transaction.atomic():
        # Concurrent callers queue on the tenant: the check and the insert are one step.
        lock_tenant(tenant)
        with tenant_context(tenant):
            pending = Job.objects.filter(kind=Job.Kind.SCORE, state__in=states, params__as_of=day).first()
        if pending is not None:
            return pending
        params = {"as_of": day, **({"scheduled": True, "inputs": scheduled_inputs} if scheduled_inputs else {})}
        job = jobs.create_job(tenant, Job.Kind.SCORE, params=params, acting_user=acting_user)
        if queue:
            jobs.enqueue_job(job, score_customers_task)
    return job


def active_training(tenant: Tenant) -> Job | None:
    with tenant_context(tenant):
        return Job.objects.filter(kind=Job.Kind.TRAIN, state__in=[Job.State.QUEUED, Job.State.RUNNING]).first()


DEFAULT_SCHEDULE = {"retrain_weekday": 6, "retrain_hour": 2, "score_hour": 4}  # Sunday 02:00 and nightly 04:00, the shop's time


def plan_scheduled_jobs(*, now: dt.datetime | None = None) -> list[Job]:
    """The beat's hourly pass over tenants: weekly retraining and nightly scoring by default,
    each at most once per period, through the same services as the button and the CLI, at
    the hours of the shop's clock (its time zone). The nightly scoring is skipped when it
    would score the same date on the same inputs again."""
    from customers.models import Order

    now = now or timezone.now()
    started: list[Job] = []
    for tenant in Tenant.objects.all():
        schedule = {**DEFAULT_SCHEDULE, **tenant.settings.get("schedule", {})}
        with tenant_context(tenant):
            if not Order.objects.exists():
                continue
            local = now.astimezone(shop_zone(tenant) or dt.UTC)
            trained_recently = Job.objects.filter(kind=Job.Kind.TRAIN, created_at__gte=now - dt.timedelta(days=6)).exists()
            day = (shop_midnight(local.date(), tenant), shop_midnight(local.date() + dt.timedelta(days=1), tenant))
            scored_today = Job.objects.filter(kind=Job.Kind.SCORE, created_at__gte=day[0], created_at__lt=day[1]).exists()
        if local.weekday() == schedule["retrain_weekday"] and local.hour == schedule["retrain_hour"] and not trained_recently:
            with contextlib.suppress(TrainingAlreadyRunning):
                started.append(do_start_training(tenant))
        elif local.hour == schedule["score_hour"] and not scored_today and active_training(tenant) is None:
            from modeling.registry import active_versions

            if "purchase" in active_versions(tenant):  # the cheap check first: the digest counts every row
                inputs = scoring_inputs(tenant)
                if not nothing_new_to_score(tenant, default_as_of(tenant), inputs):
                    started.append(do_start_scoring(tenant, scheduled_inputs=inputs))
    return started
