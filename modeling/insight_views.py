"""Merchant pages for lifecycle stages, segments and today's priorities."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Avg, Count, Exists, F, OuterRef, Sum
from django.db.models.functions import Mod
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from campaigns.models import Action, CampaignMember
from campaigns.services import consent_answer, has_declined, held_by_running
from clmsite.datacache import cached
from clmsite.forms import PercentField
from clmsite.models import Role
from clmsite.tenancy import shop_today
from clmsite.views import not_counted_note, stale_preview, tenant_required
from customers.services.queries import month_in_progress
from modeling import insights, lifecycle
from modeling.exports import csv_download
from modeling.models import CustomerInsight, Segment, SegmentSnapshot, Stage, StageSnapshot
from modeling.segments import NO_ORDER

STAGE_COLOURS = {
    "prospect": "#b8c0cc", "new": "#6cc4ff", "active": "#3aa55d", "loyal": "#7b5cff",
    "reactivated": "#f0c43a", "at_risk": "#f08c3a", "lapsed": "#d9534f",
}


def _stage_labels() -> dict[str, str]:
    return {s.value: s.label for s in lifecycle.FUNNEL}


class ThresholdsForm(forms.Form):
    usual_gap_days = forms.IntegerField(min_value=1, max_value=3650, required=False, help_text="the shop's usual days between orders")
    repurchase_window_days = forms.IntegerField(min_value=1, max_value=3650, required=False, help_text="a first order this recent makes a customer New")
    lapse_days = forms.IntegerField(min_value=1, max_value=3650, required=False, help_text="days without an order after which a customer is Lapsed (a repeat buyer: also more than twice their own usual gap)")
    overdue_factor = forms.FloatField(min_value=1.0, max_value=10.0, required=False, help_text="At risk when silent this many times their own usual gap")
    at_risk_probability = PercentField(required=False, label="At risk probability (%)", help_text="At risk when the chance to buy again is below this")
    UNITS = {"usual_gap_days": " days", "repurchase_window_days": " days", "lapse_days": " days", "overdue_factor": "×", "at_risk_probability": "%"}

    @classmethod
    def number(cls, name: str, value: float) -> str:
        """A threshold's number as its field takes it: 30 for a PercentField's 0.3, 45, 2.5."""
        return f"{value * 100 if isinstance(cls.base_fields[name], PercentField) else value:g}"

    @classmethod
    def shown(cls, name: str, value: float) -> str:
        """A threshold with its unit: 30%, 45 days, 2.5×."""
        return cls.number(name, value) + cls.UNITS[name]

    def __init__(self, *args: Any, derived: lifecycle.Thresholds | None = None, in_effect: lifecycle.Thresholds | None = None, **kwargs: Any) -> None:
        """``derived``: what the shop's own order gaps give; shown as each field's placeholder
        and next to it, so an empty field says what it stands for."""
        super().__init__(*args, **kwargs)
        self.derived = derived
        if derived is None:
            return
        for name, field in self.fields.items():
            if name not in lifecycle.DERIVED:
                source = "default"
            elif derived.derived_from_gaps:
                source = f"derived from your data ({derived.derived_from_gaps:,} gaps between days with an order)"
            else:
                source = "default (too few repeat orders to derive)"
            value = getattr(derived, name)
            field.widget.attrs["placeholder"] = self.number(name, value)
            field.help_text = f"{field.help_text}; {source}: {self.shown(name, value)}"
            if in_effect is not None and getattr(in_effect, name) != value:
                field.help_text += f"; in effect: {self.shown(name, getattr(in_effect, name))} (your setting)"

    def clean(self) -> dict[str, Any]:
        """Thresholds that contradict each other are refused: a customer must not lapse
        before their next order is even due (an empty field stands for its derived value)."""
        data = super().clean()

        def value(name: str) -> Any:
            given = data.get(name)
            return given if given is not None else (getattr(self.derived, name) if self.derived is not None else None)

        lapse, gap, window = value("lapse_days"), value("usual_gap_days"), value("repurchase_window_days")
        if lapse is not None and gap is not None and lapse <= gap:
            self.add_error("lapse_days", f"Must be longer than the usual gap between orders ({gap:g} days): customers would lapse before their next order is due.")
        if lapse is not None and window is not None and lapse <= window:
            self.add_error("lapse_days", f"Must be longer than the window that makes a customer New ({window:g} days).")
        return data


@tenant_required()
def lifecycle_page(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    counts = cached(tenant.pk, "stage-counts", lambda: insights.stage_counts(tenant))  # a group-by over every month-end snapshot
    dates = list(counts.index) if len(counts) else []
    labels = _stage_labels()
    as_of = insights.latest_scoring_date(tenant)
    day = as_of or shop_today(tenant)
    # Reads every order of the shop: cached until the shop's data changes (clmsite.datacache).
    derived = cached(tenant.pk, f"derived-thresholds:{day}", lambda: insights.derived_thresholds(tenant, day))
    overrides = tenant.settings.get("lifecycle", {})
    in_effect = lifecycle.with_overrides(derived, overrides)
    if request.method == "POST":
        if not request.membership.can(Role.ADMIN):  # type: ignore[attr-defined]
            raise Http404("Not found")
        form = ThresholdsForm(request.POST, derived=derived, in_effect=in_effect)
        if form.is_valid():
            job = insights.do_set_lifecycle_thresholds(tenant, form.cleaned_data, acting_user=request.user)
            if job is None:
                messages.success(request, "Thresholds saved. Stages are computed with the first scoring.")
            else:
                messages.success(request, f"Thresholds saved. Stages, segments and next actions are being recomputed as of {as_of}, and the month-end "
                                          f"stage history before it with the same thresholds, so that the stages over time compare like with like (job {job.pk}, below).")
            return redirect(reverse("lifecycle") + "#thresholds")  # where the job's progress shows
    else:
        form = ThresholdsForm(initial=overrides, derived=derived, in_effect=in_effect)
    end = _date(request.GET.get("end")) or (dates[-1] if dates else None)
    # By default the last quarter's moves: from the first snapshot everyone would come from
    # "not yet a customer", which says nothing about this season.
    quarter_before = max((d for d in dates if end and d <= end - dt.timedelta(days=90)), default=dates[0] if dates else None)
    start = _date(request.GET.get("start")) or quarter_before
    if start and end and start > end:
        start, end = end, start
        messages.info(request, f"Showing the moves from {start} to {end}: the earlier date comes first.")
    if dates and start and end and (end > dates[-1] or start < dates[0]):  # no stages there to move from or to
        start, end = max(start, dates[0]), min(end, dates[-1])
        messages.info(request, f"Stages are known from {dates[0]} to {dates[-1]}: showing the moves from {start} to {end}.")
    matrix = insights.transitions(tenant, start, end) if start and end else None
    latest = counts.iloc[-1].to_dict() if len(counts) else {}
    scored = insights.scored_dates(tenant, dates)
    chart = {
        "dates": [d.isoformat() for d in dates],
        "scored": scored,
        "series": [{"stage": s, "label": labels[s], "colour": STAGE_COLOURS[s], "counts": [int(v) for v in counts[s]]} for s in counts.columns] if len(counts) else [],
        "funnel": [{"stage": s.value, "label": s.label, "count": int(latest.get(s.value, 0)), "colour": STAGE_COLOURS[s.value]} for s in lifecycle.FUNNEL],
    }
    rows = []
    if matrix is not None:
        for source, values in matrix.iterrows():
            rows.append({"from": source, "label": labels.get(source, "Not yet a customer"), "cells": [{"to": target, "count": int(values[target])} for target in matrix.columns]})
    return render(request, "insights/lifecycle.html", {
        "chart_data": chart, "dates": dates, "start": start, "end": end, "rows": rows, "latest": dates[-1] if dates else None,
        "stages_note": insights.stages_chart_note(tenant, dates, scored),
        "columns": [(c, labels[c]) for c in matrix.columns] if matrix is not None else [], "form": form,
        "can_edit": request.membership.can(Role.ADMIN), "has_data": bool(dates), "as_of": as_of,  # type: ignore[attr-defined]
        "jobs": insights.latest_insights_refresh(),
        "in_effect": [(field.label or name.replace("_", " ").capitalize(), ThresholdsForm.shown(name, getattr(in_effect, name)), field.help_text)
                      for name, field in form.fields.items()],
    })


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@tenant_required()
def stage_moves(request: HttpRequest) -> HttpResponse:
    """The customers behind one cell of the transition matrix."""
    start, end = _date(request.GET.get("start")), _date(request.GET.get("end"))
    source, target = request.GET.get("from", ""), request.GET.get("to", "")
    if not start or not end or start >= end or target not in _stage_labels() or (source != "none" and source not in _stage_labels()):
        raise Http404("Not found")  # a move goes forward in time: the matrix links only those
    after = StageSnapshot.objects.filter(as_of=end, stage=target)
    # Each row's own snapshot at the start, looked up by its (customer, as_of) key: a plan that
    # never compares every pair of the two stages, whatever the statistics say.
    before = StageSnapshot.objects.filter(as_of=start, customer_id=OuterRef("customer_id"))
    after = after.filter(~Exists(before)) if source == "none" else after.filter(Exists(before.filter(stage=source)))
    page = Paginator(after.select_related("customer").order_by("customer__external_id"), 50).get_page(request.GET.get("page"))
    labels = _stage_labels()
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "insights/moves.html", {
        "page": page, "start": start, "end": end, "source": labels.get(source, "Not yet a customer"), "target": labels[target], "query_prefix": query.urlencode() + "&",
    })


# --- Segments ---------------------------------------------------------------------------


class SavedSegmentForm(forms.Form):
    name = forms.CharField(max_length=100)
    stages = forms.MultipleChoiceField(choices=Stage.choices, required=False, widget=forms.CheckboxSelectMultiple)
    value_tiers = forms.MultipleChoiceField(choices=[("high", "High"), ("medium", "Medium"), ("low", "Low")], required=False, widget=forms.CheckboxSelectMultiple)
    churn_min = PercentField(required=False, label="Churn risk at least (%)", help_text="from 0 to 100")
    churn_max = PercentField(required=False, label="Churn risk at most (%)", help_text="from 0 to 100")
    sentiment_max = forms.FloatField(min_value=-1, max_value=1, required=False, label="Mean review sentiment at most", help_text="from -1 (negative) to 1 (positive)")
    spend_min = forms.DecimalField(min_value=0, max_digits=14, decimal_places=2, required=False, label="Total spent at least")
    orders_min = forms.IntegerField(min_value=0, required=False, label="Orders at least")
    orders_max = forms.IntegerField(min_value=0, required=False, label="Orders at most")
    category = forms.CharField(max_length=128, required=False, label="Bought from category")
    country = forms.CharField(max_length=64, required=False)
    # A date picker, and ISO dates only: "01/11/2026" would be read as January by one merchant and November by another.
    last_order_after = forms.DateField(required=False, label="Last order on or after", input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))
    last_order_before = forms.DateField(required=False, label="Last order before", input_formats=["%Y-%m-%d"], widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, currency: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if currency:
            self.fields["spend_min"].label = f"Total spent at least ({currency})"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for field, message in insights.crossed_filter_ranges(cleaned).items():
            self.add_error(field, message)
        return cleaned

    def filters(self) -> dict[str, Any]:
        data = {k: v for k, v in self.cleaned_data.items() if k != "name" and v not in (None, "", [])}
        return {k: (v.isoformat() if isinstance(v, dt.date) else float(v) if hasattr(v, "as_tuple") else v) for k, v in data.items()}


@tenant_required()
def segment_list(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    form = SavedSegmentForm(request.POST or None, currency=request.tenant.currency)  # type: ignore[attr-defined]
    if request.method == "POST":
        if not request.membership.can(Role.ANALYST):  # type: ignore[attr-defined]
            raise Http404("Not found")
        if form.is_valid():
            name = form.cleaned_data["name"].strip()
            try:
                segment = insights.do_create_saved_segment(tenant, name, form.filters(), created_by=request.user)
            except insights.SegmentNameTaken as exc:
                form.add_error("name", str(exc))
            else:
                messages.success(request, f"Saved segment “{name}”: {segment.size:,} customer{'s' if segment.size != 1 else ''} now.")
                return redirect("segment_detail", segment_id=segment.pk)
    learned = list(Segment.objects.filter(kind=Segment.Kind.LEARNED, is_current=True).order_by("-size"))
    rfm = list(Segment.objects.filter(kind=Segment.Kind.RFM).order_by("-size"))
    # RFM scores rank customers against each other: where most customers have lapsed, a
    # "Loyal" score can go to lapsed customers. Each group shows the stage most of it is in.
    mix: dict[int, list[tuple[int, str]]] = {}
    for row in CustomerInsight.objects.exclude(rfm_segment=None).values("rfm_segment", "stage").annotate(n=Count("id")).order_by():
        mix.setdefault(row["rfm_segment"], []).append((row["n"], row["stage"]))
    stage_names = dict(Stage.choices)
    for segment in rfm:
        counts = sorted(mix.get(segment.pk, []), reverse=True)
        total = sum(n for n, _ in counts)
        segment.mostly = f"{counts[0][0] / total:.0%} {stage_names.get(counts[0][1], counts[0][1])}" if total else ""
    saved = list(Segment.objects.filter(kind=Segment.Kind.SAVED).order_by("name"))
    for segment in saved:
        segment.live_size = insights.segment_members(segment).count()
    palette = ["#6c8cff", "#f08c3a", "#3aa55d", "#d9534f", "#7b5cff", "#f0c43a", "#2bb3a8", "#b55cb0", "#8a8f98", "#4d4d4d"]
    # An even sample (customers whose id is a multiple of a step), so that every segment shows in
    # proportion to its size, drawn by the database: a shop of a million is not read whole.
    placed = CustomerInsight.objects.exclude(map_x=None)
    total = placed.count()
    step = max(1, math.ceil(total / MAP_POINTS))
    sample = placed.annotate(bucket=Mod(F("customer_id"), step)).filter(bucket=0) if step > 1 else placed
    points = list(sample.values_list("map_x", "map_y", "learned_segment_id"))
    colour = {s.pk: palette[i % len(palette)] for i, s in enumerate(learned)}
    scatter = [{"label": s.name, "colour": colour[s.pk], "points": [{"x": round(x, 3), "y": round(y, 3)} for x, y, sid in points if sid == s.pk]} for s in learned]
    sizes = {"labels": [s.name for s in learned], "sizes": [s.size for s in learned], "colours": [colour[s.pk] for s in learned]}
    return render(request, "insights/segments.html", {
        "learned": learned, "min_buyers": insights.MIN_CLUSTERED_BUYERS, "rfm": rfm, "saved": saved, "form": form, "can_save": request.membership.can(Role.ANALYST),  # type: ignore[attr-defined]
        "map_data": scatter, "sizes_data": sizes, "map_drawn": len(points), "map_placed": total,
    })


MAP_POINTS = 2000  # the segment map draws at most about this many customers


@tenant_required()
def segment_detail(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id)
    members = insights.segment_members(segment)
    summary = members.aggregate(n=Count("id"), value=Avg("predicted_value"), churn=Avg("churn_probability"), at_risk=Sum("priority"))
    stage_mix = {row["stage"]: row["n"] for row in members.values("stage").annotate(n=Count("id"))}
    labels = _stage_labels()
    trend = list(SegmentSnapshot.objects.filter(segment=segment).values("as_of", "size", "mean_value", "churn"))
    # No order yet (the learned prospects, the RFM group of sign-ups): no churn, no value at risk
    prospects = (segment.kind, segment.key) in ((Segment.Kind.LEARNED, insights.PROSPECTS_KEY), (Segment.Kind.RFM, NO_ORDER[0]))
    chart = {
        "prospects": prospects,
        "trend": [{"as_of": t["as_of"].isoformat(), "size": t["size"], "mean_value": t["mean_value"], "churn": t["churn"]} for t in trend],
        "stages": [{"label": labels[s], "count": stage_mix.get(s, 0), "colour": STAGE_COLOURS[s]} for s in labels],
    }
    # Prospects have no value at risk (all 0): the likeliest first buyers first instead
    order = ("churn_probability", "customer_id") if prospects else ("-priority", "customer_id")
    if request.GET.get("format") == "csv":  # every member, for an email tool: the priorities file's columns
        return csv_download(request.tenant, f"segment-{segment.pk}-{slugify(segment.name)[:60]}.csv", PRIORITY_COLUMNS,  # type: ignore[attr-defined]
                            members.select_related("customer").order_by(*order), _priority_row)
    page = Paginator(members.order_by(*order), 50).get_page(request.GET.get("page"))
    return render(request, "insights/segment_detail.html", {
        "segment": segment, "summary": summary, "page": page, "chart_data": chart,
        "prospects": prospects,
        "can_delete": segment.kind == Segment.Kind.SAVED and request.membership.can(Role.ANALYST),  # type: ignore[attr-defined]
        "filters": insights.describe_filters(segment.filters, request.tenant.currency),  # type: ignore[attr-defined]
    })


@tenant_required()
def segment_preview(request: HttpRequest) -> JsonResponse:
    """Live size and value at risk of a saved segment's filters, for its form."""
    stale = stale_preview(request)
    if stale is not None:
        return stale
    form = SavedSegmentForm(request.GET, currency=request.tenant.currency)  # type: ignore[attr-defined]
    form.is_valid()  # the name does not matter here; a refused filter is left out and named
    filters = form.filters()  # the fields the form refused are not in it
    totals = insights.apply_filters(CustomerInsight.objects.all(), filters).aggregate(n=Count("id"), at_risk=Sum("priority"))
    refused = not_counted_note(form, [name for name in form.fields if name != "name"])
    return JsonResponse({"size": totals["n"], "value_at_risk": round(float(totals["at_risk"] or 0.0), 2), "note": refused, "partial": bool(refused)})


@tenant_required(Role.ANALYST)
def edit_segment(request: HttpRequest, segment_id: int) -> HttpResponse:
    """Change a saved segment's name or filters. It is a live filter: its list, the drafts
    that target it and the next snapshots follow; a launched campaign keeps its frozen audience."""
    segment = get_object_or_404(Segment, pk=segment_id, kind=Segment.Kind.SAVED)
    by_admin = request.membership.can(Role.ADMIN)  # type: ignore[attr-defined]
    # Stored amounts are floats (JSON): 1000.0 shows as typed, 1000.
    shown = {k: ((int(v) if v.is_integer() else f"{v:.2f}") if isinstance(v, float) and k in ("spend_min", "spend_max") else v) for k, v in segment.filters.items()}
    form = SavedSegmentForm(request.POST or None, initial={"name": segment.name, **shown}, currency=request.tenant.currency)  # type: ignore[attr-defined]
    try:
        insights.refuse_edit_unless_admin(segment, by_admin=by_admin)  # said before the merchant fills the form in
        if request.method == "POST" and form.is_valid():
            segment = insights.do_edit_saved_segment(segment, name=form.cleaned_data["name"].strip(), filters=form.filters(), by_admin=by_admin, user=request.user)
            messages.success(request, f"Saved segment “{segment.name}” changed: {segment.size:,} customer{'s' if segment.size != 1 else ''} now.")
            return redirect("segment_detail", segment_id=segment.pk)
    except insights.SegmentNeedsAdmin as exc:
        messages.error(request, str(exc))
        return redirect("segment_detail", segment_id=segment.pk)
    except insights.SegmentNameTaken as exc:
        form.add_error("name", str(exc))
    return render(request, "insights/segment_edit.html", {"segment": segment, "form": form, "pending": insights.pending_campaigns(segment).order_by("scheduled_for", "name")})


@require_POST
@tenant_required(Role.ANALYST)
def delete_segment(request: HttpRequest, segment_id: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=segment_id, kind=Segment.Kind.SAVED)
    try:
        insights.do_delete_saved_segment(segment)
    except insights.SegmentInUse as exc:
        messages.error(request, str(exc))
        return redirect("segment_detail", segment_id=segment.pk)
    messages.success(request, f"Deleted the saved segment “{segment.name}”.")
    return redirect("segments")


# --- Today's priorities -----------------------------------------------------------------

# Codes, each followed by its name, as in the campaign's treatment CSV.
PRIORITY_COLUMNS = ["customer_id", "name", "email", "stage", "stage_label", "stage_reason", "value_tier", "churn_probability", "predicted_value", "value_at_risk",
                    "action", "action_label", "channel", "channel_label", "marketing_consent", "offer", "detail", "reason"]


PRIORITIES_PER_PAGE = 50


def _priority_row(i: CustomerInsight) -> list[object]:
    return [i.customer.external_id, i.customer.name, i.customer.email, i.stage, i.get_stage_display(), i.stage_reason, i.value_tier,
            "" if i.churn_probability is None else f"{i.churn_probability:.4f}", "" if i.predicted_value is None else i.predicted_value, f"{i.priority:.2f}",
            i.action, i.action_label, i.action_channel, i.channel_label if i.action_channel else "", consent_answer(i.customer, i.action_channel),
            "" if i.action_offer is None else i.action_offer,
            i.action_detail, i.action_reason]


@tenant_required()
def priorities(request: HttpRequest) -> HttpResponse:
    """The customers to act on first: highest value at risk, with an action other than none.
    The page is paginated; the CSV streams every row, however many."""
    action = request.GET.get("action", "")
    rows = CustomerInsight.objects.select_related("customer").exclude(action=Action.NO_ACTION).order_by("-priority", "customer_id")
    unknown_action = action if action and (action not in Action.values or action == Action.NO_ACTION) else ""  # no action is listed nowhere: it is the budget saved
    if action and not unknown_action:
        rows = rows.filter(action=action)
    else:
        action = ""
    # A running campaign's control group is not to be contacted until its window ends: an export
    # of them to an email tool would spoil the measurement.
    held = held_by_running().values("customer_id")
    held_out = rows.filter(customer_id__in=held).count()
    rows = rows.exclude(customer_id__in=held)
    if request.GET.get("format") == "csv":
        return csv_download(request.tenant, "priorities.csv", PRIORITY_COLUMNS, rows, _priority_row)  # type: ignore[attr-defined]
    # The chart counts what the list holds: the control groups left out of both.
    totals = CustomerInsight.objects.exclude(customer_id__in=held).values("action").annotate(n=Count("id"), at_risk=Sum("priority")).order_by("-at_risk")
    names = dict(Action.choices)
    page = Paginator(rows, PRIORITIES_PER_PAGE).get_page(request.GET.get("page"))
    reached = dict(held_by_running(control_only=False).filter(group=CampaignMember.Group.TREATMENT, customer_id__in=[row.customer_id for row in page.object_list])
                   .values_list("customer_id", "campaign__name"))
    for row in page.object_list:  # a customer who declined the action's channel: said beside it, as no campaign by it reaches them
        row.declined_channel = has_declined(row.customer, row.action_channel)
        row.in_campaign = reached.get(row.customer_id, "")  # contacted by a running campaign already: said, not to contact them twice
    return render(request, "insights/priorities.html", {
        "page": page, "rows": page.object_list, "action": action, "unknown_action": unknown_action, "held_out": held_out, "actions": [c for c in Action.choices if c[0] != Action.NO_ACTION], "query_prefix": f"action={action}&" if action else "",
        "totals": [{"action": t["action"], "label": names.get(t["action"], t["action"]), "n": t["n"], "at_risk": t["at_risk"] or 0} for t in totals],
        "as_of": insights.latest_scoring_date(request.tenant),  # type: ignore[attr-defined]
    })


# --- Review insight ---------------------------------------------------------------------------


@tenant_required()
def reviews_page(request: HttpRequest) -> HttpResponse:
    """Sentiment over time, what the complaints are about, and the reviews to read first."""
    from customers.models import Review
    from modeling import review_insight

    tenant = request.tenant  # type: ignore[attr-defined]
    aspects = review_insight.aspect_summary(tenant)
    monthly = review_insight.sentiment_by_month(tenant)
    overview = cached(tenant.pk, "dashboard-overview", lambda: insights.dashboard_overview(tenant))  # the dashboard's, its alert list included
    aspect = request.GET.get("aspect", "")
    sentiment = request.GET.get("sentiment", "")
    reviews = Review.objects.select_related("customer", "product").order_by("-created_at")
    if aspect in {*review_insight.ASPECTS, review_insight.OTHER}:
        reviews = reviews.filter(aspect=aspect)
    if sentiment in ("positive", "neutral", "negative"):
        reviews = reviews.filter(sentiment=sentiment)
    query = request.GET.copy()
    query.pop("page", None)
    chart = {
        "aspects": aspects,
        "monthly": [{"month": row["month"].strftime("%Y-%m"), "score": row["score"], "negative": row["negative"] / row["n"] if row["n"] else 0, "n": row["n"],
                     "partial": month_in_progress(row["month"])}
                    for row in monthly.to_dict("records") if hasattr(row.get("month"), "strftime")][-36:],
    }
    labels = review_insight.aspect_labels()
    page = Paginator(reviews, 25).get_page(request.GET.get("page"))
    for review in page:
        review.aspect_label = labels.get(review.aspect, "")
    return render(request, "insights/reviews.html", {
        "chart_data": chart, "aspects": aspects, "alerts": overview["alerts"], "aspect": aspect, "sentiment": sentiment,
        "reviews_total": Review.objects.exists(),
        "aspect_choices": list(labels.items()), "aspect_labels": labels,
        "page": page, "query_prefix": query.urlencode() + "&" if query else "",
    })
