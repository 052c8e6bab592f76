"""Model pages: versions, jobs, the retrain and score buttons, and one page per version."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from clmsite.models import Role
from clmsite.tenancy import shop_today
from clmsite.views import tenant_required
from modeling import explain, insights, registry
from modeling.jobs import CANCEL_ROLES
from modeling.models import Job, ModelVersion
from modeling.scoring import NoActiveModel
from modeling.services import (
    STALE_AFTER_DAYS,
    InvalidAsOf,
    NothingToLearn,
    TrainingAlreadyRunning,
    default_as_of,
    do_start_scoring,
    do_start_training,
    last_order_date,
    stale_scoring_warning,
)

TARGET_ORDER = ["purchase", "orders", "revenue", "sentiment"]


@tenant_required()
def models_page(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    active = registry.active_versions(tenant)
    versions = list(ModelVersion.objects.select_related("job")[:120])
    jobs = list(Job.objects.filter(kind__in=[Job.Kind.TRAIN, Job.Kind.SCORE])[:15])
    serving = [active[t] for t in TARGET_ORDER if t in active]
    earlier = registry.rollback_targets(tenant)
    for version in serving:
        version.beaten_by = _beaten_by(version)
        version.can_roll_back = version.target in earlier
    last_scored = insights.latest_scoring_date(tenant)
    together = _served_together(serving)
    for job in jobs:  # who may stop a job: whoever may start it (an analyst their scoring, as the server allows)
        job.can_cancel = not job.is_finished and request.membership.can(CANCEL_ROLES.get(job.kind, Role.ANALYST))  # type: ignore[attr-defined]
    return render(
        request,
        "modeling/models.html",
        {
            "serving": serving,
            "any_beaten": any(v.beaten_by for v in serving),
            "together": together,
            "versions": versions,
            "jobs": jobs,
            "training_now": any(job.kind == Job.Kind.TRAIN and not job.is_finished for job in jobs),
            "can_retrain": request.membership.can(Role.ADMIN),  # type: ignore[attr-defined]
            "can_score": "purchase" in active and request.membership.can(Role.ANALYST),  # type: ignore[attr-defined]
            "last_scored": last_scored,
            "default_as_of": default_as_of(tenant),
            "shop_today": shop_today(tenant),  # the latest as-of date
            "last_order": last_order_date(tenant),
            "stale_after_days": STALE_AFTER_DAYS,
        },
    )


def _served_together(serving: list[ModelVersion]) -> dict[str, Any] | None:
    """When the customer figures are served by more than one family (scoring's served_together):
    which family gives what, and the mix's validation metrics from the training that chose
    them (None when they come from different trainings, so no run validated them together)."""
    from clmsite.templatetags.clm import family_label

    customer = {v.target: v for v in serving if v.target in ("purchase", "orders", "revenue")}
    if len(customer) < 3 or len({v.family for v in customer.values()}) == 1:
        return None
    runs = {v.job_id for v in customer.values()}
    by_hand = any(not v.is_champion for v in customer.values())  # made active on this page (or by a rollback), not by its training's choice
    job = customer["purchase"].job if len(runs) == 1 and None not in runs and not by_hand else None
    metrics = ((job.result or {}).get("metrics") or {}).get("served_together") if job is not None else None
    why_not = ("" if metrics else "they come from different trainings" if len(runs) > 1
               else "an admin made one of them active by hand, so its training chose another mix" if by_hand else "their training did not measure them together")
    return {"families": {target: family_label(v.family) for target, v in customer.items()}, "metrics": metrics, "why_not": why_not}


def _beaten_by(version: ModelVersion) -> list[str]:
    """The baselines measured in the same window that score better than a serving model: it
    serves because it was the best candidate of a narrower training (one family), and the
    page says so rather than hide it."""
    from clmsite.templatetags.clm import family_label
    from modeling.training import better, margin_over

    # A family beats a serving BG/NBD only by the margin the champion rule asks; persistence, a rule that never serves, by any.
    return [family_label(name) for name, scores in (version.baseline_metrics or {}).items()
            if isinstance(scores, dict) and better(version.target, scores, version.metrics, margin=0.0 if name == "persistence" else margin_over(version.family))]


@tenant_required()
@require_POST
def retrain(request: HttpRequest) -> HttpResponse:
    """Owners, admins and staff may retrain; anyone else gets a 404 like a missing page."""
    if not request.membership.can(Role.ADMIN):  # type: ignore[attr-defined]
        raise Http404("Not found")
    # Read before the job starts: run in-process, it may have promoted models by the time it returns.
    serving = registry.active_versions(request.tenant)  # type: ignore[attr-defined]
    try:
        job = do_start_training(request.tenant, acting_user=request.user)  # type: ignore[attr-defined]
    except TrainingAlreadyRunning:
        messages.error(request, "A training job is already queued or running for this shop: its progress bar is below.")
        return redirect("models")
    except NothingToLearn as exc:
        messages.error(request, str(exc))
        return redirect("models")
    meanwhile = ("The current models keep serving until the new ones are validated." if serving else
                 "No model serves yet: once this training validates one, a scoring follows by itself and brings predictions, stages, segments and next actions.")
    messages.success(request, f"Training as of {job.params['as_of']} started (job {job.pk}). {meanwhile}")
    return redirect("models")


@tenant_required(Role.ANALYST)
@require_POST
def score_now(request: HttpRequest) -> HttpResponse:
    """Score every customer with the serving models as of a date (the shop's default unless
    given), as the nightly run and ``POST /api/v1/jobs/score/`` do; the same date joins a
    pending run. A date long after the last order is scored, with a warning: the page asks
    before it posts one, and a form posted without the page's script still says so."""
    try:
        as_of = dt.date.fromisoformat(request.POST["as_of"]) if request.POST.get("as_of") else None
        job = do_start_scoring(request.tenant, as_of=as_of, acting_user=request.user)  # type: ignore[attr-defined]
    except ValueError as exc:  # InvalidAsOf, or not a date
        given = request.POST.get("as_of", "")[:20]
        messages.error(request, str(exc) if isinstance(exc, InvalidAsOf) else f"'{given}' is not a date on the calendar." if re.fullmatch(r"\d{4}-\d{2}-\d{2}", given)
                       else "Give the as-of date as YYYY-MM-DD.")
        return redirect("models")
    except NoActiveModel as exc:
        messages.error(request, str(exc))
        return redirect("models")
    shown = insights.latest_scoring_date(request.tenant)  # type: ignore[attr-defined]
    follows = (f"the pages keep showing {shown}, a later date; this date's predictions join the history" if shown is not None and job.params["as_of"] < shown.isoformat()
               else "stages, segments and actions follow the new predictions")
    messages.success(request, f"Scoring as of {job.params['as_of']} (job {job.pk}): {follows}.")
    warning = stale_scoring_warning(request.tenant, dt.date.fromisoformat(job.params["as_of"]))  # type: ignore[attr-defined]
    if warning:
        messages.warning(request, warning)
    return redirect("models")


@tenant_required()
def model_version(request: HttpRequest, version_id: int) -> HttpResponse:
    version = registry.get_model_version(request.tenant, version_id)  # type: ignore[attr-defined]
    siblings = list(ModelVersion.objects.filter(job_id=version.job_id, target=version.target).exclude(pk=version.pk)) if version.job_id else []
    # The model its own training chose over this one (its run's champion, as stored then), if
    # any: making this one serve instead is allowed (an admin may know better), not unsaid.
    chosen = next((v for v in siblings if v.is_champion), None) if not version.is_champion else None
    return render(
        request,
        "modeling/version.html",
        {
            "version": version,
            "siblings": siblings,
            "charts_data": version.own_charts,
            "importance_data": [[explain.feature_label(name), share] for name, share in version.own_feature_importance[:15]],
            "count_target": version.target in ("orders", "revenue"),
            "can_promote": request.membership.can(Role.ADMIN),  # type: ignore[attr-defined]
            "chosen_over": chosen,
        },
    )


@tenant_required(Role.ADMIN)
@require_POST
def promote(request: HttpRequest, version_id: int) -> HttpResponse:
    try:
        version = registry.do_promote_model_version(request.tenant, version_id, acting_user=request.user)  # type: ignore[attr-defined]
    except (registry.ArtifactError, registry.NotPromotable) as exc:
        messages.error(request, f"Not promoted: {exc}")
        return redirect("model_version", version_id=version_id)
    messages.success(request, f"{_named(version)} now serves {version.get_target_display().lower()}. {RESCORE_HINT}")
    return redirect("model_version", version_id=version.pk)


@tenant_required(Role.ADMIN)
@require_POST
def rollback(request: HttpRequest, target: str) -> HttpResponse:
    if target not in ModelVersion.Target.values:
        raise Http404("Not found")
    try:
        version = registry.do_rollback_model(request.tenant, target, acting_user=request.user)  # type: ignore[attr-defined]
    except registry.ArtifactError as exc:
        messages.error(request, f"Not rolled back: {exc}")
        return redirect("models")
    except ValueError as exc:  # no earlier model
        messages.error(request, str(exc))
        return redirect("models")
    messages.success(request, f"Rolled back: {_named(version)} serves {version.get_target_display().lower()} again. {RESCORE_HINT}")
    return redirect("models")


RESCORE_HINT = "Customers keep their current predictions until the next scoring (nightly, or Score now below)."


def _named(version: ModelVersion) -> str:
    """A version as the pages name it: "Boosted trees v5"."""
    from clmsite.templatetags.clm import family_label

    return f"{family_label(version.family)} v{version.number}"
