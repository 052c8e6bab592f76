"""The playbook: the tenant's ordered rules that turn a customer's stage, tier, churn risk,
sentiment and recency into one recommended next action. Campaigns build on these actions."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from clmsite.tenancy import TenantOwnedModel


class Action(models.TextChoices):
    VIP_CARE = "vip_care", "VIP care"
    SECOND_PURCHASE = "second_purchase", "Second-purchase nudge"
    WIN_BACK = "win_back", "Win-back offer"
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
    NONE = "none", "None"


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
    sentiment_max = models.FloatField(null=True, blank=True, help_text="latest review sentiment at most (-1..1)")
    value_at_risk_min = models.FloatField(null=True, blank=True)
    days_since_min = models.PositiveIntegerField(null=True, blank=True, help_text="days since the last order at least")
    days_since_max = models.PositiveIntegerField(null=True, blank=True, help_text="days since the last order at most")
    action = models.CharField(max_length=32, choices=Action.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.EMAIL)
    offer_pct = models.FloatField(null=True, blank=True, help_text="discount as a share of predicted value (0-1)")
    offer_cap = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True, help_text="maximum discount")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"
