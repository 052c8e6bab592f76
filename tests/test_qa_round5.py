"""QA round 5: a campaign's audience never widens by itself, its control group is never
silently empty, its audit is complete, and its report draws nothing in the future."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Action, Campaign, CampaignAudit
from clmsite.tenancy import tenant_context
from customers.models import Customer
from modeling.models import CustomerInsight, Segment

pytestmark = pytest.mark.django_db


def insights(tenant, n: int, *, stage: str = "active") -> None:
    """``n`` customers with an insight row each: enough audience for a campaign."""
    with tenant_context(tenant):
        for i in range(n):
            customer = Customer.objects.create(external_id=f"C{i}", order_count=1)
            CustomerInsight.objects.create(customer=customer, as_of=dt.date(2025, 6, 30), stage=stage, stage_since=dt.date(2025, 6, 1),
                                           stage_reason="test", action=Action.WIN_BACK, action_reason="test", churn_probability=0.5,
                                           predicted_value=100, priority=50)


def test_a_saved_segment_a_pending_campaign_targets_cannot_be_deleted(tenant_a, alice, client, api_a) -> None:
    insights(tenant_a, 6)
    insights_lapsed = 0
    with tenant_context(tenant_a):
        segment = Segment.objects.create(kind=Segment.Kind.SAVED, key="lapsed", name="Lapsed", filters={"stages": ["lapsed"]})
        campaign = Campaign.objects.create(name="Win back", action=Action.WIN_BACK, segment=segment)
        assert services.preview(campaign)["size"] == insights_lapsed
    client.force_login(alice)
    page = client.post(f"/segments/{segment.pk}/delete/", follow=True).content.decode()
    assert "“Win back” targets this segment and has not launched yet" in page
    answer = api_a.delete(f"/api/v1/segments/{segment.pk}/")
    assert answer.status_code == 409 and "Win back" in answer.json()["detail"]  # a conflict with the campaign, as campaign states are
    with tenant_context(tenant_a):
        campaign.refresh_from_db()
        assert campaign.segment_id == segment.pk and services.preview(campaign)["size"] == 0  # not every customer
        campaign.delete()
    assert api_a.delete(f"/api/v1/segments/{segment.pk}/").status_code == 204


def test_the_edit_form_keeps_a_retired_learned_segment(tenant_a, alice, client) -> None:
    with tenant_context(tenant_a):
        retired = Segment.objects.create(kind=Segment.Kind.LEARNED, key="old", name="Old cluster", is_current=False)
        campaign = Campaign.objects.create(name="Cluster push", action=Action.WIN_BACK, segment=retired)
    client.force_login(alice)
    form = client.get(f"/campaigns/{campaign.pk}/edit/").content.decode()
    assert "Old cluster (learned, retired: no members)" in form and "All customers (no segment)" in form
    detail = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "retired by the latest clustering" in detail and 'data-testid="launch"' not in detail  # nothing to launch to
    response = client.post(f"/campaigns/{campaign.pk}/edit/", {"name": "Cluster push", "action": "win_back", "channel": "email", "segment": retired.pk,
                                                               "control_share": 10, "attribution_days": 30, "skip_running": "on"})
    assert response.status_code == 302
    with tenant_context(tenant_a):
        campaign.refresh_from_db()
        assert campaign.segment_id == retired.pk
        assert [a.event_label for a in CampaignAudit.objects.filter(campaign=campaign)] == []  # saved unchanged: nothing to audit


@pytest.mark.parametrize(("share", "size", "held"), [(0.02, 17, 1), (0.1, 4, 1), (0.0, 17, 0), (0.5, 2, 1), (0.2, 1, 0), (0.1, 81, 8)])
def test_a_control_share_never_rounds_to_nobody(share, size, held) -> None:
    assert services.control_size(share, size) == held
    assert len(services.control_group(1, list(range(size)), share)) == held


def test_launch_says_how_many_were_held_out_and_the_audit_is_complete(tenant_a, alice, client) -> None:
    insights(tenant_a, 17)
    client.force_login(alice)
    created = client.post("/campaigns/new/", {"name": "Small", "action": "win_back", "channel": "email", "control_share": 2, "attribution_days": 30})
    assert created.status_code == 302
    with tenant_context(tenant_a):
        campaign = Campaign.objects.get(name="Small")
    when = (timezone.now() + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    client.post(f"/campaigns/{campaign.pk}/edit/", {"name": "Small", "action": "win_back", "channel": "email", "control_share": 2, "attribution_days": 30, "scheduled_for": when})
    page = client.post(f"/campaigns/{campaign.pk}/launch/", follow=True).content.decode()
    assert "Launched to 17 customers: 16 treated, 1 held out as control." in page
    with tenant_context(tenant_a):
        audit = [(a.event_label, a.detail) for a in CampaignAudit.objects.filter(campaign=campaign).order_by("at")]
    assert audit[0] == ("Drafted", "by hand")
    assert audit[1][0] == "Edited" and "launch scheduled for" in audit[1][1] and "UTC" in audit[1][1]
    assert audit[2] == ("Launched", "17 customers: 16 treated, 1 held out as control")


def test_a_cancelled_draft_can_still_be_deleted(tenant_a, alice, client) -> None:
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Never sent", action=Action.WIN_BACK)
    client.force_login(alice)
    assert "campaign_cancel" not in client.get(f"/campaigns/{campaign.pk}/").content.decode()
    services.do_cancel_campaign(tenant_a, campaign.pk)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert 'data-testid="delete-campaign"' in page
    client.post(f"/campaigns/{campaign.pk}/delete/")
    with tenant_context(tenant_a):
        assert not Campaign.objects.filter(pk=campaign.pk).exists()


def test_a_fresh_report_has_no_future_point_and_says_no_orders_yet(tenant_a) -> None:
    insights(tenant_a, 20)
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Fresh", action=Action.WIN_BACK, control_share=0.2)
    services.do_launch_campaign(tenant_a, campaign.pk)
    with tenant_context(tenant_a):
        campaign.refresh_from_db()
    report = services.outcomes(campaign, now=campaign.launched_at + dt.timedelta(hours=3))
    assert [(row["day"], row["end"]) for row in report["cumulative"]] == [(0.0, False), (0.125, True)]
    assert report["verdict"] == "No orders from the audience since launch yet: check back as orders come in."
    later = services.outcomes(campaign, now=campaign.launched_at + dt.timedelta(days=40))
    assert [row["day"] for row in later["cumulative"]][-2:] == [29.0, 30.0]  # ends with the window, on a whole day


def test_a_scheduled_campaign_with_nobody_to_reach_goes_back_to_draft_saying_why(tenant_a) -> None:
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Due", action=Action.WIN_BACK, state=Campaign.State.SCHEDULED, scheduled_for=timezone.now() - dt.timedelta(minutes=1))
    assert services.launch_due_campaigns(tenant_a) == 0
    with tenant_context(tenant_a):
        campaign.refresh_from_db()
        audit = CampaignAudit.objects.get(campaign=campaign)
    assert campaign.state == Campaign.State.DRAFT
    assert "scheduled launch not done: The audience is empty" in audit.detail


def test_a_cancelled_order_is_not_in_the_customer_chart_or_top_categories(tenant_a, tmp_path) -> None:
    from customers.services.imports import import_csv
    from customers.services.queries import customer_timeline

    csv = ("customer_id,order_id,ordered_at,amount,sku,category,status\n"
           "c1,o1,2025-01-01,20.00,s1,Shoes,completed\n"
           "c1,o2,2025-02-01,900.00,s2,Tents,cancelled\n")
    path = tmp_path / "orders.csv"
    path.write_text(csv)
    assert import_csv(tenant_a, "orders", str(path)).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    timeline = customer_timeline(tenant_a, customer)
    assert [point["amount"] for point in timeline["chart"]] == [20.0]
    assert timeline["top_categories"] == [("Shoes", 1)]
    assert len(timeline["orders"]) == 2  # the list still shows it, with its status


def test_pages_show_labels_not_codes(tenant_a) -> None:
    from modeling.insights import describe_filters

    assert describe_filters({"stages": ["at_risk"], "spend_min": 5000.0, "churn_min": 0.5}) == [
        ("stage is one of", "At risk"), ("total spent at least", "5,000"), ("churn risk at least", "50%")]
    insight = CustomerInsight(action_channel="none")
    assert insight.channel_label == "No contact"


def test_a_viewer_sees_the_thresholds_in_effect(tenant_a, bob, client) -> None:
    client.force_login(bob)
    page = client.get("/lifecycle/").content.decode()
    assert 'data-testid="thresholds-in-effect"' in page and "Usual gap days" in page and "Save thresholds" not in page


def test_a_euro_shop_profile_writes_euros_and_a_dollar_shop_keeps_its_text(tenant_a, tmp_path) -> None:
    from customers.services.imports import import_csv
    from modeling.features import features_as_of, load_history
    from modeling.profiles import customer_profiles

    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_id,ordered_at,amount\nc1,o1,2025-01-01,240.00\nc1,o2,2025-03-01,60.00\n")
    assert import_csv(tenant_a, "orders", str(path)).ok
    as_of = dt.date(2025, 6, 30)

    def profile() -> str:
        history = load_history(tenant_a, ceiling=as_of)
        return customer_profiles(history, as_of, features_as_of(history, as_of)).iloc[0]

    assert "Spent $300" in profile()
    tenant_a.currency = "EUR"
    tenant_a.save(update_fields=["currency"])
    assert "Spent EUR 300" in profile() and "$" not in profile()
