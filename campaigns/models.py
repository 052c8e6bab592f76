"""The playbook: the tenant's ordered rules that turn a customer's stage, tier, churn risk,
sentiment and recency into one recommended next action. Campaigns build on these actions."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from clmsite.tenancy import TenantOwnedModel


class Action(models.TextChoices):
    VIP_CARE = "vip_care", "VIP care"
    SECOND_PURCHASE = "second_purchase", "Second-purchase nudge"
    WIN_BACK = "win_back", "Win-back"
    SERVICE_RECOVERY = "service_recovery", "Service recovery"
    CROSS_SELL = "cross_sell", "Cross-sell"
    REACTIVATION_THANKS = "welcome_back", "Welcome back"
    RETENTION = "retention", "Retention check-in"
    NURTURE = "nurture", "Nurture newsletter"
    CONVERT_PROSPECT = "first_purchase", "First-purchase incentive"
    NO_ACTION = "no_action", "No action (save budget)"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PHONE = "phone", "Phone call"
    ADS = "ads", "Paid social audience"
    NONE = "none", "No contact"


class PlaybookRule(TenantOwnedModel):
    """One rule: when every set condition holds, recommend the action. First match wins.

    Empty conditions match everything; list conditions match any of their values."""

    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    stages = models.JSONField(default=list, blank=True, help_text="lifecycle stages, any of")
    tiers = models.JSONField(default=list, blank=True, help_text="value tiers, any of")
    churn_min = models.FloatField(null=True, blank=True, help_text="churn probability at least")
    churn_max = models.FloatField(null=True, blank=True, help_text="churn probability at most")
    sentiment_max = models.FloatField(null=True, blank=True, help_text="matches customers with a negative review (1-2 stars or negative text) in the 60 days up to the scoring date whose tone is at most this (-1..1; every negative review is at most -0.5)")
    value_at_risk_min = models.FloatField(null=True, blank=True)
    days_since_min = models.PositiveIntegerField(null=True, blank=True, help_text="days since the last order at least")
    days_since_max = models.PositiveIntegerField(null=True, blank=True, help_text="days since the last order at most")
    spent_top_share = models.FloatField(null=True, blank=True, help_text="lifetime spend among the shop's top share of buyers, from 0 to 1 (0.1 = top 10%)")
    orders_min = models.PositiveIntegerField(null=True, blank=True, help_text="lifetime orders at least")
    action = models.CharField(max_length=32, choices=Action.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    offer_pct = models.FloatField(null=True, blank=True, help_text="discount as a share of what the customer would spend if they ordered again (0-1)")
    offer_cap = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True, help_text="maximum discount")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"

    def conditions(self) -> list[str]:
        """The rule's conditions as a merchant reads them (labels, not codes); none means always."""
        from modeling.models import Prediction, Stage

        stages, tiers = dict(Stage.choices), dict(Prediction.Tier.choices)
        parts = []
        if self.stages:
            parts.append("stage " + " or ".join(str(stages.get(s, s)) for s in self.stages))
        if self.tiers:
            parts.append(" or ".join(str(tiers.get(t, t)) for t in self.tiers) + " value")
        def percent(share: float) -> str:  # as typed in the form: 12.5%, not 12%
            return f"{round(share * 100, 2):g}%"

        def chance(share: float) -> str:  # a prospect has nothing to churn from: their chance of a first order
            return percent(1 - share)

        first_order = self.stages == ["prospect"]
        bounds = (
            (self.churn_min, "chance of a first order ≤ {}" if first_order else "churn risk ≥ {}", chance if first_order else percent),
            (self.churn_max, "chance of a first order ≥ {}" if first_order else "churn risk ≤ {}", chance if first_order else percent), (self.sentiment_max, "a recent review at least this negative: tone ≤ {} (from -1, angry, to 1, delighted)", str),
            (self.value_at_risk_min, "value at risk ≥ {}", "{:,.0f}".format), (self.days_since_min, "{} days or more since the last order", str),
            (self.days_since_max, "{} days or fewer since the last order", str), (self.spent_top_share, "lifetime spend in the top {} of buyers", percent),
            (self.orders_min, "{} or more orders in all", str),
        )
        parts += [template.format(shown(value)) for value, template, shown in bounds if value is not None]
        return parts or ["always"]

    def matches_everyone(self) -> bool:
        """A rule without conditions: a catch-all that hides every rule after it."""
        return self.conditions() == ["always"]


class Campaign(TenantOwnedModel):
    """An action sent to an audience, with a random but deterministic control group.

    Launching freezes the audience into :class:`CampaignMember` rows; outcomes are the
    members' orders within the attribution window after launch."""

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=200)
    goal = models.CharField(max_length=300, blank=True, default="")
    action = models.CharField(max_length=32, choices=Action.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    segment = models.ForeignKey("modeling.Segment", null=True, blank=True, on_delete=models.SET_NULL, related_name="campaigns")
    filters = models.JSONField(default=dict, blank=True, help_text="audience filters (as saved segments), applied with the segment")
    # The segment as it was at launch (id, name, kind, a saved segment's filters): the report
    # says whom the campaign was sent to after the segment is edited or deleted.
    segment_at_launch = models.JSONField(
        default=dict, blank=True,
        help_text="the segment as it was at launch: id, name, kind and (a saved segment's) filters; empty before launch or without a segment",
    )
    persuadable_only = models.BooleanField(default=False, help_text="keep only customers predicted to respond (uplift model)")
    # A running campaign's control group is left out of every other campaign either way:
    # contacting it would spoil that campaign's measurement.
    skip_running = models.BooleanField(default=True, help_text="leave out customers already in a running campaign (its control group is left out either way)")
    offer = models.CharField(max_length=200, blank=True, default="", help_text="the same for everyone; blank: each customer's own offer from the playbook, when their recommended action is the campaign's")
    control_share = models.FloatField(default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(0.5)])
    attribution_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), MaxValueValidator(365)])
    scheduled_for = models.DateTimeField(null=True, blank=True)
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    webhook_secret = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    audience_size = models.PositiveIntegerField(default=0)
    value_at_risk = models.FloatField(default=0.0)
    launched_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    @property
    def is_deletable(self) -> bool:
        """Never launched (a draft, a scheduled one, or one cancelled before its launch): no
        report to keep."""
        return self.launched_at is None and self.state in (self.State.DRAFT, self.State.SCHEDULED, self.State.CANCELLED)

    def __str__(self) -> str:
        return self.name

    @property
    def segment_renamed_since_drafted(self) -> dict | None:
        """What a learned segment this unlaunched campaign targets was called when it was drafted,
        if the clustering has named it afresh since (modeling.insights: ``renamed_from``)."""
        segment = self.segment if self.segment_id and self.launched_at is None else None
        was = (segment.stats or {}).get("renamed_from") if segment is not None and segment.is_current else None
        if not was:
            return None
        at = was.get("at")
        return was if at is None or dt.datetime.fromisoformat(at) > self.created_at else None

    @property
    def attribution_ends(self) -> object:
        return self.launched_at + timezone.timedelta(days=self.attribution_days) if self.launched_at else None


class CampaignMember(TenantOwnedModel):
    """One customer of a launched campaign's frozen audience, in treatment or control."""

    class Group(models.TextChoices):
        TREATMENT = "treatment", "Treatment"
        CONTROL = "control", "Control"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="members")
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="campaign_memberships")
    group = models.CharField(max_length=10, choices=Group.choices)
    stage = models.CharField(max_length=16, blank=True, default="")
    churn_probability = models.FloatField(null=True, blank=True)
    predicted_value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    # The customer's own offer at launch (the playbook's, capped by their predicted value),
    # when their recommended action was the campaign's.
    offer_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "customer"], name="uniq_campaign_member")]
        indexes = [models.Index(fields=["campaign", "group"], name="campaign_member_group")]


class CampaignAudit(TenantOwnedModel):
    """Who did what to a campaign, when, and the audience size at that moment."""

    EVENTS = {"draft": "Drafted", "edit": "Edited", "launch": "Launched", "cancel": "Cancelled", "complete": "Completed", "webhook_rekeyed": "Webhook secret changed", "segment_changed": "Segment changed"}

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="audit")
    event = models.CharField(max_length=32)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    via = models.CharField(max_length=16, default="web", help_text="web, api or cli")
    audience_size = models.PositiveIntegerField(default=0)
    detail = models.CharField(max_length=300, blank=True, default="")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]

    @property
    def event_label(self) -> str:
        return self.EVENTS.get(self.event, self.event.capitalize())

    @property
    def counts_audience(self) -> bool:
        """Whether ``audience_size`` means something here: from the launch on (a draft's is
        not frozen yet)."""
        return self.event in ("launch", "complete") or (self.event == "cancel" and self.audience_size > 0)


class WebhookDelivery(TenantOwnedModel):
    """One attempt to POST one batch of a campaign's audience to the merchant's URL."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="deliveries")
    batch = models.PositiveIntegerField()
    batches = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField()
    customers = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    error = models.CharField(max_length=300, blank=True, default="")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["batch", "attempt"]
