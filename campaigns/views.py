"""The playbook pages: the ordered rules behind every recommended next action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from campaigns import services
from campaigns.models import Action, Campaign, CampaignMember, PlaybookRule
from campaigns.playbook import ensure_default_playbook
from clmsite.forms import PercentField
from clmsite.models import Role
from clmsite.services import record_access
from clmsite.views import not_counted_note, stale_preview, tenant_required
from modeling.exports import EXCEL_BOM
from modeling.insights import describe_filters, latest_insights_refresh, latest_scoring_date, queue_insights_refresh, scoring_horizon
from modeling.models import CustomerInsight, Segment, Stage

TIERS = [("high", "High"), ("medium", "Medium"), ("low", "Low")]


MAX_DAYS_SINCE = 36_500


class RuleForm(forms.ModelForm):
    stages = forms.MultipleChoiceField(choices=Stage.choices, required=False, widget=forms.CheckboxSelectMultiple, help_text="any of; none = every stage")
    tiers = forms.MultipleChoiceField(choices=TIERS, required=False, widget=forms.CheckboxSelectMultiple, help_text="any of; none = every tier")
    # Shares are typed in percent, as the playbook page shows them ("churn risk ≥ 50%").
    churn_min = PercentField(required=False, label="Churn risk at least (%)", help_text="from 0 to 100")
    churn_max = PercentField(required=False, label="Churn risk at most (%)", help_text="from 0 to 100")
    spent_top_share = PercentField(required=False, label="Lifetime spend in the top share of buyers (%)", help_text="from 0 to 100 (10 = the top 10% by lifetime spend)")
    offer_pct = PercentField(required=False, label="Offer, as a share of what the customer would spend (%)", help_text="from 0 to 100; empty: the cap below for everyone")
    orders_min = forms.IntegerField(min_value=1, required=False, label="Orders in all, at least")

    class Meta:
        model = PlaybookRule
        fields = [
            "position", "name", "enabled", "stages", "tiers", "churn_min", "churn_max", "sentiment_max", "value_at_risk_min",
            "days_since_min", "days_since_max", "spent_top_share", "orders_min", "action", "channel", "offer_pct", "offer_cap",
        ]
        # Each help text adds what the label does not say: the scale, the unit, the window.
        help_texts = {"days_since_min": "days", "days_since_max": "days",
                      "value_at_risk_min": "in the shop's currency: the chance of an order lost against the customer's usual pace × what they would spend if they ordered",
                      "offer_cap": "empty: no offer"}
        labels = {"position": "Order (lower is checked first)", "sentiment_max": "Review tone at most", "value_at_risk_min": "Value at risk at least", "days_since_min": "Days since the last order, at least",
                  "days_since_max": "Days since the last order, at most",
                  "offer_cap": "Offer at most (in the shop's currency)", "orders_min": "Orders in all, at least"}

    CONDITIONS = ("stages", "tiers", "churn_min", "churn_max", "sentiment_max", "value_at_risk_min", "days_since_min", "days_since_max", "spent_top_share", "orders_min")

    def clean_name(self) -> str:
        """Names are unique per shop: each customer's next action names the rule it came from."""
        name = self.cleaned_data["name"].strip()
        if PlaybookRule.objects.filter(name__iexact=name).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("Another rule has this name; give each rule its own.")
        return name

    def clean(self) -> dict:
        data = super().clean()
        for key in ("offer_cap", "value_at_risk_min"):
            if data.get(key) is not None and data[key] < 0:
                self.add_error(key, "Must not be negative.")
        if data.get("offer_pct") == 0:
            self.add_error("offer_pct", "0% makes no offer: leave it empty for the cap below for everyone, or leave the cap empty for no offer.")
        for key in ("days_since_min", "days_since_max"):  # a century: a typo's 99999999999 days read as a rule
            if data.get(key) is not None and data[key] > MAX_DAYS_SINCE:
                self.add_error(key, f"At most {MAX_DAYS_SINCE:,} days (a century).")
        for low, high in (("churn_min", "churn_max"), ("days_since_min", "days_since_max")):
            if data.get(low) is not None and data.get(high) is not None and data[low] > data[high]:
                self.add_error(high, "Must be at least the minimum.")
        position = data.get("position")
        if position is not None and data.get("enabled"):
            earlier = PlaybookRule.objects.filter(enabled=True, position__lt=position).exclude(pk=self.instance.pk)
            catch_all = next((rule for rule in earlier.order_by("position") if rule.matches_everyone()), None)
            if catch_all is not None:
                self.add_error("position", f"“{catch_all.name}” (order {catch_all.position}) matches every customer first, so this rule would never apply; give it a lower number.")
            # The other way round: a rule without conditions hides every enabled rule after it.
            # (A condition that failed its own check is not missing: it is skipped here.)
            conditions = {name: data.get(name) for name in self.CONDITIONS}
            checked_after = Q(position__gt=position) | Q(position=position, pk__gt=self.instance.pk) if self.instance.pk else Q(position__gt=position)
            later = PlaybookRule.objects.filter(checked_after, enabled=True).exclude(pk=self.instance.pk).order_by("position", "pk")
            no_conditions = not any(name in self.errors for name in self.CONDITIONS) and PlaybookRule(**conditions).matches_everyone()
            hidden = [rule.name for rule in later] if no_conditions else []
            if hidden:
                names = ", ".join(f"“{name}”" for name in hidden[:3]) + (f" and {len(hidden) - 3} more" if len(hidden) > 3 else "")
                self.add_error(None, f"This rule has no conditions, so it matches every customer and {names} after it would never apply: "
                                     "add a condition, or give it the highest order number so that it catches only the customers no other rule does.")
        if data.get("spent_top_share") is not None and not 0 < data["spent_top_share"] <= 1:
            self.add_error("spent_top_share", "More than 0 and at most 1 (0.1 = the top 10%).")
        if data.get("sentiment_max") is not None and not -1 <= data["sentiment_max"] <= 1:
            self.add_error("sentiment_max", "Between -1 and 1.")
        return data


@tenant_required()
def playbook(request: HttpRequest) -> HttpResponse:
    rules = ensure_default_playbook(request.tenant)  # type: ignore[attr-defined]
    counts = dict(CustomerInsight.objects.exclude(rule_name="").values_list("rule_name").annotate(n=Count("id")))
    for rule in rules:  # as of the last refresh; a disabled rule recommends to no one
        rule.customers = counts.get(rule.name, 0) if rule.enabled else 0
    jobs = list(latest_insights_refresh())
    return render(request, "campaigns/playbook.html", {"rules": rules, "can_edit": request.membership.can(Role.ADMIN),  # type: ignore[attr-defined]
                                                       "jobs": jobs, "updating": any(not job.is_finished for job in jobs),
                                                       "horizon_days": scoring_horizon(request.tenant, latest_scoring_date(request.tenant))})  # type: ignore[attr-defined]


@tenant_required(Role.ADMIN)
def edit_rule(request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
    if rule_id:
        rule = get_object_or_404(PlaybookRule, pk=rule_id)
    else:  # a new rule goes last (first match wins), but before a closing catch-all, which would hide it
        rules = list(PlaybookRule.objects.order_by("position", "pk"))
        if rules and rules[-1].matches_everyone() and (len(rules) < 2 or rules[-2].position < rules[-1].position - 1):
            position = rules[-1].position - 1
        else:
            position = (rules[-1].position if rules else 0) + 10
        rule = PlaybookRule(tenant=request.tenant, position=position)  # type: ignore[attr-defined]
    form = RuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.tenant = request.tenant  # type: ignore[attr-defined]
        saved.updated_at = timezone.now()
        saved.save()
        record_access(request.tenant, "rule_saved", f"“{saved.name}”: {'; '.join(saved.conditions()) or 'everyone'} → {saved.get_action_display()}", request.user)  # type: ignore[attr-defined]
        messages.success(request, f"Saved rule “{saved.name}”. {_recompute(request)}")
        return redirect("playbook")
    return render(request, "campaigns/rule.html", {"form": form, "rule": rule})


@require_POST
@tenant_required(Role.ADMIN)
def delete_rule(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(PlaybookRule, pk=rule_id)
    rule.delete()
    record_access(request.tenant, "rule_deleted", f"“{rule.name}”", request.user)  # type: ignore[attr-defined]
    messages.success(request, f"Deleted rule “{rule.name}”. {_recompute(request)}")
    return redirect("playbook")


def _recompute(request: HttpRequest) -> str:
    """Recompute every customer's next action with the changed playbook, in the background."""
    job = queue_insights_refresh(request.tenant, acting_user=request.user, actions_only=True)  # type: ignore[attr-defined]
    if job is None:
        return "Actions follow it from the first scoring."
    return "Every customer's next action is being recomputed with it now; the counts update when that finishes."


# --- Campaigns -------------------------------------------------------------------------------


class CampaignForm(forms.ModelForm):
    stages = forms.MultipleChoiceField(choices=Stage.choices, required=False, widget=forms.CheckboxSelectMultiple, help_text="audience: any of these stages")
    value_tiers = forms.MultipleChoiceField(choices=TIERS, required=False, widget=forms.CheckboxSelectMultiple, help_text="audience: any of these tiers")
    actions = forms.MultipleChoiceField(choices=Action.choices, required=False, widget=forms.CheckboxSelectMultiple, help_text="audience: customers whose recommended action is one of these")
    churn_min = PercentField(required=False, label="Churn risk at least (%)", help_text="from 0 to 100")
    control_share = PercentField(max_percent=50, label="Control group (%)",
                                 help_text="share of the audience held out to measure uplift, from 0 to 50; with a share, at least one customer")
    orders_min = forms.IntegerField(min_value=0, required=False, label="Orders at least")
    webhook_url = forms.URLField(max_length=500, required=False, assume_scheme="https", label="Webhook URL", help_text="optional: POST the treatment group here, HMAC-signed")

    FILTER_FIELDS = ("stages", "value_tiers", "actions", "churn_min", "orders_min")

    class Meta:
        model = Campaign
        fields = ["name", "goal", "action", "channel", "segment", "persuadable_only", "skip_running", "offer", "control_share", "attribution_days", "scheduled_for", "webhook_url"]
        widgets = {"scheduled_for": forms.DateTimeInput(attrs={"type": "datetime-local"})}
        help_texts = {"segment": "optional: start from a segment, then narrow with the filters below",
                      "scheduled_for": "in the shop's time zone (Settings); empty: launch by hand",
                      "persuadable_only": "the top 30% by predicted uplift, learned from the completed campaigns with this action",
                      "skip_running": "so nobody hears from two campaigns at once; a running campaign's control group is left out either way",
                      "offer": "text for your email tool, e.g. “15% off”; blank: each customer's own offer from the playbook"}
        labels = {"persuadable_only": "Only customers likely to respond because of it (uplift model)",
                  "skip_running": "Leave out customers already in a running campaign",
                  "attribution_days": "Attribution window (days)", "scheduled_for": "Launch at"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The campaign's own segment stays on offer after a clustering retired it, so that
        # saving the form unchanged keeps it (an empty choice means every customer).
        keep = Q(pk=self.instance.segment_id) if self.instance.segment_id else Q(pk__in=[])
        segment = self.fields["segment"]
        segment.queryset = Segment.objects.filter(Q(is_current=True) | Q(kind=Segment.Kind.SAVED) | keep).order_by("kind", "name")
        segment.empty_label = "All customers (no segment)"
        segment.label_from_instance = lambda s: f"{s.name} ({_kind_word(s)}{'' if s.is_current or s.kind != Segment.Kind.LEARNED else ', retired: no members'})"
        for key in self.FILTER_FIELDS:
            if self.instance.pk and key in self.instance.filters:
                self.initial[key] = self.instance.filters[key]
        zone = timezone.get_current_timezone_name()  # the shop's, on its pages (clmsite.tenancy)
        self.fields["scheduled_for"].help_text = f"in {zone}, the shop's time zone (Settings); empty: launch by hand"

    def clean_scheduled_for(self) -> Any:
        when = self.cleaned_data.get("scheduled_for")
        problem = services.schedule_problem(when) if when != self.instance.scheduled_for else None  # an edit may keep a time already due
        if problem:
            raise forms.ValidationError(problem)
        return when

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data.get("webhook_url", "")
        problem = services.webhook_url_problem(url)
        if problem:
            raise forms.ValidationError(problem)
        return url

    def filters(self) -> dict[str, Any]:
        return {k: self.cleaned_data[k] for k in self.FILTER_FIELDS if self.cleaned_data.get(k) not in (None, "", [])}


@tenant_required()
def campaign_list(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    services.run_schedule_in_process(tenant)
    campaigns = list(Campaign.objects.select_related("segment", "tenant"))
    for campaign in campaigns:
        services.complete_if_due(campaign)
    measured = services.group_outcomes(campaigns)
    for campaign in campaigns:
        campaign.outcome = services.outcomes(campaign, with_cumulative=False, groups=measured[campaign.pk]) if campaign.launched_at else None
        # A draft or a scheduled campaign: who it targets now, as its page previews ("at launch" alone read as a missing count).
        campaign.audience_now = services.audience(campaign).count() if campaign.state in (Campaign.State.DRAFT, Campaign.State.SCHEDULED) else None
    return render(request, "campaigns/list.html", {
        "campaigns": campaigns, "suggestions": services.suggested_campaigns(tenant), "can_draft": request.membership.can(Role.ANALYST),  # type: ignore[attr-defined]
        "scored_as_of": latest_scoring_date(tenant),
    })


@require_POST
@tenant_required(Role.ANALYST)
def draft_from_suggestion(request: HttpRequest, action: str) -> HttpResponse:
    try:
        campaign, created = services.do_draft_from_suggestion(request.tenant, action, user=request.user)  # type: ignore[attr-defined]
    except services.CampaignStateError as exc:
        messages.error(request, str(exc))
        return redirect("campaigns")
    if created:
        messages.success(request, f"Draft “{campaign.name}” created: check the audience, then launch.")
    else:
        messages.info(request, f"This suggestion has a draft already, “{campaign.name}”: here it is.")
    return redirect("campaign_detail", campaign_id=campaign.pk)


@tenant_required(Role.ANALYST)
def edit_campaign(request: HttpRequest, campaign_id: int | None = None) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id) if campaign_id else Campaign(tenant=request.tenant)  # type: ignore[attr-defined]
    if campaign.pk and campaign.state not in (Campaign.State.DRAFT, Campaign.State.SCHEDULED):
        messages.error(request, "A launched campaign cannot be edited.")
        return redirect("campaign_detail", campaign_id=campaign.pk)
    if campaign.pk and services.goes_out_unattended(campaign) and not request.membership.can(Role.ADMIN):  # type: ignore[attr-defined]
        messages.error(request, services.ADMIN_EDITS)
        return redirect("campaign_detail", campaign_id=campaign.pk)
    form = CampaignForm(request.POST or None, instance=campaign)
    if not request.membership.can(Role.ADMIN):  # type: ignore[attr-defined]
        for name in services.ADMIN_FIELDS:  # kept as they are: an admin sets them
            form.fields[name].disabled = True
            form.fields[name].help_text = "set by an admin or owner, who launch campaigns"
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.tenant = request.tenant  # type: ignore[attr-defined]
        saved.filters = form.filters()
        saved.state = Campaign.State.SCHEDULED if saved.scheduled_for else Campaign.State.DRAFT
        saved.created_by = saved.created_by or request.user
        if saved.webhook_url and not saved.webhook_secret:
            saved.webhook_secret = services.new_webhook_secret()
        saved.updated_at = timezone.now()
        created = saved.pk is None
        saved.save()
        services.audit_saved(saved, created=created, user=request.user, via="web", changed=[*form.changed_data, *(["filters"] if set(form.changed_data) & set(form.FILTER_FIELDS) else [])])
        messages.success(request, f"Saved “{saved.name}”.")
        return redirect("campaign_detail", campaign_id=saved.pk)
    return render(request, "campaigns/edit.html", {"form": form, "campaign": campaign})


@tenant_required()
def campaign_preview(request: HttpRequest) -> JsonResponse:
    """Live audience count and value at risk for the campaign form."""
    stale = stale_preview(request)
    if stale is not None:
        return stale
    form = CampaignForm(request.GET)
    form.is_valid()  # partial input still previews: only the audience fields matter
    data = getattr(form, "cleaned_data", {})
    draft = Campaign(tenant=request.tenant, action=data.get("action") or Action.NURTURE, segment=data.get("segment"),  # type: ignore[attr-defined]
                     filters={k: data[k] for k in CampaignForm.FILTER_FIELDS if data.get(k) not in (None, "", [])},
                     persuadable_only=bool(data.get("persuadable_only")), skip_running=bool(data.get("skip_running")))
    # What the launch would do with the form's own control share, channel and offer (the model's
    # defaults stand in for a field left blank or invalid).
    for name in ("control_share", "channel", "offer"):
        if data.get(name) not in (None, ""):
            setattr(draft, name, data[name])
    preview = services.preview(draft)
    refused = not_counted_note(form, (*CampaignForm.FILTER_FIELDS, "segment"))
    preview["note"] = " ".join(filter(None, [refused, preview["note"]]))
    preview["partial"] = bool(refused)  # the count leaves the refused fields out: the size says so
    return JsonResponse(preview)


@tenant_required()
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    services.run_schedule_in_process(request.tenant)  # type: ignore[attr-defined]
    campaign = get_object_or_404(Campaign.objects.select_related("segment", "created_by"), pk=campaign_id)
    services.complete_if_due(campaign)
    report = services.outcomes(campaign)
    preview = services.preview(campaign) if campaign.state in (Campaign.State.DRAFT, Campaign.State.SCHEDULED) else None
    groups = dict(CampaignMember.objects.filter(campaign=campaign).values_list("group").annotate(n=Count("id")))
    chart = {k: report[k] for k in ("treatment", "control", "uplift", "uplift_ci", "cumulative", "window_complete")} if report.get("launched") else {}
    return render(request, "campaigns/detail.html", {
        "campaign": campaign, "report": report, "preview": preview, "groups": groups, "chart_data": chart,
        "filters": describe_filters(campaign.filters, request.tenant.currency),  # type: ignore[attr-defined]
        **_segment_at_launch(campaign, request.tenant.currency),  # type: ignore[attr-defined]
        "due": campaign.scheduled_for is not None and campaign.scheduled_for <= timezone.now(),
        "audit": campaign.audit.select_related("user")[:20], "deliveries": campaign.deliveries.all()[:50],
        "can_launch": request.membership.can(Role.ADMIN), "can_edit": request.membership.can(Role.ANALYST),  # type: ignore[attr-defined]
        "may_delete": campaign.is_deletable and request.membership.can(Role.ADMIN if services.goes_out_unattended(campaign) else Role.ANALYST),  # type: ignore[attr-defined]
        "show_secret": request.membership.can(Role.ADMIN) and bool(campaign.webhook_secret),  # type: ignore[attr-defined]
        "show_webhook_path": request.membership.can(Role.ADMIN), "webhook_host": services.webhook_host(campaign.webhook_url),  # type: ignore[attr-defined]
    })


def _segment_at_launch(campaign: Campaign, currency: str) -> dict[str, Any]:
    """A launched campaign's segment as it was at launch, its rule, and whether it has been
    changed or deleted since (its audience was frozen then)."""
    frozen = campaign.segment_at_launch if campaign.launched_at else {}
    if not frozen:
        return {"frozen_segment": None}
    current = campaign.segment
    since = "deleted since" if current is None else "changed since" if services.segment_snapshot(current) != frozen else ""
    return {"frozen_segment": frozen, "frozen_segment_rule": describe_filters(frozen["filters"], currency), "frozen_segment_since": since}


@require_POST
@tenant_required(Role.ADMIN)
def launch_campaign(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        campaign = services.do_launch_campaign(request.tenant, campaign.pk, user=request.user, via="web")  # type: ignore[attr-defined]
        control = campaign.members.filter(group=CampaignMember.Group.CONTROL).count()
        messages.success(request, f"Launched to {services.launch_summary(campaign.audience_size, control)}.")
    except services.CampaignStateError as exc:
        messages.error(request, str(exc))
    return redirect("campaign_detail", campaign_id=campaign.pk)


@require_POST
@tenant_required(Role.ANALYST)
def delete_campaign(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """A campaign never launched can go; a launched one is kept for its report (cancel it)."""
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    refusal = (services.ADMIN_DELETES if services.goes_out_unattended(campaign) and not request.membership.can(Role.ADMIN)  # type: ignore[attr-defined]
               else None if campaign.is_deletable else services.kept_for_its_report(campaign))
    if refusal:
        messages.error(request, refusal)
        return redirect("campaign_detail", campaign_id=campaign.pk)
    campaign.delete()
    messages.success(request, f"Deleted the {campaign.get_state_display().lower()} campaign “{campaign.name}”.")
    return redirect("campaigns")


def _act_on_campaign(request: HttpRequest, campaign_id: int, act: Any, done: str) -> HttpResponse:
    """Run one of the services' ``do_…`` on the campaign and say how it went on its page."""
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        act(request.tenant, campaign.pk, user=request.user, via="web")  # type: ignore[attr-defined]
        messages.success(request, done)
    except services.CampaignStateError as exc:
        messages.error(request, str(exc))
    return redirect("campaign_detail", campaign_id=campaign.pk)


@require_POST
@tenant_required(Role.ADMIN)
def rotate_webhook_secret(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _act_on_campaign(request, campaign_id, services.do_rotate_webhook_secret,
                            "A new signing secret: deliveries from now on are signed with it, and the old one no longer verifies. Update your receiver.")


@require_POST
@tenant_required(Role.ADMIN)
def cancel_campaign(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _act_on_campaign(request, campaign_id, services.do_cancel_campaign, "Campaign cancelled.")


@tenant_required()
def campaign_audience_csv(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    if campaign.launched_at is None:
        raise Http404("Not found")
    group = CampaignMember.Group.CONTROL if request.GET.get("group") == "control" else CampaignMember.Group.TREATMENT
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{group}.csv"'
    response.write(EXCEL_BOM)
    services.write_audience_csv(campaign, response, group)
    return response


def _kind_word(segment: Segment) -> str:
    """A segment's kind as a word inside a sentence: "learned", "saved", but "RFM" as written."""
    label = segment.get_kind_display()
    return label if label.isupper() else label.lower()
