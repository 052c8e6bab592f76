"""The playbook pages: the ordered rules behind every recommended next action."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from campaigns.models import PlaybookRule
from campaigns.playbook import ensure_default_playbook
from clmsite.models import Role
from clmsite.views import tenant_required
from modeling.models import CustomerInsight, Stage

TIERS = [("high", "High"), ("medium", "Medium"), ("low", "Low")]


class RuleForm(forms.ModelForm):
    stages = forms.MultipleChoiceField(choices=Stage.choices, required=False, widget=forms.CheckboxSelectMultiple, help_text="any of; none = every stage")
    tiers = forms.MultipleChoiceField(choices=TIERS, required=False, widget=forms.CheckboxSelectMultiple, help_text="any of; none = every tier")

    class Meta:
        model = PlaybookRule
        fields = [
            "position", "name", "enabled", "stages", "tiers", "churn_min", "churn_max", "sentiment_max", "value_at_risk_min",
            "days_since_min", "days_since_max", "action", "channel", "offer_pct", "offer_cap",
        ]

    def clean(self) -> dict:
        data = super().clean()
        for low, high in (("churn_min", "churn_max"), ("days_since_min", "days_since_max")):
            if data.get(low) is not None and data.get(high) is not None and data[low] > data[high]:
                self.add_error(high, "Must be at least the minimum.")
        for key in ("churn_min", "churn_max", "offer_pct"):
            if data.get(key) is not None and not 0 <= data[key] <= 1:
                self.add_error(key, "Between 0 and 1.")
        if data.get("sentiment_max") is not None and not -1 <= data["sentiment_max"] <= 1:
            self.add_error("sentiment_max", "Between -1 and 1.")
        return data


@tenant_required()
def playbook(request: HttpRequest) -> HttpResponse:
    rules = ensure_default_playbook(request.tenant)  # type: ignore[attr-defined]
    counts = dict(CustomerInsight.objects.exclude(rule_name="").values_list("rule_name").annotate(n=Count("id")))
    for rule in rules:
        rule.customers = counts.get(rule.name, 0)
    return render(request, "campaigns/playbook.html", {"rules": rules, "can_edit": request.membership.can(Role.ADMIN)})  # type: ignore[attr-defined]


@tenant_required(Role.ADMIN)
def edit_rule(request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
    rule = get_object_or_404(PlaybookRule, pk=rule_id) if rule_id else PlaybookRule(tenant=request.tenant)  # type: ignore[attr-defined]
    form = RuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        saved = form.save(commit=False)
        saved.tenant = request.tenant  # type: ignore[attr-defined]
        saved.updated_at = timezone.now()
        saved.save()
        messages.success(request, f"Saved rule “{saved.name}”. Actions follow it from the next scoring.")
        return redirect("playbook")
    return render(request, "campaigns/rule.html", {"form": form, "rule": rule})


@require_POST
@tenant_required(Role.ADMIN)
def delete_rule(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(PlaybookRule, pk=rule_id)
    rule.delete()
    messages.success(request, f"Deleted rule “{rule.name}”.")
    return redirect("playbook")
