"""Session 21's follow-ups: what a merchant and an integrator met."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.conftest import scoped

pytestmark = pytest.mark.django_db


def test_an_empty_filter_is_a_400_not_every_row(api_a, shop_a_data) -> None:
    for name in ("external_id", "email", "country", "min_orders"):
        response = api_a.get("/api/v1/customers/", {name: ""})
        assert response.status_code == 400 and response.json() == {name: ["Empty: give a value, or leave the parameter out."]}, name
    assert api_a.get("/api/v1/customers/", {"external_id": "  "}).status_code == 400
    assert api_a.get("/api/v1/orders/", {"status": ""}).status_code == 400
    assert api_a.get("/api/v1/customers/", {"external_id": "c1"}).json()["count"] == 1
    assert api_a.get("/api/v1/customers/", {"search": "", "ordering": ""}).json()["count"] == 2  # search and ordering are not filters


def test_a_rescoring_tiers_its_finished_rows_by_the_last_ranking_until_it_ranks_them_again(tenant_a) -> None:
    from customers.models import Customer
    from modeling.models import Prediction
    from modeling.scoring import _prediction, assign_value_tiers, provisional_tiers

    day = dt.date(2024, 6, 1)
    with scoped(tenant_a):
        customers = [Customer.objects.create(external_id=f"c{i}") for i in range(10)]
        Prediction.objects.bulk_create([_prediction(tenant_a, c.pk, day, 90, 0.5, 1.0, float(10 * i), [], {}, "") for i, c in enumerate(customers)])
    assert assign_value_tiers(tenant_a, day)
    with scoped(tenant_a):
        tiers = dict(Prediction.objects.values_list("predicted_value", "value_tier"))
        assert tiers[Decimal("90")] == "high" and tiers[Decimal("50")] == "medium" and tiers[Decimal("0")] == "low"
        rows = [_prediction(tenant_a, customers[0].pk, day, 90, 0.5, 1.0, value, [], {}, "") for value in (500.0, 60.0, 1.0)]
        provisional_tiers(rows, dt.date(2024, 7, 1))  # a later date: the last ranked one's floors
        assert [row.value_tier for row in rows] == ["high", "medium", "low"]
        fresh = [_prediction(tenant_a, customers[0].pk, day, 90, 0.5, 1.0, 500.0, [], {}, "")]
        provisional_tiers(fresh, dt.date(2024, 5, 1))  # nothing ranked yet on or before it
        assert fresh[0].value_tier == "low"


def test_a_record_sent_back_as_the_api_answered_it_is_refused_with_what_to_send_instead(api_a) -> None:
    order = {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01", "amount": "5", "external_id": "o1", "id": 3}
    answer = api_a.post("/api/v1/orders/bulk/", [order], format="json").json()
    assert not answer["ok"] and {(e["column"], e["message"]) for e in answer["errors"]} == {
        ("external_id", "is how the API answers the order's id; send it as order_id"),
        ("id", "is the API's own number for the order; the shop's id goes in order_id")}
    review = {"customer_id": "c1", "review_id": "r1", "created_at": "2024-01-01", "text": "fine", "sentiment": "positive"}
    answer = api_a.post("/api/v1/reviews/bulk/", [review], format="json").json()
    assert answer["errors"] == [{"row": 1, "column": "sentiment", "message": "is read from the review's text by a scoring; leave it out"}]
    assert api_a.post("/api/v1/products/bulk/", [{"sku": "p1", "id": 1}], format="json").status_code == 400
    assert api_a.post("/api/v1/products/bulk/", [{"sku": "p1", "id": None, "updated_at": ""}], format="json").json()["ok"]  # blank: nothing to lose


def test_patch_refuses_the_attribute_names_a_bulk_row_refuses(api_a) -> None:
    created = api_a.post("/api/v1/customers/", {"customer_id": "c1"}, format="json").json()
    patched = api_a.patch(f"/api/v1/customers/{created['id']}/", {"attributes": {"total_spent": "5", "id": "7", "tier": "gold"}}, format="json")
    assert patched.status_code == 400 and patched.json()["attributes"] == {
        "total_spent": ["total_spent is computed from the customer's orders; leave it out"],
        "id": ["id is the API's own number for the customer; the shop's id goes in customer_id"]}
    bulk = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "c1", "attributes": {"total_spent": "5"}}], format="json").json()
    assert bulk["errors"] == [{"row": 1, "column": "attributes", "message": "'total_spent' in attributes is computed from the customer's orders; leave it out"}]


def test_an_unknown_key_in_a_line_does_not_hide_the_orders_other_errors(api_a) -> None:
    body = {"customer_id": "c1", "order_id": "o1", "ordered_at": "bad", "lines": [{"sku": "s1", "amount": "1", "zzz": 1}]}
    answer = api_a.post("/api/v1/orders/", body, format="json")
    assert answer.status_code == 400
    errors = answer.json()
    assert errors["lines"] == ["Item 1: zzz: Unknown field; a line has sku, quantity, amount, product_name, category."]
    assert "ordered_at" in errors and api_a.get("/api/v1/orders/").json()["count"] == 0


def test_a_check_is_echoed_on_a_refused_request_and_two_different_asks_are_a_400(api_a) -> None:
    refused = api_a.post("/api/v1/customers/bulk/?dry_run=true", {"rows": [{"customer_id": "c1"}], "validate": True}, format="json").json()
    assert not refused["ok"] and refused["dry_run"] is True
    malformed = api_a.generic("POST", "/api/v1/customers/bulk/?dry_run=true", "[{", content_type="application/json").json()
    assert malformed["dry_run"] is True and not malformed["ok"]
    both = api_a.post("/api/v1/customers/bulk/?dry_run=false", {"rows": [{"customer_id": "c1"}], "dry_run": True}, format="json")
    assert both.status_code == 400 and both.json()["errors"][0]["column"] == "dry_run"
    assert api_a.post("/api/v1/customers/bulk/?dry_run=1", {"rows": [{"customer_id": "c1"}], "dry_run": True}, format="json").json()["dry_run"] is True
    assert api_a.get("/api/v1/customers/").json()["count"] == 0


def test_an_upload_whose_form_and_query_disagree_on_the_check_is_a_400(api_a) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("c.csv", b"customer_id\nc1\n", content_type="text/csv")
    response = api_a.post("/api/v1/imports/?dry_run=false", {"kind": "customers", "file": upload, "dry_run": "true"}, format="multipart")
    assert response.status_code == 400 and "dry_run" in response.json()


def test_a_customer_not_scored_yet_is_told_apart_from_a_missing_one(api_a, api_b) -> None:
    created = api_a.post("/api/v1/customers/", {"customer_id": "c1"}, format="json").json()
    unscored = api_a.get(f"/api/v1/insights/{created['id']}/")
    assert unscored.status_code == 404 and "no insight yet" in unscored.json()["detail"]
    for client, pk in ((api_b, created["id"]), (api_a, created["id"] + 1000)):  # another shop's and a missing id: the same plain 404
        assert client.get(f"/api/v1/insights/{pk}/").json() == {"detail": "Not found."}
    assert api_b.get(f"/api/v1/insights/{created['id']}/stages/").json() == {"detail": "Not found."}


def test_a_customer_loaded_today_without_a_date_has_no_stage_history_before_it(api_a, tenant_a) -> None:
    from django.utils import timezone

    from modeling import lifecycle
    from modeling.features import load_history

    api_a.post("/api/v1/orders/", {"customer_id": "old", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "10"}, format="json")
    new = api_a.post("/api/v1/customers/", {"customer_id": "new"}, format="json").json()
    today = timezone.now().date()
    history = load_history(tenant_a, ceiling=today)
    thresholds = lifecycle.derive_thresholds(history, today, {})
    past = lifecycle.stages_as_of(history, dt.date(2024, 6, 30), lifecycle.derive_thresholds(history, dt.date(2024, 6, 30), {}))
    assert new["id"] not in past.index and len(past) == 1
    now = lifecycle.stages_as_of(history, today, thresholds)
    assert now.loc[new["id"], "stage"] == "prospect" and now.loc[new["id"], "since"] == today


def test_a_json_number_is_read_as_written_and_a_body_not_in_utf8_is_told_so(api_a) -> None:
    sent = b'[{"customer_id": 1.00000000000000000001}, {"customer_id": 5000.0}, {"customer_id": 7e2}]'
    answer = api_a.generic("POST", "/api/v1/customers/bulk/", sent, content_type="application/json").json()
    assert answer["ok"] and set(answer["ids"]) == {"1.00000000000000000001", "5000", "700"}
    amounts = api_a.post("/api/v1/orders/bulk/", [{"customer_id": "c", "order_id": "o", "ordered_at": "2024-01-01", "amount": 1e-05}], format="json").json()
    assert amounts["errors"][0]["column"] == "amount" and "0.00001" in amounts["errors"][0]["message"]
    utf16 = api_a.generic("POST", "/api/v1/customers/bulk/", '[{"customer_id": "x"}]'.encode("utf-16"), content_type="application/json")
    assert utf16.status_code == 400 and "send JSON encoded as UTF-8" in utf16.json()["detail"] and "codec" not in utf16.json()["detail"]


def test_two_spellings_of_one_accented_id_are_one_customer(api_a) -> None:
    import unicodedata

    composed, decomposed = (unicodedata.normalize(form, "QA-José") for form in ("NFC", "NFD"))
    assert composed != decomposed
    first = api_a.post("/api/v1/customers/bulk/", [{"customer_id": composed, "name": decomposed}], format="json").json()
    again = api_a.post("/api/v1/customers/bulk/", [{"customer_id": decomposed, "name": composed}], format="json").json()
    assert first["created"] == 1 and again["unchanged"] == 1 and again["ids"] == first["ids"] == {composed: again["ids"][composed]}
    assert api_a.get("/api/v1/customers/").json()["results"][0]["name"] == composed


def test_a_scoring_of_an_earlier_date_keeps_the_pages_on_the_later_one(tenant_a, settings, tmp_path) -> None:
    from customers.models import Customer
    from modeling.insights import insights_summary, latest_scoring_date, refresh_after_scoring
    from modeling.models import CustomerInsight

    with scoped(tenant_a):
        customer = Customer.objects.create(external_id="c1")
        CustomerInsight.objects.create(customer=customer, as_of=dt.date(2024, 12, 1), stage="active", stage_since=dt.date(2024, 11, 1),
                                       stage_reason="x", action="nurture", action_reason="x")
    summary = refresh_after_scoring(tenant_a, dt.date(2024, 6, 30))
    assert summary["kept_as_of"] == "2024-12-01" and latest_scoring_date(tenant_a) == dt.date(2024, 12, 1)
    assert insights_summary(summary).startswith("The pages still show 2024-12-01, a later date")
    with scoped(tenant_a):
        assert CustomerInsight.objects.get().as_of == dt.date(2024, 12, 1)


def test_a_bare_majority_in_one_stage_does_not_name_a_segment() -> None:
    from modeling.segments import name_for

    stats = {"size": 2349, "mean_value": 200.0, "value_index": 1.0, "median_value_index": 1.0, "median_orders": 6.0, "population_orders_p75": 4.0,
             "dominant_stage": "lapsed", "dominant_stage_share": 0.578, "top_categories": []}
    assert name_for(stats) == "Frequent buyers"  # 16% loyal and 11% active among them: not "Mostly lapsed"
    assert name_for({**stats, "dominant_stage_share": 0.7}) == "Mostly lapsed frequent buyers"
    assert name_for({**stats, "dominant_stage_share": 0.9}) == "Lapsed frequent buyers"


def test_the_rfm_group_of_sign_ups_shows_a_chance_of_a_first_order_not_a_churn_risk(client, alice, tenant_a) -> None:
    from customers.models import Customer
    from modeling.models import CustomerInsight, Segment

    with scoped(tenant_a):
        group = Segment.objects.create(kind=Segment.Kind.RFM, key="no_order", name="No order yet")
        CustomerInsight.objects.create(customer=Customer.objects.create(external_id="p1"), as_of=dt.date(2024, 6, 1), stage="prospect",
                                       stage_since=dt.date(2024, 5, 1), stage_reason="no purchase yet", action="nurture", action_reason="x",
                                       rfm_segment=group, churn_probability=0.96)
    client.force_login(alice)
    page = client.get(f"/segments/{group.pk}/").content.decode()
    assert 'data-testid="first-order-chance"' in page and '<span class="label">Churn risk</span>' not in page and ">4%<" in page


def test_the_stage_timeline_adds_the_stages_the_monthly_snapshots_fell_between(tenant_a, api_a, alice, client) -> None:
    from customers.models import Customer
    from customers.services.queries import stage_changes
    from modeling.models import StageSnapshot

    rows = [{"customer_id": "c1", "order_id": f"o{i}", "ordered_at": day, "amount": "20"} for i, day in enumerate(("2026-09-06", "2026-09-25", "2026-11-30"))]
    assert api_a.post("/api/v1/orders/bulk/", rows, format="json").json()["ok"]
    with scoped(tenant_a):
        customer = Customer.objects.get(external_id="c1")
        for as_of, stage, since, reason in (("2026-09-30", "active", "2026-09-25", "active: last order that day, 2 orders"),
                                            ("2026-10-31", "at_risk", "2026-10-24", "overdue: 29 days vs. their usual 19"),
                                            ("2026-11-30", "reactivated", "2026-11-30", "reactivated: came back that day after 66 days away")):
            StageSnapshot.objects.create(customer=customer, as_of=dt.date.fromisoformat(as_of), stage=stage, since=dt.date.fromisoformat(since), reason=reason)
    timeline = stage_changes(tenant_a, customer)
    assert [(c["stage"], c["since"], bool(c.get("inferred"))) for c in timeline] == [
        ("reactivated", dt.date(2026, 11, 30), False), ("lapsed", None, True), ("at_risk", dt.date(2026, 10, 24), False),
        ("active", dt.date(2026, 9, 25), False), ("new", dt.date(2026, 9, 6), True)]
    assert timeline[1]["reason"] == "away long enough to count as lapsed after the order of 2026-09-25, between two monthly snapshots"


def test_the_mean_gap_factor_names_the_usual_gap_where_they_differ() -> None:
    import pandas as pd

    from modeling.explain import describe

    assert describe("gap_mean", pd.Series({"gap_mean": 7.2, "gap_median": 5.8, "order_days": 4}), []) == "on average 7 days between orders, usually 6 days"
    assert describe("gap_mean", pd.Series({"gap_mean": 7.8, "gap_median": 8.1, "order_days": 4}), []) == "on average 8 days between orders"


def test_a_patch_refuses_a_value_in_the_words_an_import_uses(api_a) -> None:
    review = {"customer_id": "c1", "review_id": "r1", "created_at": "2024-01-01", "text": "fine", "rating": "4"}
    assert api_a.post("/api/v1/reviews/bulk/", [review], format="json").json()["ok"]
    pk = api_a.get("/api/v1/reviews/").json()["results"][0]["id"]
    assert api_a.patch(f"/api/v1/reviews/{pk}/", {"rating": 6}, format="json").json()["rating"] == ["is not a rating from 1 to 5"]
    customer = api_a.get("/api/v1/customers/").json()["results"][0]["id"]
    long = api_a.patch(f"/api/v1/customers/{customer}/", {"name": "x" * 5000}, format="json").json()["name"]
    assert long == ["is longer than the limit: the limit is 200 characters"]


def test_rfm_groups_and_saved_segments_carry_statistics(tenant_a, api_a, settings) -> None:
    from customers.services.imports import import_rows
    from modeling.insights import refresh_insights

    settings.CLM_SEGMENT_EMBEDDINGS = False
    rows = [{"customer_id": f"c{n}", "order_id": f"c{n}-{i}", "ordered_at": f"2026-0{1 + i}-1{n % 9}", "amount": "40"} for n in range(12) for i in range(1 + n % 3)]
    assert import_rows(tenant_a, "orders", rows).ok
    saved = api_a.post("/api/v1/segments/", {"name": "Two orders or more", "filters": {"orders_min": 2}}, format="json").json()
    refresh_insights(tenant_a, dt.date(2026, 6, 30), backfill_months=0)
    listed = api_a.get("/api/v1/segments/", {"kind": "rfm"}).json()["results"]
    assert listed and all(s["stats"]["size"] == s["size"] and "stages" in s["stats"] for s in listed if s["size"])
    stats = api_a.get(f"/api/v1/segments/{saved['id']}/").json()["stats"]
    assert stats["size"] == 8 and stats["as_of"] == "2026-06-30" and abs(sum(stats["stages"].values()) - 1) < 0.01
    changed = api_a.patch(f"/api/v1/segments/{saved['id']}/", {"filters": {"orders_min": 3}}, format="json").json()
    assert changed["size"] == changed["stats"]["size"] == 4  # the new filters' members, not the old ones' until the next scoring


def test_a_loyal_customer_who_becomes_active_is_told_why() -> None:
    import pandas as pd

    from modeling import lifecycle
    from modeling.features import history_from_frames

    # c1 spent most of three buyers until c2 and c3 outspent them; c1 kept ordering.
    orders = pd.DataFrame({"customer": [1, 1, 1, 2, 2, 3, 3], "amount": [300.0, 300.0, 300.0, 100.0, 900.0, 50.0, 900.0],
                           "ordered_at": pd.to_datetime(["2026-05-01", "2026-06-01", "2026-06-20", "2026-05-01", "2026-06-25", "2026-05-02", "2026-06-26"], utc=True)})
    history = history_from_frames(orders)
    day = dt.date(2026, 6, 30)
    previous = pd.DataFrame({"stage": ["loyal"], "as_of": [dt.date(2026, 5, 31)], "since": [dt.date(2026, 5, 1)], "reason": ["loyal: 2 orders, …"]},
                            index=pd.Index([1], name="customer"))
    stages = lifecycle.stages_as_of(history, day, lifecycle.derive_thresholds(history, day, {}), previous=previous)
    assert stages.loc[1, "stage"] == "active" and stages.loc[1, "entry_reason"].endswith("; no longer in the shop's top 20% of spenders")
    assert stages.loc[2, "stage"] == "loyal" and "no longer" not in stages.loc[2, "entry_reason"]


def test_a_query_is_read_as_utf8_whatever_charset_the_body_declares(api_a) -> None:
    answer = api_a.generic("POST", "/api/v1/customers/bulk/?dry_run=true", '[{"customer_id": "x"}]'.encode("utf-16"),
                           content_type="application/json; charset=utf-16")
    assert answer.status_code == 400 and answer.json()["dry_run"] is True and "UTF-16 byte order mark" in answer.json()["detail"]
    latin = api_a.generic("POST", "/api/v1/customers/bulk/", '[{"customer_id": "caf\u00e9"}]'.encode("latin-1"), content_type="application/json")
    assert latin.status_code == 400 and "0xE9" in latin.json()["detail"] and "UTF-16" not in latin.json()["detail"]
    assert api_a.get("/api/v1/customers/").json()["count"] == 0


def test_too_many_or_too_long_query_parameters_are_a_400(api_a) -> None:
    many = api_a.get("/api/v1/customers/?" + "&".join(f"p{i}=1" for i in range(1001)))
    assert many.status_code == 400 and "more than 1,000 query parameters" in many.json()["detail"]
    long = api_a.get("/api/v1/customers/", {"search": "x" * 50_000})
    assert long.status_code == 400 and long.json() == {"search": ["50,000 characters long; a query parameter takes at most 1,000."]}


def test_filters_and_search_find_an_accented_id_typed_either_way(api_a) -> None:
    import unicodedata

    composed, decomposed = (unicodedata.normalize(form, "José") for form in ("NFC", "NFD"))
    api_a.post("/api/v1/customers/bulk/", [{"customer_id": composed, "name": composed}], format="json")
    for params in ({"external_id": decomposed}, {"search": decomposed}, {"external_id": composed}):
        assert api_a.get("/api/v1/customers/", params).json()["count"] == 1, params


def test_stages_recomputed_after_a_scoring_leave_out_what_was_imported_since(tenant_a, settings) -> None:
    from customers.models import Customer
    from customers.services.imports import import_rows
    from modeling.insights import refresh_insights
    from modeling.models import CustomerInsight, Prediction
    from modeling.scoring import _prediction

    settings.CLM_SEGMENT_EMBEDDINGS = False
    day = dt.date(2026, 6, 30)
    assert import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2026-01-10", "amount": "40"},
                                            {"customer_id": "c1", "order_id": "o2", "ordered_at": "2026-02-10", "amount": "40"}]).ok
    with scoped(tenant_a):
        c1 = Customer.objects.get(external_id="c1")
        Prediction.objects.bulk_create([_prediction(tenant_a, c1.pk, day, 90, 0.05, 0.05, 2.0, [], {}, "")])
    # An order dated on the scoring date, imported after the scoring, and a new customer
    assert import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o3", "ordered_at": "2026-06-30", "amount": "40"},
                                            {"customer_id": "c2", "order_id": "o4", "ordered_at": "2026-06-29", "amount": "40"}]).ok
    refresh_insights(tenant_a, day, backfill_months=0)
    with scoped(tenant_a):
        insight = CustomerInsight.objects.get(customer=c1)
        assert insight.stage_reason == "overdue: 140 days vs. their usual 31"  # the order of June 30, imported after the scoring, is not seen
        assert not CustomerInsight.objects.filter(customer__external_id="c2").exists()  # waits for the next scoring


def test_every_too_long_name_or_text_is_refused_in_the_same_words(api_a) -> None:
    limit = "is longer than the limit: the limit is"
    segment = api_a.post("/api/v1/segments/", {"name": "x" * 500, "filters": {}}, format="json").json()
    campaign = api_a.post("/api/v1/campaigns/", {"name": "x" * 500, "action": "win_back"}, format="json").json()
    assert segment["name"][0].startswith(limit) and campaign["name"][0].startswith(limit)
    review = {"customer_id": "c1", "review_id": "r1", "created_at": "2024-01-01", "text": "fine"}
    assert api_a.post("/api/v1/reviews/bulk/", [review], format="json").json()["ok"]
    pk = api_a.get("/api/v1/reviews/").json()["results"][0]["id"]
    assert api_a.patch(f"/api/v1/reviews/{pk}/", {"text": "x" * 20_001}, format="json").json()["text"] == [f"{limit} 20000 characters"]
    lines = api_a.post("/api/v1/orders/bulk/", [{"customer_id": "c", "order_id": "o", "ordered_at": "2024-01-01", "amount": "5", "unit_price": "5", "lines": "x"}],
                       format="json").json()
    assert {e["column"] for e in lines["errors"]} == {"unit_price", "lines"}


def test_a_segments_members_download_as_csv(client, alice, tenant_a) -> None:
    import csv
    import io

    from customers.models import Customer
    from modeling.models import CustomerInsight, Segment

    with scoped(tenant_a):
        group = Segment.objects.create(kind=Segment.Kind.RFM, key="champions", name="Champions")
        for key, priority in (("c1", 5.0), ("c2", 50.0)):
            CustomerInsight.objects.create(customer=Customer.objects.create(external_id=key, name=f"=cmd {key}"), as_of=dt.date(2024, 6, 1), stage="active",
                                           stage_since=dt.date(2024, 5, 1), stage_reason="x", action="nurture", action_reason="x", rfm_segment=group, priority=priority)
    client.force_login(alice)
    assert 'data-testid="segment-csv"' in client.get(f"/segments/{group.pk}/").content.decode()
    response = client.get(f"/segments/{group.pk}/", {"format": "csv"})
    assert response["Content-Disposition"] == f'attachment; filename="segment-{group.pk}-champions.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [row[0] for row in rows[1:]] == ["c2", "c1"] and rows[1][1] == "'=cmd c2"  # highest value at risk first; a formula escaped


def test_a_prospect_would_spend_the_shops_typical_first_order(tenant_a) -> None:
    import pandas as pd

    from modeling.features import features_as_of, history_from_frames
    from modeling.insights import _Actions

    orders = pd.DataFrame({"customer": [1, 1, 2, 3], "amount": [100.0, 2000.0, 150.0, 200.0],
                           "ordered_at": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-01-05", "2026-01-09"], utc=True)})
    history = history_from_frames(orders)
    day = dt.date(2026, 6, 30)
    actions = _Actions(tenant_a, history, day, features_as_of(history, day), pd.DataFrame())
    spend, usual = actions.spend_and_usual_chance(99)  # no order yet
    assert spend == 150.0 and usual == 0.0  # the median first order (100, 150, 200), not the mean order (612.50)


def test_the_customer_list_downloads_as_filtered_and_sorted(client, alice, shop_a_data) -> None:
    import csv
    import io

    client.force_login(alice)
    page = client.get("/customers/", {"q": "c", "sort": "external_id"}).content.decode()
    assert 'data-testid="customers-csv"' in page and "?q=c&amp;sort=external_id&amp;format=csv" in page
    response = client.get("/customers/", {"q": "c", "sort": "-external_id", "format": "csv"})
    assert response["Content-Disposition"] == 'attachment; filename="customers.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [row["customer_id"] for row in rows] == ["c2", "c1"] and (rows[0]["orders"], rows[1]["orders"], rows[1]["total_spent"]) == ("1", "2", "65.50")


def test_the_customer_list_csv_writes_times_on_the_shops_clock_and_labels_beside_codes(client, alice, shop_a_data) -> None:
    """Session 24: the list showed the 6th where the file said 2026-12-07T07:45:00+00:00."""
    import csv
    import io

    shop_a_data.time_zone = "America/Los_Angeles"
    shop_a_data.save()
    client.force_login(alice)
    response = client.get("/customers/", {"sort": "external_id", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0]["last_order_at"] == "2024-03-01T02:00:00-08:00"  # c1's last order, 10:00 UTC
    assert {"stage_label", "value_tier_label"} <= set(rows[0])
