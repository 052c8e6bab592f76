"""After each scoring: stages (with backfilled history), RFM groups, learned segments,
saved-segment counts and the recommended next action for every customer.

``refresh_insights(tenant, as_of)`` is the one entry point: the last scoring chunk calls
it, and so does ``manage.py lifecycle``. Everything reads the tenant's data up to
``as_of`` only.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min, Q, QuerySet
from django.utils import timezone

from campaigns import playbook
from clmsite.datacache import bump_data_version
from clmsite.models import Tenant
from clmsite.statistics import refresh_statistics
from clmsite.tenancy import lock_tenant, require_tenant, shop_day, shop_day_end, shop_midnight, shop_zone, tenant_context
from customers.services import parsing
from customers.services.queries import month_in_progress
from modeling import lifecycle, review_insight, segments
from modeling.explain import money_text
from modeling.families.base import Progress, horizon_pace, no_progress
from modeling.features import History, as_timestamp, features_as_of, load_history, shop_clock, typical_first_order
from modeling.models import CustomerInsight, Job, ModelVersion, Prediction, Segment, SegmentSnapshot, Stage, StageSnapshot
from modeling.profiles import customer_profiles

log = logging.getLogger(__name__)
BACKFILL_MONTHS = 12
PROSPECTS_KEY = "prospects"


def refresh_insights(tenant: Tenant, as_of: dt.date, *, backfill_months: int = BACKFILL_MONTHS, seed: int = 0, progress: Progress = no_progress,
                     rebuild_history: bool = False) -> dict[str, Any]:
    """Recompute everything for ``as_of``; returns counts for the job's result. The month-end
    snapshots are filled in where missing, or all recomputed with ``rebuild_history`` (after
    the stage rules changed, oldest first, so each period's start and reason carry forward)."""
    progress(0.0, "Loading data")
    # The data the date's predictions saw: an order imported since (dated today) made a
    # customer's stage new while their chance to buy was the old one, "At risk: 13% likely"
    # five minutes after they ordered. What came later waits for the next scoring, as the
    # dashboard says.
    with tenant_context(tenant):
        scored_at = Prediction.objects.filter(as_of=as_of).aggregate(at=Min("created_at"))["at"]
    history = load_history(tenant, ceiling=as_of, loaded_before=scored_at)
    features = features_as_of(history, as_of)
    predictions = _predictions(tenant, as_of)
    overrides = tenant.settings.get("lifecycle", {})
    thresholds = lifecycle.derive_thresholds(history, as_of, overrides)

    progress(0.1, "Backfilling stage history")
    with tenant_context(tenant):
        known_dates = set(StageSnapshot.objects.values_list("as_of", flat=True).distinct())
    for date in lifecycle.backfill_dates(history, as_of, backfill_months):
        if rebuild_history or date not in known_dates:
            past = _predictions(tenant, date)
            save_stages(tenant, date, lifecycle.stages_as_of(history, date, lifecycle.derive_thresholds(history, date, overrides),
                                                             predictions=past if len(past) else None, previous=previous_stages(tenant, date)))
    stages = lifecycle.stages_as_of(history, as_of, thresholds, features=features, predictions=predictions if len(predictions) else None,
                                    previous=previous_stages(tenant, as_of))

    progress(0.3, "RFM groups")
    rfm = segments.rfm_scores(features) if len(features) else pd.DataFrame(columns=["group", "code"])
    rfm_segments = _ensure_rfm_segments(tenant)

    progress(0.4, "Learning segments")
    learned, map_xy = learn_segments(tenant, history, as_of, features, stages, predictions, seed=seed, progress=lambda f, m: progress(0.4 + 0.35 * f, m))

    progress(0.76, "Finding review aspects")
    tagged = review_insight.tag_reviews(tenant, progress=lambda f, m: progress(0.76 + 0.04 * f, m)) if getattr(settings, "CLM_SEGMENT_EMBEDDINGS", True) else 0

    progress(0.8, "Recommending actions")
    rows = _insight_rows(tenant, history, as_of, features, stages, predictions, rfm, rfm_segments, learned, map_xy)
    with tenant_context(tenant), transaction.atomic():
        # One refresh writes at a time per tenant (a threshold change can meet a scoring's
        # last chunk): the second waits here, then deletes what the first wrote.
        lock_tenant(tenant)
        # The date's stages with the insights, in one commit: saved before learning the segments,
        # the dashboard's funnel (the snapshots) and its cards (the insights) disagreed for minutes.
        save_stages(tenant, as_of, stages)
        CustomerInsight.objects.all().delete()
        CustomerInsight.objects.bulk_create(rows, batch_size=1000)
        _snapshot_segments(tenant, as_of)
        bump_data_version(tenant.pk)  # the dashboard's cached aggregates are stale now
    refresh_statistics(CustomerInsight, StageSnapshot, SegmentSnapshot, Prediction)
    progress(1.0, f"Stages, segments and actions for {len(rows):,} customers")
    counts = pd.Series([r.stage for r in rows]).value_counts().to_dict() if rows else {}
    return {"customers": len(rows), "stages": counts, "learned_segments": len({r.learned_segment_id for r in rows}), "thresholds": thresholds.as_dict(), "reviews_tagged": tagged}


def derived_thresholds(tenant: Tenant, as_of: dt.date) -> lifecycle.Thresholds:
    """The thresholds the shop's own order gaps give as of the date, before its overrides."""
    from customers.models import Order

    with tenant_context(tenant):
        rows = Order.objects.exclude(status__in=Order.NOT_REVENUE).filter(ordered_at__lte=shop_day_end(as_of, tenant))
        orders = pd.DataFrame.from_records(list(rows.values_list("customer_id", "ordered_at")), columns=["customer", "ordered_at"])
    orders["ordered_at"] = shop_clock(pd.to_datetime(orders["ordered_at"], utc=True), shop_zone(tenant))
    return lifecycle.thresholds_from_orders(orders, as_of)


def latest_scoring_date(tenant: Tenant) -> dt.date | None:
    """The date of the latest complete scoring: the one the current stages and actions are
    computed as of, written only when every chunk has been scored (before any stages exist, the
    latest predictions' date). Pages, exports and the API serve this date, so a scoring still
    running or one that failed midway never shows half a shop as the latest."""
    with tenant_context(tenant):
        return CustomerInsight.objects.aggregate(as_of=Max("as_of"))["as_of"] or Prediction.objects.aggregate(as_of=Max("as_of"))["as_of"]


def scoring_horizon(tenant: Tenant, as_of: dt.date | None) -> int:
    """The horizon the scoring of ``as_of`` predicted over (its value at risk and chances are
    for those days), else the shop's setting: a horizon changed in Settings applies from the
    next training, and pages said "next 30 days" over figures of 90."""
    if as_of is not None:
        with tenant_context(tenant):
            days = Prediction.objects.filter(as_of=as_of).values_list("horizon_days", flat=True).first()
        if days:
            return int(days)
    return tenant.horizon_days


def do_set_lifecycle_thresholds(tenant: Tenant, overrides: dict[str, Any], *, acting_user: Any = None) -> Job | None:
    """Save the tenant's threshold overrides and queue the recomputation of the stages (and the
    segments and actions that follow from them) as of the latest scoring, as ``manage.py
    lifecycle`` does. A background job: on a big shop it takes longer than a page may wait.
    Returns the job, or None when nothing has been scored yet."""
    from clmsite.services import record_access

    with transaction.atomic():
        kept = {k: v for k, v in overrides.items() if v is not None}
        tenant.settings = {**tenant.settings, "lifecycle": kept}
        tenant.save(update_fields=["settings"])
        record_access(tenant, "thresholds_changed", ", ".join(f"{k}: {v:g}" for k, v in kept.items()) or "all derived from the shop's data", acting_user)
        # The month-end history too: kept on the old rule, the stages over time showed a drop on
        # the latest date that was only the rule changing, and its transitions with it.
        return queue_insights_refresh(tenant, acting_user=acting_user, rebuild_history=True)


def latest_insights_refresh() -> Any:
    """The current tenant's latest recomputation job, as a list of at most one, for the pages
    that show its progress (Lifecycle, Playbook) to poll."""
    return Job.objects.filter(kind=Job.Kind.INSIGHTS).order_by("-created_at")[:1]


def queue_insights_refresh(tenant: Tenant, *, acting_user: Any = None, actions_only: bool = False, rebuild_history: bool = False) -> Job | None:
    """Queue the recomputation of the stages, segments and next actions as of the latest
    scoring, after a setting they follow changed (the lifecycle thresholds, which
    ``rebuild_history`` applies to the month-end stage history too), or with ``actions_only``
    of the next actions alone (a playbook rule, :func:`refresh_actions`). Returns the job, or
    None when nothing has been scored yet."""
    from modeling import jobs
    from modeling.tasks import refresh_insights_task

    with transaction.atomic():
        as_of = latest_scoring_date(tenant)
        if as_of is None:
            return None
        with tenant_context(tenant):
            # A recomputation not yet started reads the settings when it starts: no second one.
            # A full one recomputes the actions too; one of the actions alone does not cover a full one.
            pending = [job for job in Job.objects.filter(kind=Job.Kind.INSIGHTS, state=Job.State.QUEUED, params__as_of=as_of.isoformat())
                       if (actions_only or not job.params.get("actions_only")) and (job.params.get("rebuild_history") or not rebuild_history)]
        if pending:
            return pending[0]
        params = {"as_of": as_of.isoformat(), **({"actions_only": True} if actions_only else {}), **({"rebuild_history": True} if rebuild_history else {})}
        job = jobs.create_job(tenant, Job.Kind.INSIGHTS, params=params, acting_user=acting_user)
        jobs.enqueue_job(job, refresh_insights_task)
    return job


def refresh_after_scoring(tenant: Tenant, as_of: dt.date, *, progress: Progress = no_progress) -> dict[str, Any]:
    """What a finished scoring of ``as_of`` brings in line: the stages, segments and actions,
    unless the pages already show a later date. A scoring of an earlier date (the Models
    page's "as of", or the API's) adds its predictions to the history and leaves the current
    view as it is: it replaced the shop's actions and cards with June's, under a funnel of
    December (2026-12-07)."""
    with tenant_context(tenant):
        current = CustomerInsight.objects.aggregate(as_of=Max("as_of"))["as_of"]
    if current is not None and as_of < current:
        progress(1.0, f"Kept the current view as of {current.isoformat()}")
        return {"customers": 0, "stages": {}, "learned_segments": 0, "kept_as_of": current.isoformat()}
    return refresh_insights(tenant, as_of, progress=progress)


def insights_summary(summary: dict[str, Any]) -> str:
    if "kept_as_of" in summary:
        return (f"The pages still show {summary['kept_as_of']}, a later date: this scoring's predictions are kept as history "
                "(the API lists them with ?as_of=), and its stages, segments and actions were not computed.")
    stages = ", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in sorted(summary["stages"].items(), key=lambda item: -item[1]))
    n, k = summary["customers"], summary["learned_segments"]
    if not n:
        return "No customers to give a stage yet."
    return f"{n:,} customer{'s' if n != 1 else ''}: {stages}; {k} learned segment{'s' if k != 1 else ''}."


def _predictions(tenant: Tenant, as_of: dt.date) -> pd.DataFrame:
    with tenant_context(tenant):
        columns = ["purchase_probability", "churn_probability", "expected_orders", "predicted_value", "value_tier"]
        rows = Prediction.objects.filter(as_of=as_of).values_list("customer_id", *columns)
        frame = pd.DataFrame.from_records(list(rows), columns=["customer", *columns])
    frame["predicted_value"] = frame["predicted_value"].astype(float)
    return frame.set_index("customer")


def previous_stages(tenant: Tenant, as_of: dt.date) -> pd.DataFrame:
    """Each customer's latest stage snapshot before ``as_of`` (stage, as_of, since, reason),
    indexed by customer: the periods ``lifecycle.stages_as_of`` continues."""
    columns = ["customer", "stage", "as_of", "since", "reason"]
    with tenant_context(tenant):
        earlier = StageSnapshot.objects.filter(as_of__lt=as_of)
        if _distinct_on():
            rows = list(earlier.order_by("customer_id", "-as_of").distinct("customer_id").values_list("customer_id", "stage", "as_of", "since", "reason"))
        else:
            rows = list(earlier.order_by("customer_id", "as_of").values_list("customer_id", "stage", "as_of", "since", "reason"))
    frame = pd.DataFrame.from_records(rows, columns=columns).drop_duplicates("customer", keep="last")
    return frame.set_index("customer")


def save_stages(tenant: Tenant, as_of: dt.date, stages: pd.DataFrame) -> None:
    """Store the stages of ``as_of`` (``lifecycle.stages_as_of`` given the previous snapshots,
    so a stage that goes on keeps the day it began). A snapshot keeps the reason as of that
    day (``entry_reason``), not as of its own date: the stage history shows them together."""
    with tenant_context(tenant), transaction.atomic():
        StageSnapshot.objects.filter(as_of=as_of).delete()
        StageSnapshot.objects.bulk_create(
            [StageSnapshot(tenant=tenant, customer_id=int(c), as_of=as_of, stage=r["stage"], since=r["since"], reason=r["entry_reason"][:300])
             for c, r in stages.iterrows()],
            batch_size=2000,
        )


def _distinct_on() -> bool:
    from django.db import connection

    return connection.features.can_distinct_on_fields


def _ensure_rfm_segments(tenant: Tenant) -> dict[str, Segment]:
    with tenant_context(tenant):
        existing = {s.key: s for s in Segment.objects.filter(kind=Segment.Kind.RFM)}
        for key, name in [(key, name) for key, name, _, _ in segments.RFM_GROUPS] + [segments.NO_ORDER]:
            if key not in existing:
                existing[key] = Segment.objects.create(tenant=tenant, kind=Segment.Kind.RFM, key=key, name=name, description=segments.RFM_DESCRIPTIONS[key])
            elif existing[key].name != name:  # a group renamed since (the names follow the code)
                existing[key].name = name
                existing[key].save(update_fields=["name"])
    return existing


# --- Learned segments ------------------------------------------------------------------

_BASE_ENCODER: dict[str, Any] = {}
MIN_CLUSTERED_BUYERS = 10


def customer_embeddings(tenant: Tenant, texts: pd.Series, progress: Progress = no_progress) -> np.ndarray | None:
    """Embeddings of the customers' profiles: by the tenant's latest fine-tuned transformer
    when there is one, else by the pretrained encoder. None when disabled by setting."""
    if not getattr(settings, "CLM_SEGMENT_EMBEDDINGS", True) or texts.empty:
        return None
    from modeling import encoder as enc
    from modeling.scoring import load_model

    with tenant_context(tenant):
        version = (
            ModelVersion.objects.filter(family="transformer", target="purchase").exclude(artifact_path="").order_by("-state", "-created_at").first()
        )
    if version is not None:
        try:
            model = load_model(version)
            return model.embed(texts.tolist(), progress)
        except Exception as error:  # a missing or refused artifact: fall back to the pretrained encoder
            log.warning("segments: transformer v%s unavailable (%s); using the pretrained encoder", version.pk, error)
    tokenizer, model, cache = pretrained_encoder()
    return enc.embed_texts(texts.tolist(), tokenizer, model, cache=cache, device=enc.pick_device(), progress=progress)


def pretrained_encoder() -> tuple[Any, Any, Any]:
    """The pretrained encoder for scoring (int8 on CPU) and its embedding cache, loaded once
    per process: segments and review aspects use it when no fine-tuned one applies."""
    from modeling import encoder as enc

    if "model" not in _BASE_ENCODER:
        enc.configure_threads()
        tokenizer, base = enc.load_encoder()
        _BASE_ENCODER.update(tokenizer=tokenizer, model=enc.inference_model(base, enc.pick_device()), cache=enc.EmbeddingCache("pretrained"))
    return _BASE_ENCODER["tokenizer"], _BASE_ENCODER["model"], _BASE_ENCODER["cache"]


def learn_segments(
    tenant: Tenant, history: History, as_of: dt.date, features: pd.DataFrame, stages: pd.DataFrame, predictions: pd.DataFrame,
    *, seed: int = 0, progress: Progress = no_progress,
) -> tuple[dict[int, Segment], pd.DataFrame]:
    """Cluster the customers with orders, describe and name the clusters, match them to the
    previous run's segments, and return customer -> Segment plus the 2-D map."""
    with tenant_context(tenant):
        prospects_segment, _ = Segment.objects.get_or_create(
            kind=Segment.Kind.LEARNED, key=PROSPECTS_KEY, defaults={"tenant": tenant, "name": "Prospects (no order yet)", "description": "Signed up, no order yet."}
        )
    assignment: dict[int, Segment] = {int(c): prospects_segment for c in stages.index if c not in features.index}
    if len(features) < MIN_CLUSTERED_BUYERS:
        # Too few buyers to cluster: they get no learned segment (they are not prospects), and
        # segments learned before, from other customers, stop being current.
        with tenant_context(tenant):
            Segment.objects.filter(kind=Segment.Kind.LEARNED, is_current=True).exclude(key=PROSPECTS_KEY).update(is_current=False, size=0, updated_at=timezone.now())
            Segment.objects.filter(pk=prospects_segment.pk).update(size=len(assignment))
        return assignment, pd.DataFrame(columns=["x", "y"])
    behaviour = segments.behaviour_matrix(features, history.categories)
    texts = customer_profiles(history, as_of, features)
    progress(0.05, f"Embedding {len(texts):,} customer profiles")
    embeddings = customer_embeddings(tenant, texts, progress=lambda f, m: progress(0.05 + 0.6 * f, f"Learning segments: reading customer profiles ({f:.0%})"))
    progress(0.7, "Clustering")
    with tenant_context(tenant):
        previous_k = Segment.objects.filter(kind=Segment.Kind.LEARNED, is_current=True).exclude(key=PROSPECTS_KEY).count() or None
    result = segments.cluster(behaviour, embeddings, seed=seed, previous_k=previous_k)
    value = predictions["predicted_value"].reindex(features.index) if len(predictions) else pd.Series(np.nan, index=features.index)
    members = behaviour.copy()
    members["stage"] = stages["stage"].reindex(features.index)
    members["orders"] = features["orders"]
    members["value"] = value.fillna(features["total_spent"])
    members["churn"] = predictions["churn_probability"].reindex(features.index) if len(predictions) else np.nan
    members["sentiment"] = features["sentiment_mean"]
    labels = result.labels
    stats = {int(label): segments.describe(members[labels == label], members, history.categories) for label in sorted(labels.unique())}
    words = segments.distinguishing_words(texts, labels)
    for label in stats:
        stats[label]["words"] = words.get(label, [])
        stats[label]["value_is_predicted"] = bool(len(predictions))
    with tenant_context(tenant), transaction.atomic():
        previous = {s.key: s for s in Segment.objects.filter(kind=Segment.Kind.LEARNED, is_current=True).exclude(key=PROSPECTS_KEY)}
        matched = segments.match_previous(result.centroids, {key: s.centroid for key, s in previous.items()}, behaviour.std(ddof=0))
        # Named afresh each run: a segment keeps its id and history through a retrain, but a name
        # kept from an earlier run ("Mostly lapsed ...") could contradict who is in it now.
        names = {label: segments.name_for(stats[label]) for label in stats}
        names = segments.unique_names(names, stats, words)
        used = {int(key[1:]) for key in Segment.objects.filter(kind=Segment.Kind.LEARNED).exclude(key=PROSPECTS_KEY).values_list("key", flat=True) if key[1:].isdigit()}
        next_number = max(used, default=0) + 1
        by_label: dict[int, Segment] = {}
        for label in stats:
            if label in matched:
                segment = previous[matched[label]]
            else:
                segment = Segment(tenant=tenant, kind=Segment.Kind.LEARNED, key=f"s{next_number}")
                next_number += 1
            renamed = segment.stats.get("renamed_from") if segment.pk else None
            if segment.pk and segment.name != names[label][:200] and segment.name:
                # The same segment (its centroid moved little) now reads otherwise: say what it was,
                # so that a campaign drafted for it is checked against who is in it now.
                renamed = {"name": segment.name, "size": segment.size, "until": as_of.isoformat(), "at": timezone.now().isoformat()}
            segment.stats = {**stats[label], "k": result.k, "k_scores": {str(k): v for k, v in result.scores.items()}, "matched_previous": label in matched,
                             **({"renamed_from": renamed} if renamed else {})}
            segment.name = names[label][:200]
            segment.description = _describe_in_words(stats[label], tenant.currency)[:500]
            segment.centroid = {k: round(float(v), 6) for k, v in result.centroids.loc[label].items()}
            segment.size = stats[label]["size"]
            segment.is_current = True
            segment.updated_at = timezone.now()
            segment.save()
            by_label[label] = segment
        retired = [s.pk for key, s in previous.items() if key not in matched.values()]
        Segment.objects.filter(pk__in=retired).update(is_current=False, size=0, updated_at=timezone.now())
        prospects_segment.size = len(assignment)
        prospects_segment.stats = {"size": len(assignment)}
        prospects_segment.is_current = bool(assignment)  # a shop where everyone has ordered lists no empty bar
        prospects_segment.save()
    for customer, label in labels.items():
        assignment[int(customer)] = by_label[int(label)]
    return assignment, result.map_xy


def _describe_in_words(stats: dict[str, Any], currency: str) -> str:
    churn = f", {stats['churn']:.0%} churn risk" if stats.get("churn") is not None else ""
    categories = ", ".join(c["category"] for c in stats["top_categories"][:2]) or "no dominant category"
    words = f"; profiles mention {', '.join(stats['words'][:3])}" if stats.get("words") else ""
    value = "mean predicted value" if stats.get("value_is_predicted", True) else "mean spend"
    return (f"{stats['size']:,} customers, {value} {money_text(stats['mean_value'], currency)} ({relative_to_average(stats['value_index'])}){churn}; "
            f"median {stats['median_orders']:.0f} order{'' if round(stats['median_orders']) == 1 else 's'}; {_how_many(stats['dominant_stage_share'])} {stats['dominant_stage'].replace('_', ' ')} ({stats['dominant_stage_share']:.0%}); "
            f"top categories: {categories}{words}.")


def _how_many(share: float) -> str:
    """The word for a share of a segment: "all", "nearly all", "mostly" (two thirds, as a name says it), "more than half", or "largest group"."""
    return ("all" if share >= 0.995 else "nearly all" if share >= segments.STAGE_NAME_SHARE else "mostly" if share >= segments.STAGE_MOSTLY_SHARE
            else "more than half" if share >= 0.505 else "about half" if share >= 0.495 else "largest group")  # as the rounded share reads: 50% is "about half"


def relative_to_average(index: float) -> str:
    """A segment's value against the average in words: "2.3× the average", "0.45× the
    average", "well below the average" (under a tenth, where a ratio reads as noise)."""
    if index < 0.1:
        return "well below the average"
    if 0.95 <= index <= 1.05:
        return "about the average"
    return f"{index:.2g}× the average" if index < 1 else f"{index:.1f}× the average"


# --- Actions and the per-customer row ---------------------------------------------------


class _Actions:
    """Each customer's next action by the playbook, from the stage, the scoring of the date and
    the data up to it: what a full refresh stores with the stages, and what a playbook edit
    recomputes alone (:func:`refresh_actions`)."""

    def __init__(self, tenant: Tenant, history: History, as_of: dt.date, features: pd.DataFrame, predictions: pd.DataFrame) -> None:
        self.rules = playbook.ensure_default_playbook(tenant)
        lines = history.lines[history.lines["ordered_at"] <= as_timestamp(as_of)]
        self.affinity = playbook.category_affinity(lines)
        self.bought = lines.groupby("customer")["category"].unique().to_dict() if len(lines) else {}
        self.recent_sentiment, self.negative_review = _negative_reviews(tenant, as_of)
        self.currency = tenant.currency + " " if getattr(tenant, "currency", "") else ""
        self.features, self.predictions = features, predictions
        # The top share of buyers each buyer's lifetime spend is in (0.01: the top 1%), as of the date.
        self.spend_top = features["total_spent"].rank(ascending=False, pct=True, method="max") if len(features) else pd.Series(dtype=float)
        self.shop_average = float(features["total_spent"].sum() / features["orders"].sum()) if len(features) and features["orders"].sum() else 0.0
        # Their pace over the scoring's own horizon, as its chances are (not a horizon changed in Settings since).
        self.pace = horizon_pace(features, scoring_horizon(tenant, as_of)) if len(features) else pd.Series(dtype=float)
        # A sign-up's first order, as the scoring values it.
        typical = typical_first_order(history.orders[history.orders["ordered_at"] <= as_timestamp(as_of)])
        self.first_order = typical if typical is not None else self.shop_average

    def prediction(self, customer: int) -> tuple[float | None, float, str]:
        """Churn, predicted value (lifetime spend when not scored) and value tier."""
        has_features = customer in self.features.index
        prediction = self.predictions.loc[customer] if customer in self.predictions.index else None
        churn = float(prediction["churn_probability"]) if prediction is not None else None
        value = float(prediction["predicted_value"]) if prediction is not None else (float(self.features.at[customer, "total_spent"]) if has_features else 0.0)
        return churn, value, str(prediction["value_tier"]) if prediction is not None else ""

    def spend_and_usual_chance(self, customer: int) -> tuple[float, float]:
        """What the customer would spend in the horizon if they order (playbook.spend_if_ordering),
        and their chance of an order at their own pace (playbook.usual_chance; 0 for a prospect)."""
        prediction = self.predictions.loc[customer] if customer in self.predictions.index else None
        chance = float(prediction["purchase_probability"]) if prediction is not None else 0.0
        per_buyer = float(prediction["expected_orders"]) / chance if chance > 1e-9 else 1.0
        if customer not in self.features.index:  # a prospect: the typical first order, as their factors say ("typically USD 138"), not every order's mean
            return playbook.spend_if_ordering(per_buyer, 1.0, 0.0, 0, self.first_order), 0.0
        own, pace = self.features.loc[customer], float(self.pace[customer])
        spend = playbook.spend_if_ordering(per_buyer, pace, float(own["avg_order_value"] or 0.0), int(own["orders"]), self.shop_average)
        return spend, playbook.usual_chance(pace)

    def recommend(self, customer: int, stage: str, stage_reason: str, predicted: tuple[float | None, float, str]) -> tuple[dict[str, Any], float]:
        """The playbook's action for one customer, and the value at risk (the priority).
        ``predicted``: the customer's :meth:`prediction`."""
        f, has_features = self.features, customer in self.features.index
        churn, value, tier = predicted
        if_ordering, usual = self.spend_and_usual_chance(customer)
        at_risk = playbook.value_at_risk(churn, if_ordering, usual)  # as stored (the priority), so the reason's figure is the page's
        row = {
            "stage": stage, "stage_reason": stage_reason, "tier": tier, "churn": churn, "value": value, "if_ordering": if_ordering, "usual": usual,
            "value_at_risk": at_risk,
            "days_since": int(round(f.at[customer, "recency_days"])) if has_features else None,
            "spent": float(f.at[customer, "total_spent"]) if has_features else 0.0,
            "orders": int(f.at[customer, "orders"]) if has_features else 0,
            "spend_top": float(self.spend_top[customer]) if has_features else None,
            "recent_sentiment": self.recent_sentiment.get(customer), "negative_review": self.negative_review.get(customer, ""),
            "categories": [str(c) for c in self.bought.get(customer, [])],
        }
        return playbook.recommend(self.rules, row, self.affinity, self.currency), at_risk


# The fields of a customer's insight that its next action sets.
ACTION_FIELDS = ["action", "action_channel", "action_offer", "action_detail", "action_reason", "rule_name", "priority", "updated_at"]


def _set_action(insight: CustomerInsight, action: dict[str, Any], at_risk: float, now: dt.datetime) -> None:
    insight.action, insight.action_channel, insight.action_offer = action["action"], action["channel"], action["offer"]
    insight.action_detail, insight.action_reason, insight.rule_name = action["detail"][:200], action["reason"][:400], action["rule_name"][:100]
    insight.priority, insight.updated_at = at_risk, now


def _insight_rows(
    tenant: Tenant, history: History, as_of: dt.date, features: pd.DataFrame, stages: pd.DataFrame, predictions: pd.DataFrame,
    rfm: pd.DataFrame, rfm_segments: dict[str, Segment], learned: dict[int, Segment], map_xy: pd.DataFrame,
) -> list[CustomerInsight]:
    actions = _Actions(tenant, history, as_of, features, predictions)
    rows = []
    now = timezone.now()
    for customer, stage in stages.iterrows():
        customer = int(customer)
        churn, value, tier = predicted = actions.prediction(customer)
        action, at_risk = actions.recommend(customer, stage["stage"], stage["reason"], predicted)
        rfm_row = rfm.loc[customer] if customer in rfm.index else None
        mean_sentiment = features.at[customer, "sentiment_mean"] if customer in features.index else np.nan
        insight = CustomerInsight(
            tenant=tenant, customer_id=customer, as_of=as_of, stage=stage["stage"], stage_since=stage["since"], stage_reason=stage["reason"][:300],
            rfm_segment=rfm_segments[rfm_row["group"] if rfm_row is not None else segments.NO_ORDER[0]], rfm_score=rfm_row["code"] if rfm_row is not None else "",
            learned_segment=learned.get(customer),
            map_x=float(map_xy.at[customer, "x"]) if customer in map_xy.index else None, map_y=float(map_xy.at[customer, "y"]) if customer in map_xy.index else None,
            sentiment=None if pd.isna(mean_sentiment) else round(float(mean_sentiment), 4),
            churn_probability=churn, predicted_value=Decimal(str(round(value, 2))) if customer in predictions.index else None, value_tier=tier,
        )
        _set_action(insight, action, at_risk, now)
        rows.append(insight)
    return rows


def refresh_actions(tenant: Tenant, as_of: dt.date, *, progress: Progress = no_progress) -> dict[str, Any]:
    """Every customer's next action again, after a playbook rule changed. The stages, segments
    and their history stay as they are: a rule edit used to re-learn the segments (minutes on
    the encoder, and a retitled segment) to change a few actions."""
    progress(0.0, "Loading data")
    history = load_history(tenant, ceiling=as_of)
    features = features_as_of(history, as_of)
    actions = _Actions(tenant, history, as_of, features, _predictions(tenant, as_of))
    progress(0.6, "Recommending actions")
    now = timezone.now()
    with tenant_context(tenant), transaction.atomic():
        lock_tenant(tenant)  # after a full refresh that was writing: its rows, with this playbook
        insights = list(CustomerInsight.objects.filter(as_of=as_of).only("id", "customer_id", "stage", "stage_reason"))
        for insight in insights:
            _set_action(insight, *actions.recommend(insight.customer_id, insight.stage, insight.stage_reason, actions.prediction(insight.customer_id)), now)
        CustomerInsight.objects.bulk_update(insights, ACTION_FIELDS, batch_size=1000)
        _snapshot_segments(tenant, as_of)  # a saved segment may filter by action
        bump_data_version(tenant.pk)
    progress(1.0, f"Next actions for {len(insights):,} customers")
    counts = pd.Series([i.action for i in insights]).value_counts().to_dict() if insights else {}
    return {"customers": len(insights), "actions": counts}


def _negative_reviews(tenant: Tenant, as_of: dt.date) -> tuple[dict[int, float], dict[int, str]]:
    """Per customer with a negative review (``playbook.negative_review_filter``, the same
    definition as the dashboard's alert list): the worst one's tone and it in words."""
    from customers.models import Review

    tone: dict[int, float] = {}
    words: dict[int, str] = {}
    with tenant_context(tenant):
        reviews = Review.objects.filter(playbook.negative_review_filter(as_of, tenant)).values_list("customer_id", "created_at", "rating", "sentiment_score")
        for customer, created_at, rating, score in reviews.order_by("customer_id", "created_at"):
            value = playbook.negative_review_tone(rating, score)
            if customer not in tone or value <= tone[customer]:
                tone[customer] = value
                stars = f"{rating}★ " if rating else ""
                words[customer] = f"negative {stars}review on {shop_day(created_at, tenant).isoformat()}"
    return tone, words


def _snapshot_segments(tenant: Tenant, as_of: dt.date) -> None:
    """Sizes, value and churn of every current segment as of the date (the trend), and the
    live size of each saved segment. RFM groups and saved segments get these as their
    statistics too (a learned segment's come from its clustering, ``segments.describe``): the
    API answered them ``stats: {}``."""
    for segment in Segment.objects.filter(Q(is_current=True) | Q(kind=Segment.Kind.SAVED)):
        stats = member_stats(segment, as_of)
        size, mean_value, churn = stats["size"], stats["mean_value"], stats["churn"] or 0.0
        Segment.objects.filter(pk=segment.pk).update(size=size, **({"stats": stats} if segment.kind != Segment.Kind.LEARNED else {}))
        SegmentSnapshot.objects.update_or_create(segment=segment, as_of=as_of, defaults={"tenant": tenant, "size": size, "mean_value": mean_value, "churn": round(churn, 4)})


def member_stats(segment: Segment, as_of: dt.date | None) -> dict[str, Any]:
    """A segment's members now: size, mean predicted value, churn and the share of each stage,
    as of the scoring date their insights are of (an RFM group's and a saved segment's
    statistics; a learned segment's come from its clustering)."""
    rows = list(segment_members(segment).values_list("predicted_value", "churn_probability", "stage"))
    values = [float(v) for v, _, _ in rows if v is not None]
    churns = [c for _, c, _ in rows if c is not None]
    stages = pd.Series([stage for _, _, stage in rows], dtype=object).value_counts(normalize=True)
    return {"as_of": as_of.isoformat() if as_of else None, "size": len(rows), "mean_value": round(float(np.mean(values)), 2) if values else 0.0,
            "churn": round(float(np.mean(churns)), 4) if churns else None, "stages": {str(k): round(float(v), 3) for k, v in stages.items()},
            "dominant_stage": str(stages.index[0]) if rows else None, "dominant_stage_share": round(float(stages.iloc[0]), 3) if rows else None}


# --- Membership ---------------------------------------------------------------------------

SAVED_FILTERS = {
    "stages": "stage is one of", "value_tiers": "value tier is one of", "actions": "recommended action is one of", "churn_min": "churn risk at least",
    "churn_max": "churn risk at most", "sentiment_min": "mean review sentiment at least", "sentiment_max": "mean review sentiment at most",
    "spend_min": "total spent at least", "spend_max": "total spent at most", "orders_min": "orders at least", "orders_max": "orders at most",
    "category": "bought from this category", "country": "country", "first_order_after": "first order on or after",
    "last_order_before": "last order before", "last_order_after": "last order on or after",
}
# A date "after" includes its day and "before" excludes it, as the API's ?last_order_after= and
# ?last_order_before= do: together a half-open range, [after, before).
EXCLUSIVE_BOUNDS = ("last_order_before",)


FILTER_RANGES = (("churn_min", "churn_max"), ("sentiment_min", "sentiment_max"), ("spend_min", "spend_max"), ("orders_min", "orders_max"),
                 ("last_order_after", "last_order_before"))


def crossed_filter_ranges(filters: dict[str, Any]) -> dict[str, str]:
    """The upper bounds set below their lower bound: no customer can match such a segment, so it
    is a mistake to say, not a segment to save (the form and the API both refuse it)."""
    return {high: f"is {'not after' if high in EXCLUSIVE_BOUNDS else 'below'} “{SAVED_FILTERS[low]}” ({describe_filters({low: filters[low]})[0][1]}): no customer can match both"
            for low, high in FILTER_RANGES if filters.get(low) not in (None, "") and filters.get(high) not in (None, "")
            and (filters[high] <= filters[low] if high in EXCLUSIVE_BOUNDS else filters[high] < filters[low])}


MONEY_FILTERS = ("spend_min", "spend_max")
PERCENT_FILTERS = ("churn_min", "churn_max")  # stored as a fraction, read in percent as the pages show churn


def describe_filters(filters: dict[str, Any], currency: str = "") -> list[tuple[str, str]]:
    """A saved segment's (or a campaign's) filters as a merchant reads them: labels, not
    codes, and money in the shop's currency."""
    from campaigns.models import Action

    names = {"stages": dict(Stage.choices), "actions": dict(Action.choices), "value_tiers": dict(Prediction.Tier.choices)}
    described = []
    for key, value in filters.items():
        if isinstance(value, list):
            value = ", ".join(str(names.get(key, {}).get(v, v)) for v in value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, int | float) and key in PERCENT_FILTERS:
            value = f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"  # 50%, 12.5%
        elif isinstance(value, int | float):
            value = f"{value:,.2f}".rstrip("0").rstrip(".")  # 5,000, not 5000.0
            if key in MONEY_FILTERS and currency:
                value = f"{currency} {value}"
        described.append((SAVED_FILTERS.get(key, key), str(value)))
    return described


class SegmentInUse(Exception):
    """A saved segment that a campaign not yet launched targets."""


def do_delete_saved_segment(segment: Segment) -> None:
    """Delete a saved segment, unless a draft or scheduled campaign targets it: without its
    segment that campaign would target every customer. Launched campaigns froze their
    audience and keep their report."""
    with transaction.atomic():
        pending = list(pending_campaigns(segment).select_for_update().values_list("name", flat=True))
        if pending:
            names = ", ".join(f"“{name}”" for name in pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
            raise SegmentInUse(f"{names} {'targets' if len(pending) == 1 else 'target'} this segment and {'has' if len(pending) == 1 else 'have'} not launched yet: "
                               "change their segment or delete them first.")
        segment.delete()


class SegmentNameTaken(Exception):
    """Another saved segment of the shop has this name (in any case)."""

    def __init__(self) -> None:
        super().__init__("A saved segment with this name exists.")


def saved_name_taken(name: str, *, other_than: int | None = None) -> bool:
    """Whether another saved segment of the current shop has this name, in any case."""
    return Segment.objects.filter(kind=Segment.Kind.SAVED, name__iexact=name).exclude(pk=other_than).exists()


def do_create_saved_segment(tenant: Tenant, name: str, filters: dict[str, Any], *, created_by: Any = None) -> Segment:
    """A new saved segment, with its size now. The name check and the insert are one step per
    shop, so two requests with one name at once make one segment and one SegmentNameTaken."""
    with tenant_context(tenant):
        with transaction.atomic():
            lock_tenant(tenant)
            if saved_name_taken(name):
                raise SegmentNameTaken
            segment = Segment.objects.create(tenant=tenant, kind=Segment.Kind.SAVED, key=saved_segment_key(name), name=name, filters=filters,
                                             created_by=created_by if getattr(created_by, "pk", None) else None)
        segment.stats = member_stats(segment, latest_scoring_date(tenant))
        segment.size = segment.stats["size"]
        segment.save(update_fields=["size", "stats"])
    return segment


class SegmentNeedsAdmin(Exception):
    """A campaign that goes out with nobody pressing Launch targets the saved segment."""


def pending_campaigns(segment: Segment) -> QuerySet[Any]:
    """The campaigns not launched yet (nor cancelled) that target the segment: its change
    decides whom they go to, and they keep it from being deleted."""
    from campaigns.models import Campaign

    return Campaign.objects.filter(segment=segment, launched_at__isnull=True).exclude(state=Campaign.State.CANCELLED)


def refuse_edit_unless_admin(segment: Segment, *, by_admin: bool) -> None:
    """SegmentNeedsAdmin, unless ``by_admin``, when a campaign not launched yet that goes out
    unattended (a launch time or a webhook) targets the segment."""
    from campaigns.services import goes_out_unattended

    if by_admin:
        return
    unattended = [campaign.name for campaign in pending_campaigns(segment) if goes_out_unattended(campaign)]
    if unattended:
        raise SegmentNeedsAdmin(f"“{unattended[0]}” targets this segment and has a launch time or a webhook: only an admin or owner can change the segment, "
                                "since the change decides who is sent.")


def do_edit_saved_segment(segment: Segment, *, name: str | None = None, filters: dict[str, Any] | None = None, by_admin: bool,
                          user: Any = None, via: str = "web") -> Segment:
    """Change a saved segment's name or filters (None keeps the stored one). It is a live
    filter: its list, the drafts that target it and the next snapshots follow; a launched
    campaign keeps its frozen audience. Only an admin or owner changes one that a campaign
    with a launch time or a webhook targets, since the change decides who is sent
    (SegmentNeedsAdmin). Returns the segment as stored now."""
    tenant = segment.tenant
    with tenant_context(tenant), transaction.atomic():
        lock_tenant(tenant)  # the name check and the write are one step per shop, as at creation
        # Read again under the lock: an edit that waited must keep what the one before it changed.
        segment = Segment.objects.get(pk=segment.pk)
        refuse_edit_unless_admin(segment, by_admin=by_admin)
        name = segment.name if name is None else name
        filters = segment.filters if filters is None else filters
        if saved_name_taken(name, other_than=segment.pk):
            raise SegmentNameTaken
        if (name, filters) != (segment.name, segment.filters):
            from campaigns.services import audit_segment_changed

            before = (segment.name, segment.size)
            segment.name, segment.filters, segment.updated_at = name, filters, timezone.now()
            segment.stats = member_stats(segment, latest_scoring_date(segment.tenant))  # not the old filters' (a PATCH left them stale)
            segment.size = segment.stats["size"]
            segment.save(update_fields=["name", "filters", "size", "stats", "updated_at"])
            for campaign in pending_campaigns(segment):  # their audience is the segment's: their audit says it changed
                audit_segment_changed(campaign, segment, before, user=user, via=via)
    return segment


def saved_segment_key(name: str) -> str:
    """A free key for a new saved segment: its name's slug, numbered if taken."""
    from django.utils.text import slugify

    base = slugify(name)[:50] or "segment"
    key, number = base, 2
    while Segment.objects.filter(kind=Segment.Kind.SAVED, key=key).exists():
        key, number = f"{base}-{number}", number + 1
    return key


def segment_members(segment: Segment) -> QuerySet[CustomerInsight]:
    """The customers (their insight rows) in a segment; saved segments are live filters."""
    base = CustomerInsight.objects.select_related("customer")
    if segment.kind == Segment.Kind.LEARNED:
        return base.filter(learned_segment=segment)
    if segment.kind == Segment.Kind.RFM:
        return base.filter(rfm_segment=segment)
    return apply_filters(base, segment.filters)


def apply_filters(queryset: QuerySet[CustomerInsight], filters: dict[str, Any]) -> QuerySet[CustomerInsight]:
    from customers.models import Order

    f = filters or {}
    if f.get("stages"):
        queryset = queryset.filter(stage__in=f["stages"])
    if f.get("value_tiers"):
        queryset = queryset.filter(value_tier__in=f["value_tiers"])
    if f.get("actions"):
        queryset = queryset.filter(action__in=f["actions"])
    for key, lookup in (("churn_min", "churn_probability__gte"), ("churn_max", "churn_probability__lte"), ("sentiment_min", "sentiment__gte"),
                        ("sentiment_max", "sentiment__lte"), ("spend_min", "customer__total_spent__gte"), ("spend_max", "customer__total_spent__lte"),
                        ("orders_min", "customer__order_count__gte"), ("orders_max", "customer__order_count__lte")):
        if f.get(key) not in (None, ""):
            queryset = queryset.filter(**{lookup: f[key]})
    if f.get("country"):
        queryset = queryset.filter(parsing.country_matches("customer__country", f["country"]))
    if f.get("category"):
        # One uncorrelated subquery (the category's buyers), not an EXISTS per customer, which
        # SQLite ran as a scan of every order line for each customer.
        # A sale's category: a refunded or cancelled order was not a purchase (as the customer's page lists what they bought).
        queryset = queryset.filter(customer_id__in=Order.objects.filter(items__product__category__iexact=f["category"]).exclude(status__in=Order.NOT_REVENUE)
                                   .values("customer_id"))
    # Days are the shop's: from its midnight (``__date`` would take the zone of whoever asks: the
    # shop's on its pages, UTC in the API and the workers, so one segment had two memberships).
    for key, lookup in (("first_order_after", "customer__first_order_at__gte"), ("last_order_before", "customer__last_order_at__lt"),
                        ("last_order_after", "customer__last_order_at__gte")):
        if f.get(key):
            day = f[key] if isinstance(f[key], dt.date) else dt.date.fromisoformat(str(f[key]))
            queryset = queryset.filter(**{lookup: shop_midnight(day, require_tenant())})
    return queryset


def stage_counts(tenant: Tenant) -> pd.DataFrame:
    """Customers per stage per snapshot date (rows dates, columns stages in funnel order)."""
    from django.db.models import Count

    with tenant_context(tenant):
        rows = list(StageSnapshot.objects.values("as_of", "stage").annotate(n=Count("id")).order_by("as_of"))
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).pivot_table(index="as_of", columns="stage", values="n", fill_value=0)
    return frame.reindex(columns=[s.value for s in lifecycle.FUNNEL], fill_value=0)


def scored_dates(tenant: Tenant, dates: list[dt.date]) -> list[bool]:
    """For each snapshot date, whether it has a scoring: only there can the models' purchase
    probability make a customer At risk (month ends before the first scoring follow the order
    rhythm alone, and a backfill never scores the past with a model trained later)."""
    with tenant_context(tenant):
        scored = set(Prediction.objects.filter(as_of__in=dates).values_list("as_of", flat=True).distinct())
    return [d in scored for d in dates]


def stages_chart_note(tenant: Tenant, dates: list[dt.date], scored: list[bool]) -> str:
    """What the "Stages over time" chart must say when some of its dates have a scoring and
    others do not: At risk can rise at a scored date because a rule applies there that the
    other dates cannot apply. Empty when every date, or none, has a scoring."""
    if all(scored) or not any(scored):
        return ""
    with_scoring = [d for d, has in zip(dates, scored, strict=True) if has]
    named = ", ".join(d.isoformat() for d in with_scoring[-3:]) + (f" and {len(with_scoring) - 3} earlier" if len(with_scoring) > 3 else "")
    threshold = lifecycle.with_overrides(lifecycle.Thresholds(), tenant.settings.get("lifecycle", {})).at_risk_probability
    return (f"Scored: {named} (marked with a dot). On a scored date a customer whose purchase probability is below {threshold:.0%} is At risk too, "
            f"and an overdue one the models still give {lifecycle.STILL_LIKELY:.0%} or more keeps their stage; the other dates have no scoring, "
            "so their stages follow the order rhythm alone, and At risk can jump at a scored date.")


def transitions(tenant: Tenant, start: dt.date, end: dt.date) -> pd.DataFrame:
    with tenant_context(tenant):
        before = dict(StageSnapshot.objects.filter(as_of=start).values_list("customer_id", "stage"))
        after = dict(StageSnapshot.objects.filter(as_of=end).values_list("customer_id", "stage"))
    return lifecycle.transition_matrix(pd.Series(before, dtype=object), pd.Series(after, dtype=object))


def snapshot_dates(tenant: Tenant) -> list[dt.date]:
    with tenant_context(tenant):
        return sorted(set(StageSnapshot.objects.values_list("as_of", flat=True).distinct()))



def review_alerts(as_of: dt.date) -> QuerySet[Any]:
    """Negative reviews (the playbook's one definition, up to the scoring date) from high-
    and medium-value customers, the most valuable customers first. The current tenant's."""
    from customers.models import Review

    valuable = CustomerInsight.objects.filter(value_tier__in=["high", "medium"]).values("customer_id")
    return (Review.objects.filter(playbook.negative_review_filter(as_of, require_tenant()), customer_id__in=valuable)
            .order_by("-customer__insight__predicted_value", "-created_at"))


def dashboard_overview(tenant: Tenant) -> dict[str, Any]:
    """What the dashboard leads with: the stage funnel and its trend, revenue at risk,
    learned segment sizes, review sentiment by month and negative reviews from valuable
    customers."""
    from django.db.models import Count, Sum
    from django.db.models.functions import TruncMonth

    from campaigns.models import Action
    from customers.models import Order, Review

    counts = stage_counts(tenant)
    labels = dict(lifecycle.Stage.choices)
    with tenant_context(tenant):
        totals = CustomerInsight.objects.aggregate(at_risk=Sum("priority"), n=Count("id"), as_of=Max("as_of"),
                                                   actionable=Sum("priority", filter=~Q(action=Action.NO_ACTION)))
        learned = list(Segment.objects.filter(kind=Segment.Kind.LEARNED, is_current=True).order_by("-size").values("pk", "name", "size"))
        by_stage = {row["stage"]: row for row in CustomerInsight.objects.values("stage").annotate(n=Count("id"), at_risk=Sum("priority")).order_by()}
        sentiment = list(
            Review.objects.exclude(sentiment="").annotate(month=TruncMonth("created_at")).values("month")
            .annotate(n=Count("id"), negative=Count("id", filter=Q(sentiment="negative")), positive=Count("id", filter=Q(sentiment="positive")))
            .order_by("month")
        )
        alerts = []
        if totals["as_of"] is not None:
            alerts = list(review_alerts(totals["as_of"]).select_related("customer", "customer__insight", "product")[:8])
    latest = counts.iloc[-1].to_dict() if len(counts) else {}
    scored = scored_dates(tenant, list(counts.index))

    def at_risk_of(stage: lifecycle.Stage) -> float:
        return by_stage.get(stage.value, {}).get("at_risk") or 0.0

    recent_revenue = None
    horizon = scoring_horizon(tenant, totals["as_of"])
    if totals["as_of"] is not None:  # what the shop took in the horizon up to the date: the scale to read the value at risk on
        end = shop_midnight(totals["as_of"] + dt.timedelta(days=1), tenant)
        with tenant_context(tenant):
            recent_revenue = Order.objects.exclude(status__in=Order.NOT_REVENUE).filter(
                ordered_at__gte=end - dt.timedelta(days=horizon), ordered_at__lt=end).aggregate(total=Sum("amount"))["total"] or 0
    return {
        "horizon_days": horizon,
        "has_insights": bool(totals["n"]),
        "stages_note": stages_chart_note(tenant, list(counts.index), scored),
        "as_of": totals["as_of"],
        "value_at_risk": totals["at_risk"] or 0.0,
        "recent_revenue": recent_revenue,
        # The part of it with an action to take: what the priorities page lists.
        "actionable_value_at_risk": totals["actionable"] or 0.0,
        # The stages without a card of their own (active, reactivated, prospects): so the cards
        # add up to the headline (a merchant summed them and found USD 16,798 missing).
        "uncarded_value_at_risk": sum(at_risk_of(s) for s in lifecycle.Stage if s not in (
            lifecycle.Stage.AT_RISK, lifecycle.Stage.LAPSED, lifecycle.Stage.NEW, lifecycle.Stage.LOYAL)),
        "alerts": alerts,
        # What a merchant acts on first: who is slipping away and how much they are worth.
        "watch": [{"stage": s.value, "label": s.label, "count": by_stage.get(s.value, {}).get("n", 0), "value_at_risk": at_risk_of(s)}
                  for s in (lifecycle.Stage.AT_RISK, lifecycle.Stage.LAPSED)],
        "chart": {
            "funnel": [{"stage": s.value, "label": s.label, "count": int(latest.get(s.value, 0)), "value_at_risk": at_risk_of(s)} for s in lifecycle.FUNNEL],
            "dates": [d.isoformat() for d in counts.index] if len(counts) else [],
            "scored": scored,
            "series": [{"label": labels[s], "counts": [int(v) for v in counts[s]]} for s in counts.columns] if len(counts) else [],
            "segments": [{"name": s["name"], "size": s["size"]} for s in learned],
            "sentiment": [
                {"month": row["month"].strftime("%Y-%m"), "negative": row["negative"] / row["n"], "positive": row["positive"] / row["n"], "n": row["n"],
                 "partial": month_in_progress(row["month"])}
                for row in sentiment if isinstance(row["month"], dt.datetime | dt.date) and row["n"]
            ][-24:],
        },
    }
