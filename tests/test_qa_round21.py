"""Session 22's follow-ups: what a merchant and an integrator met."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _walk(api, url: str, params: dict, change=None) -> list[int]:
    """Every id a client reads by following ``next`` from the first page; ``change`` runs after page 1."""
    page = api.get(url, params).json()
    seen = [row["id"] for row in page["results"]]
    if change:
        change(seen)
    while page["next"]:
        response = api.get(page["next"])
        assert response.status_code == 200, response.json()
        page = response.json()
        assert page["previous"] is None and page["count"] >= len(page["results"])
        seen += [row["id"] for row in page["results"]]
    return seen


def test_a_sync_walk_in_updated_at_order_reads_every_row_when_one_changes_midway(api_a) -> None:
    # One bulk request: six orders that share one updated_at, so only the id orders them.
    rows = [{"customer_id": "c1", "order_id": f"o{i}", "ordered_at": "2024-01-01", "amount": "5"} for i in range(6)]
    assert api_a.post("/api/v1/orders/bulk/", rows, format="json").json()["ok"]
    ids = sorted(row["id"] for row in api_a.get("/api/v1/orders/").json()["results"])

    def refund_the_first(seen: list[int]) -> None:
        assert api_a.patch(f"/api/v1/orders/{seen[0]}/", {"status": "refunded"}, format="json").status_code == 200

    seen = _walk(api_a, "/api/v1/orders/", {"ordering": "updated_at", "page_size": 2}, refund_the_first)
    assert sorted(set(seen)) == ids  # a page number would have skipped the third order
    assert seen[-1] == seen[0]  # the changed order is read again, last, with its new state
    assert "after=" in api_a.get("/api/v1/orders/", {"ordering": "updated_at", "page_size": 2}).json()["next"]
    assert "page=2" in api_a.get("/api/v1/orders/", {"ordering": "amount", "page_size": 2}).json()["next"]  # other orderings keep page numbers


def test_after_is_refused_out_of_a_sync_walk_and_when_malformed(api_a, shop_a_data) -> None:
    cases = [({"after": "2024-01-01T00:00:00.000000Z_1"}, "add ?ordering=updated_at"),
             ({"after": "2024-01-01T00:00:00.000000Z_1", "ordering": "updated_at", "page": "2"}, "not both"),
             ({"after": "yesterday", "ordering": "updated_at"}, "Not a position"),
             ({"after": "2024-01-01T00:00:00+01:00_1", "ordering": "updated_at"}, "Not a position"),
             ({"after": "2024-13-01T00:00:00.000000Z_1", "ordering": "updated_at"}, "Not a position")]
    for params, words in cases:
        response = api_a.get("/api/v1/customers/", params)
        assert response.status_code == 400 and words in response.json()["after"][0], (params, response.json())
    first = api_a.get("/api/v1/customers/", {"ordering": "updated_at", "page_size": 1}).json()
    second = api_a.get(first["next"]).json()
    assert second["count"] == first["count"] == 2 and second["results"][0]["id"] != first["results"][0]["id"] and second["next"] is None
    assert api_a.get("/api/v1/segments/", {"after": "2024-01-01T00:00:00.000000Z_1"}).status_code == 400  # not a sync list


def _first_seen(api, customer_id: str) -> str:
    return api.get("/api/v1/customers/", {"external_id": customer_id}).json()["results"][0]["first_seen"]


def test_first_seen_moves_back_to_history_loaded_later_and_never_after_an_order(api_a) -> None:
    def order(day: str, status: str = "completed", customer: str = "late") -> dict:
        return {"customer_id": customer, "order_id": f"{customer}-{day}", "ordered_at": day, "amount": "5", "status": status}

    assert api_a.post("/api/v1/orders/bulk/", [order("2026-11-20")], format="json").json()["ok"]
    assert _first_seen(api_a, "late").startswith("2026-11-20")
    assert api_a.post("/api/v1/orders/bulk/", [order("2024-03-05", "refunded")], format="json").json()["ok"]  # a backfill: not a sale, still a sighting
    assert _first_seen(api_a, "late").startswith("2024-03-05")
    review = {"customer_id": "late", "review_id": "r1", "created_at": "2023-01-02", "text": "fine"}
    assert api_a.post("/api/v1/reviews/bulk/", [review], format="json").json()["ok"]
    assert _first_seen(api_a, "late").startswith("2023-01-02")
    assert api_a.post("/api/v1/orders/bulk/", [order("2022-05-05", customer="reviewer")], format="json").json()["ok"]
    # A sign-up date after the customer's first order (or the row's own created_at sent back): first seen stays at the order.
    rows = [{"customer_id": "reviewer", "created_at": "2026-12-07T15:22:45.004718Z"}, {"customer_id": "new", "created_at": "2025-01-01"}]
    first = api_a.post("/api/v1/customers/bulk/", rows, format="json").json()
    assert first["ok"] and (first["created"], first["updated"]) == (1, 0), first
    assert _first_seen(api_a, "reviewer").startswith("2022-05-05") and _first_seen(api_a, "new").startswith("2025-01-01")
    again = api_a.post("/api/v1/customers/bulk/", rows, format="json").json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2), again
    earlier = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "reviewer", "created_at": "2020-01-01"}], format="json").json()
    assert earlier["updated"] == 1 and _first_seen(api_a, "reviewer").startswith("2020-01-01")  # an earlier sign-up date still wins


def test_a_host_the_server_does_not_serve_is_a_json_400_on_the_api(api_a, client) -> None:
    response = api_a.get("/api/v1/customers/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400 and response["Content-Type"] == "application/json" and "Host" in response.json()["detail"]
    assert client.get("/login/", HTTP_HOST="evil.example.com").status_code == 400  # the pages keep Django's own


def test_stored_expected_orders_are_never_below_the_stored_chance_to_buy(tenant_a) -> None:
    import datetime as dt

    from customers.models import Customer
    from modeling.scoring import _prediction
    from tests.conftest import scoped

    with scoped(tenant_a):
        customer = Customer.objects.create(external_id="c1")
    for chance in (0.022043, 0.12345678, 0.99999951):
        row = _prediction(tenant_a, customer.pk, dt.date(2024, 6, 1), 90, chance, chance, 1.0, [], {}, "")
        assert row.expected_orders >= row.purchase_probability, chance  # 0.022 below 0.022043 read as "fewer orders than the chance of one"


def test_a_running_campaigns_control_group_is_left_out_of_the_priorities_and_told_not_to_contact(tenant_a, alice, client) -> None:
    import csv
    import io

    from campaigns import services
    from campaigns.models import Campaign, CampaignMember
    from tests.conftest import scoped
    from tests.test_qa_round5 import insights

    insights(tenant_a, 40)
    with scoped(tenant_a):
        campaign = Campaign.objects.create(name="Win back", action="win_back", control_share=0.25)
    services.do_launch_campaign(tenant_a, campaign.pk)
    with scoped(tenant_a):
        control = list(CampaignMember.objects.filter(group="control").values_list("customer__external_id", "customer_id"))
    assert control
    client.force_login(alice)
    page = client.get("/priorities/").content.decode()
    assert f"{len(control)} customers held out as control by running campaigns are left out" in page
    exported = {row["customer_id"] for row in csv.DictReader(io.StringIO(b"".join(client.get("/priorities/?format=csv").streaming_content).decode("utf-8-sig")))}
    assert len(exported) == 40 - len(control) and not exported & {external for external, _ in control}
    # The chart counts the list's customers (session 24: it counted the control group too), and a
    # customer the campaign reaches is tagged with it, not to be contacted twice.
    response = client.get("/priorities/")
    assert sum(t["n"] for t in response.context["totals"]) == 40 - len(control)
    assert 'data-testid="in-campaign"' in page and "in campaign “Win back”" in page
    card = client.get(f"/customers/{control[0][1]}/").content.decode()
    assert 'data-testid="held-out"' in card and "held out as control by the running campaign" in card
    assert "not an action of this list" in client.get("/priorities/?action=bogus").content.decode()
    services.do_cancel_campaign(tenant_a, campaign.pk)
    assert "held out as control" not in client.get("/priorities/").content.decode()  # ended: they may be contacted again


def test_a_german_export_reads_e_mail_as_the_email_and_deutschland_as_de(tenant_a, tmp_path) -> None:
    from customers.services.imports import import_csv
    from tests.conftest import scoped, write_csv

    path = write_csv(tmp_path / "kunden.csv", "\ufeffCustomer ID;E-Mail;Name;Country\n"
                     + "K1;anna@example.de;Anna;Deutschland\nK2;jo@example.at;Jo;Österreich\nK3;x@example.es;X;España\n")
    result = import_csv(tenant_a, "customers", path)
    assert result.ok and not result.attribute_columns, result
    with scoped(tenant_a):
        from customers.models import Customer

        assert dict(Customer.objects.values_list("email", "country")) == {"anna@example.de": "DE", "jo@example.at": "AT", "x@example.es": "ES"}
        assert Customer.objects.filter(country="DE").get().attributes == {}


def test_rows_of_separators_only_under_a_spreadsheets_rows_are_skipped(tenant_a, tmp_path) -> None:
    from customers.services.imports import import_csv
    from tests.conftest import write_csv

    path = write_csv(tmp_path / "c.csv", "customer_id;email;name;country\nK1;a@example.de;A;DE\n;;;\n;;;;;\n  ; ;;\n")
    result = import_csv(tenant_a, "customers", path)
    assert result.ok and result.rows == 1 and result.created == 1, result


def test_a_draft_without_an_offer_for_everyone_says_who_gets_their_own_before_launch(tenant_a) -> None:
    from decimal import Decimal

    from campaigns import services
    from campaigns.models import Campaign
    from modeling.models import CustomerInsight
    from tests.conftest import scoped
    from tests.test_qa_round5 import insights

    insights(tenant_a, 5)
    with scoped(tenant_a):
        for amount, insight in zip((Decimal("3.00"), Decimal("10.00")), CustomerInsight.objects.order_by("pk"), strict=False):
            CustomerInsight.objects.filter(pk=insight.pk).update(action_offer=amount)
        campaign = Campaign.objects.create(name="Win back", action="win_back")
    note = services.preview(campaign)["note"]
    assert "No offer for everyone: 2 customers will get their own from the playbook (from USD 3.00 to 10.00 each) and 3 customers none." in note, note
    with scoped(tenant_a):
        Campaign.objects.filter(pk=campaign.pk).update(offer="10% off")
        campaign.refresh_from_db()
    assert "No offer for everyone" not in (services.preview(campaign)["note"] or "")


def test_the_moves_between_dates_outside_the_known_stages_are_clamped_to_them(tenant_a, alice, client) -> None:
    import datetime as dt

    from customers.models import Customer
    from modeling.models import StageSnapshot
    from tests.conftest import scoped

    with scoped(tenant_a):
        customer = Customer.objects.create(external_id="c1")
        for day, stage in ((dt.date(2025, 1, 31), "new"), (dt.date(2025, 6, 30), "active")):
            StageSnapshot.objects.create(customer=customer, as_of=day, stage=stage, since=day, reason="t")
    client.force_login(alice)
    page = client.get("/lifecycle/", {"start": "1990-01-01", "end": "2030-01-01"})
    assert page.status_code == 200 and (page.context["start"], page.context["end"]) == (dt.date(2025, 1, 31), dt.date(2025, 6, 30))
    assert "Stages are known from 2025-01-31 to 2025-06-30" in page.content.decode()


def test_the_shop_endpoint_says_what_the_answers_are_in_and_the_keys_role(tenant_a, tenant_b, api_a) -> None:
    from rest_framework.test import APIClient

    from clmsite.models import Role
    from tests.conftest import api_client_for

    shop = api_a.get("/api/v1/shop/")
    assert shop.status_code == 200 and shop.json() == {"slug": tenant_a.slug, "name": tenant_a.name, "currency": tenant_a.currency,
                                                        "horizon_days": tenant_a.horizon_days, "time_zone": "UTC", "role": "admin", "latest_scoring": None}
    assert api_client_for(tenant_b, Role.VIEWER).get("/api/v1/shop").json()["slug"] == tenant_b.slug  # the key's shop, with or without the slash
    assert api_a.get("/api/v1/shop/", {"slug": tenant_b.slug}).status_code == 400  # no way to name another shop
    assert api_a.post("/api/v1/shop/").status_code == 405
    assert APIClient().get("/api/v1/shop/").status_code == 401


def test_the_schema_marks_every_field_an_answer_always_has_required(api_a) -> None:
    schemas = api_a.get("/api/schema/?format=json").json()["components"]["schemas"]
    for name, fields in {"Customer": {"email", "name", "country", "attributes"}, "Order": {"status"}, "Product": {"price", "name"},
                         "Review": {"rating", "text"}, "PaginatedCustomerList": {"next", "previous", "count", "results"}}.items():
        assert fields <= set(schemas[name]["required"]), name
    assert "remove_attributes" not in schemas["Customer"]["required"]  # sent, never answered
    assert schemas["CampaignReport"]["required"] == ["launched"]  # the rest after the launch only (session 24: the money fields were marked)
    assert "offer" not in schemas["CampaignWithSecretRequest"].get("required", [])  # a create may leave it out (session 24: a body's component of its own)
    assert {"goal", "offer", "filters", "webhook_url", "scheduled_for"} <= set(schemas["CampaignWithSecret"]["required"])  # every answer has them
    assert "webhook_secret" not in schemas["CampaignWithSecret"]["required"]  # admins' and owners' only
    customer = api_a.post("/api/v1/customers/", {"customer_id": "c1"}, format="json").json()
    assert set(schemas["CustomerDetail"]["required"]) <= set(customer)  # and every answer has them
    campaign = api_a.post("/api/v1/campaigns/", {"name": "Back", "action": "win_back"}, format="json").json()
    assert set(schemas["CampaignWithSecret"]["required"]) <= set(campaign)


def test_a_customer_row_sent_back_as_answered_names_every_problem_at_once(api_a) -> None:
    answer = api_a.post("/api/v1/customers/bulk/", [{"id": 3, "external_id": "c1", "email": "a@b.c", "order_count": 2}], format="json").json()
    assert {e["column"] for e in answer["errors"]} == {"customer_id", "email", "id", "external_id", "order_count"}, answer["errors"]


def test_an_order_edit_refuses_a_status_the_app_does_not_know(api_a) -> None:
    assert api_a.post("/api/v1/orders/bulk/", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01", "amount": "5"}], format="json").json()["ok"]
    order = api_a.get("/api/v1/orders/").json()["results"][0]
    refused = api_a.patch(f"/api/v1/orders/{order['id']}/", {"status": 7}, format="json")
    assert refused.status_code == 400 and "'7' is not a status this app knows" in refused.json()["status"][0]
    assert api_a.patch(f"/api/v1/orders/{order['id']}/", {"status": "Canceled"}, format="json").json()["status"] == "cancelled"


def test_missing_values_sort_last_in_either_direction(api_a) -> None:
    rows = [{"customer_id": "buyer", "order_id": "o1", "ordered_at": "2024-01-01", "amount": "5"},
            {"customer_id": "later", "order_id": "o2", "ordered_at": "2024-03-01", "amount": "5"}]
    assert api_a.post("/api/v1/orders/bulk/", rows, format="json").json()["ok"]
    assert api_a.post("/api/v1/customers/bulk/", [{"customer_id": "prospect"}], format="json").json()["ok"]
    for ordering, expected in (("last_order_at", ["buyer", "later", "prospect"]), ("-last_order_at", ["later", "buyer", "prospect"])):
        assert [c["external_id"] for c in api_a.get("/api/v1/customers/", {"ordering": ordering}).json()["results"]] == expected, ordering
