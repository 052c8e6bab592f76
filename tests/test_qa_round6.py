"""QA round 6: whole numbers are written plainly, and a sentiment model's sample is reviews."""

from __future__ import annotations

import pytest

from clmsite.templatetags.clm import metric_label
from customers.services.imports import import_csv
from customers.services.parsing import FieldError, parse_positive_int
from tests.conftest import write_csv


@pytest.mark.parametrize(("raw", "value"), [("3", 3), (" 7 ", 7), ("3.0", 3), ("+2", 2)])
def test_a_whole_number_may_carry_a_spreadsheets_trailing_zero(raw, value) -> None:
    assert parse_positive_int(raw) == value


@pytest.mark.parametrize(("raw", "message"), [
    ("1e1", "'1e1' is in scientific notation; write a plain whole number"),
    ("2.5", "'2.5' is not a whole number"), ("1_0", "'1_0' is not a whole number"), ("٣", "'٣' is not a whole number"),
    ("0", "'0' is not between 1 and 1,000,000"), ("-1", "'-1' is not between 1 and 1,000,000"),
])
def test_anything_but_a_plain_whole_number_is_refused_with_its_reason(raw, message) -> None:
    with pytest.raises(FieldError, match=f"^{message}$"):
        parse_positive_int(raw)


@pytest.mark.django_db
def test_a_rating_or_quantity_in_scientific_notation_is_a_row_error(tenant_a, tmp_path) -> None:
    orders = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", "customer_id,order_id,ordered_at,amount,quantity\nc1,o1,2024-01-01,3,1e1\n"))
    reviews = import_csv(tenant_a, "reviews", write_csv(tmp_path / "r.csv", "customer_id,review_id,created_at,text,rating\nc1,r1,2024-01-01,Fine,5e0\n"))
    assert [(e.row, e.column) for e in orders.errors] == [(2, "quantity")]
    assert [(e.row, e.column, e.message) for e in reviews.errors] == [(2, "rating", "'5e0' is not a rating from 1 to 5")]


def test_the_sentiment_models_sample_is_counted_in_reviews() -> None:
    assert metric_label("n", "sentiment") == "Reviews"
    assert metric_label("n", "purchase") == metric_label("n") == "Customers"


@pytest.mark.django_db
def test_a_campaigns_report_says_how_many_members_were_deleted_since_launch(tenant_a, client, alice, api_a) -> None:
    from campaigns import services
    from campaigns.models import Action, Campaign, CampaignMember
    from clmsite.tenancy import tenant_context
    from customers.models import Customer
    from tests.test_qa_round5 import insights

    insights(tenant_a, 10)
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Win back", action=Action.WIN_BACK, control_share=0.3)
    campaign = services.do_launch_campaign(tenant_a, campaign.pk)
    client.force_login(alice)
    assert services.outcomes(campaign)["members_removed"] == 0
    assert b'data-testid="members-removed"' not in client.get(f"/campaigns/{campaign.pk}/").content
    with tenant_context(tenant_a):
        gone = list(CampaignMember.objects.filter(campaign=campaign).values_list("customer_id", flat=True)[:2])
        Customer.objects.filter(pk__in=gone).delete()  # an erasure request

    report = api_a.get(f"/api/v1/campaigns/{campaign.pk}/report/").json()
    assert report["members_removed"] == 2 and report["treatment"]["members"] + report["control"]["members"] == 8
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "2 of the 10 customers launched to were deleted since, with their orders" in page


@pytest.mark.django_db
def test_an_attribute_column_name_over_100_characters_is_refused_by_name(tenant_a, tmp_path) -> None:
    from clmsite.tenancy import tenant_context
    from customers.models import Customer

    long_name = "x" * 2000
    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", f"customer_id,tier,{long_name}\nc1,gold,1\n"))
    assert not result.ok and [(e.row, e.column[:10]) for e in result.errors] == [(1, "x" * 10)]
    assert result.errors[0].message == "the attribute name is 2,000 characters long; the limit is 100"
    assert "too long to keep as a customer attribute" in result.message
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()
    ok = import_csv(tenant_a, "customers", write_csv(tmp_path / "c2.csv", f"customer_id,{'y' * 100}\nc1,1\n"))
    assert ok.ok


@pytest.mark.django_db
def test_a_customer_loaded_without_a_date_is_first_seen_at_their_first_order(tenant_a, tmp_path) -> None:
    import datetime as dt

    from clmsite.tenancy import tenant_context
    from customers.models import Customer

    assert import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,email,created_at\nc1,a@example.com,\nc2,b@example.com,2024-01-01\n")).ok
    orders = "customer_id,order_id,ordered_at,amount\nc1,o1,2024-03-05,10\nc1,o2,2024-02-01,10\nc2,o3,2024-03-05,10\n"
    assert import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", orders)).ok
    with tenant_context(tenant_a):
        seen = dict(Customer.objects.values_list("external_id", "first_seen"))
    assert seen == {"c1": dt.datetime(2024, 2, 1, tzinfo=dt.UTC), "c2": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}  # a given date is kept
    again = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", orders))
    assert again.ok and again.unchanged == 3


def test_an_actions_reason_names_the_value_tier_once() -> None:
    from campaigns.models import Action, PlaybookRule
    from campaigns.playbook import _reason

    rule = PlaybookRule(name="VIP care", tiers=["high"], action=Action.VIP_CARE)
    row = {"stage_reason": "loyal: 6 orders, top value tier", "tier": "high", "recent_sentiment": None, "churn": 0.2, "value": 500.0, "if_ordering": 625.0, "usual": 0.4, "value_at_risk": 125.0}
    assert _reason(rule, row) == "VIP care — loyal: 6 orders, top value tier; value at risk 125 (40% likely to order at their usual pace, 80% now, × 625 if they order)"
    assert "; high predicted-value tier;" in _reason(rule, {**row, "stage_reason": "active: 3 orders"})


def test_a_page_without_an_icon_link_finds_the_favicon(client) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 301 and answer["Location"].endswith("/favicon.svg")


@pytest.mark.django_db
def test_the_month_in_progress_is_marked_partial_on_the_dashboard_chart(tenant_a) -> None:
    import datetime as dt

    from customers.services.imports import import_rows
    from customers.services.queries import dashboard_stats

    today = dt.datetime.now(dt.UTC)
    import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "10"},
                                     {"customer_id": "c1", "order_id": "o2", "ordered_at": today.strftime("%Y-%m-%d"), "amount": "10"}])
    monthly = dashboard_stats(tenant_a)["monthly"]
    assert [(m["month"], m["partial"]) for m in (monthly[0], monthly[-1])] == [("2024-01", False), (today.strftime("%Y-%m"), True)]
    assert not any(m["partial"] for m in monthly[:-1]) and sum(m["orders"] for m in monthly) == 2  # the months between: empty


@pytest.mark.django_db
def test_bulk_rows_that_repeat_an_id_are_asked_for_again_as_rows(tenant_a) -> None:
    from customers.services.imports import import_rows

    result = import_rows(tenant_a, "customers", [{"customer_id": "c1", "email": "a@example.com"}, {"customer_id": "c1", "email": "b@example.com"}])
    assert not result.ok and result.message.endswith("Fix it and send the rows again.")


def test_bgnbd_counts_a_day_with_orders_as_one_purchase() -> None:
    import pandas as pd

    from modeling.families.bgnbd import rfm_summary

    orders = pd.DataFrame({"customer": [1, 1, 1, 1, 2], "amount": [10.0, 5.0, 20.0, 4.0, 7.0], "ordered_at": pd.to_datetime(
        ["2024-01-01 09:00", "2024-01-01 18:00", "2024-01-08 10:00", "2024-01-08 11:00", "2024-01-03 00:00"], utc=True)})
    summary = rfm_summary(orders, pd.Timestamp("2024-01-31", tz="UTC"))
    assert summary.loc[1, "frequency"] == 1.0 and summary.loc[1, "monetary_value"] == 24.0  # the second day's two orders
    assert summary.loc[1, "recency"] == 1.0 and summary.loc[1, "total_spent"] == 39.0  # a week, in weeks
    assert summary.loc[2, "frequency"] == 0.0


@pytest.mark.django_db
def test_the_customer_pages_rhythm_counts_days_with_an_order(tenant_a, client, alice) -> None:
    from clmsite.tenancy import tenant_context
    from customers.models import Customer
    from customers.services.imports import import_rows

    rows = [{"customer_id": "c1", "order_id": f"o{i}", "ordered_at": f"2024-03-01T{9 + i:02d}:00:00Z", "amount": "10"} for i in range(3)]
    import_rows(tenant_a, "orders", rows)
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    client.force_login(alice)
    page = client.get(f"/customers/{customer.pk}/").content.decode()
    assert "no repeat yet" in page and "usually every" not in page
    import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o9", "ordered_at": "2024-03-11", "amount": "10"}])
    assert "usually every 10 days" in client.get(f"/customers/{customer.pk}/").content.decode()


@pytest.mark.django_db
def test_a_bulk_attribute_that_is_a_json_object_or_list_is_a_row_error(tenant_a) -> None:
    from clmsite.tenancy import tenant_context
    from customers.models import Customer
    from customers.services.imports import import_rows

    result = import_rows(tenant_a, "customers", [{"customer_id": "c1", "prefs": {"a": 1}}, {"customer_id": "c2", "tags": ["x"], "vip": True}])
    assert [(e.row, e.column) for e in result.errors] == [(1, "prefs"), (2, "tags")]  # JSON rows count from 1
    assert "not a JSON object" in result.errors[0].message
    ok = import_rows(tenant_a, "customers", [{"customer_id": "c2", "vip": True, "visits": 3}])
    assert ok.ok
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c2").attributes == {"vip": "true", "visits": "3"}


@pytest.mark.django_db
def test_the_lifecycle_command_rebuilds_stored_history_on_request(tenant_a, settings, tmp_path) -> None:
    from django.core.management import call_command

    from clmsite.tenancy import tenant_context
    from modeling.insights import refresh_insights
    from modeling.models import StageSnapshot
    from tests.test_modeling import END, scored_demo

    scored_demo(tenant_a, settings, tmp_path, customers=200, seed=6)
    refresh_insights(tenant_a, END, backfill_months=2)
    with tenant_context(tenant_a):
        first = StageSnapshot.objects.order_by("as_of").values_list("as_of", flat=True).first()
        StageSnapshot.objects.filter(as_of=first).update(reason="written by an older rule")
    call_command("lifecycle", "--tenant", tenant_a.slug, "--as-of", END.isoformat(), "--backfill-months", "2")
    with tenant_context(tenant_a):
        assert StageSnapshot.objects.filter(as_of=first, reason="written by an older rule").exists()  # missing dates only
    call_command("lifecycle", "--tenant", tenant_a.slug, "--as-of", END.isoformat(), "--backfill-months", "2", "--rebuild-history")
    with tenant_context(tenant_a):
        assert not StageSnapshot.objects.filter(reason="written by an older rule").exists()
        assert StageSnapshot.objects.filter(as_of=first).count() > 100
