"""API QA walk, round 5: the schema says what the API answers (nullable fields, filters,
search, ordering, error answers), detail routes ignore list filters, every path under /api/
answers JSON, and error bodies carry ``detail`` or a field's list of messages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from campaigns.models import Campaign
from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer, Order
from customers.services.imports import import_rows
from modeling.models import CustomerInsight, Segment, StageSnapshot
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(db: Any) -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def insights_a(shop_a_data) -> dict[str, Any]:
    """c1 lapsed in a learned segment, c2 active in none; c1 has two stage snapshots."""
    with tenant_context(shop_a_data):
        c1, c2 = Customer.objects.get(external_id="c1"), Customer.objects.get(external_id="c2")
        learned = Segment.objects.create(tenant=shop_a_data, kind=Segment.Kind.LEARNED, key="l1", name="Sock buyers", size=1, is_current=True)
        common = {"tenant": shop_a_data, "as_of": dt.date(2024, 3, 31), "stage_since": dt.date(2024, 3, 1), "stage_reason": "r", "action": "win_back", "action_reason": "r"}
        CustomerInsight.objects.create(customer=c1, stage="lapsed", learned_segment=learned, priority=2.0, **common)
        CustomerInsight.objects.create(customer=c2, stage="active", priority=1.0, **common)
        for month, stage in ((1, "active"), (3, "lapsed")):
            StageSnapshot.objects.create(tenant=shop_a_data, customer=c1, as_of=dt.date(2024, month, 28), stage=stage, since=dt.date(2024, month, 1), reason="r")
    return {"c1": c1, "c2": c2, "learned": learned}


def properties(schema: dict[str, Any], component: str) -> dict[str, Any]:
    return schema["components"]["schemas"][component]["properties"]


def query_parameters(schema: dict[str, Any], path: str, method: str = "get") -> set[str]:
    return {p["name"] for p in schema["paths"][path][method].get("parameters", []) if p["in"] == "query"}


# --- 1. Null values are documented as nullable -------------------------------------------------------


def test_a_line_and_a_review_without_a_product_and_an_insight_without_segments_are_null_where_the_schema_says_nullable(insights_a, schema, api_a) -> None:
    assert import_rows(insights_a["c1"].tenant, "orders", [{"customer_id": "c1", "order_id": "o9", "ordered_at": "2024-03-05", "amount": "9.00"}]).ok
    assert import_rows(insights_a["c1"].tenant, "reviews", [{"customer_id": "c1", "review_id": "r9", "created_at": "2024-03-06", "text": "Fine"}]).ok

    line = next(order for order in api_a.get("/api/v1/orders/").json()["results"] if order["external_id"] == "o9")["items"][0]
    detail_line = next(order for order in api_a.get(f"/api/v1/customers/{insights_a['c1'].pk}/").json()["orders"] if order["external_id"] == "o9")["items"][0]
    review = next(review for review in api_a.get("/api/v1/reviews/").json()["results"] if review["external_id"] == "r9")
    insight = api_a.get(f"/api/v1/insights/{insights_a['c2'].pk}/").json()

    assert (line["sku"], line["product_name"], detail_line["sku"], detail_line["product_name"]) == (None, None, None, None)
    assert review["sku"] is None
    assert (insight["learned_segment_name"], insight["rfm_segment_name"]) == (None, None)
    for component, field in (("OrderItem", "sku"), ("OrderItem", "product_name"), ("Review", "sku"), ("Insight", "learned_segment_name"), ("Insight", "rfm_segment_name")):
        assert properties(schema, component)[field].get("nullable") is True, (component, field)


# --- 2. List filters filter lists, not the object of a detail route ---------------------------------


def test_list_filters_on_a_detail_route_do_not_hide_its_object_and_sub_lists_refuse_them(insights_a, tenant_a, api_a) -> None:
    c1 = insights_a["c1"]
    with tenant_context(tenant_a):
        draft = Campaign.objects.create(tenant=tenant_a, name="Draft", action="win_back")

    stages = api_a.get(f"/api/v1/insights/{c1.pk}/stages/?stage=active&ordering=-as_of")
    members = api_a.get(f"/api/v1/segments/{insights_a['learned'].pk}/members/?kind=saved")
    audience = api_a.get(f"/api/v1/campaigns/{draft.pk}/audience/?state=running")
    retrieved = api_a.get(f"/api/v1/customers/{c1.pk}/?country=zz&search=nobody")

    # A sub-list refuses a list's filters (QA round 9: ignored, they looked applied), naming them.
    for refused, name in ((stages, "stage"), (members, "kind"), (audience, "state")):
        assert refused.status_code == 400 and name in refused.json(), (name, refused.json())
    assert [row["stage"] for row in api_a.get(f"/api/v1/insights/{c1.pk}/stages/").json()["results"]] == ["active", "lapsed"]  # oldest first, as documented
    assert [row["customer"] for row in api_a.get(f"/api/v1/segments/{insights_a['learned'].pk}/members/").json()["results"]] == [c1.pk]
    assert api_a.get(f"/api/v1/campaigns/{draft.pk}/audience/").json()["count"] == 0
    assert retrieved.status_code == 200 and retrieved.json()["external_id"] == "c1"  # a detail route still ignores list filters
    assert api_a.get("/api/v1/insights/?stage=active").json()["count"] == 1  # the list still filters


def test_the_schema_documents_list_filters_on_lists_only(schema) -> None:
    for path in ("/api/v1/insights/{customer}/stages/", "/api/v1/segments/{id}/members/", "/api/v1/campaigns/{id}/audience/"):
        assert query_parameters(schema, path) == {"page", "page_size"} | ({"group"} if path.endswith("/audience/") else set()), path
    assert {"stage", "ordering", "search"} <= query_parameters(schema, "/api/v1/insights/")


# --- 3. Search where there is something to search; unknown orderings are refused --------------------------


def test_search_is_documented_exactly_where_it_searches(schema) -> None:
    searchable = {"customers", "orders", "products", "reviews", "campaigns", "segments", "predictions", "insights"}
    for kind in (*searchable, "jobs", "models", "imports"):
        assert ("search" in query_parameters(schema, f"/api/v1/{kind}/")) == (kind in searchable), kind


def test_campaigns_segments_and_insights_are_searched(insights_a, tenant_a, api_a) -> None:
    with tenant_context(tenant_a):
        Campaign.objects.create(tenant=tenant_a, name="Win back sock buyers", action="win_back")
        Campaign.objects.create(tenant=tenant_a, name="Thank the loyal", action="win_back")

    assert [c["name"] for c in api_a.get("/api/v1/campaigns/?search=sock").json()["results"]] == ["Win back sock buyers"]
    assert [s["name"] for s in api_a.get("/api/v1/segments/?search=sock").json()["results"]] == ["Sock buyers"]
    assert [i["customer_external_id"] for i in api_a.get("/api/v1/insights/?search=c2").json()["results"]] == ["c2"]


@pytest.mark.parametrize("ordering", ["country", "tenant", "-total_spent,tenant"])
def test_an_unknown_ordering_is_a_400_naming_the_allowed_fields(shop_a_data, api_a, ordering) -> None:
    response = api_a.get(f"/api/v1/customers/?ordering={ordering}")

    assert response.status_code == 400
    assert list(response.json()) == ["ordering"]
    message = response.json()["ordering"][0]
    assert message.startswith(f"Cannot order by {ordering.split(',')[-1]}. Allowed: id, external_id, name, email, total_spent, order_count, last_order_at")


def test_a_known_ordering_orders_and_the_schema_names_the_allowed_fields(shop_a_data, api_a, schema) -> None:
    rows = api_a.get("/api/v1/customers/?ordering=-total_spent").json()["results"]

    assert [row["external_id"] for row in rows] == ["c1", "c2"]
    ordering = next(p for p in schema["paths"]["/api/v1/campaigns/"]["get"]["parameters"] if p["name"] == "ordering")
    assert ordering["description"].startswith("Allowed: created_at, launched_at")


# --- 4. webhook_secret is optional in the schema, as viewers and analysts never get it ---------------------


def test_webhook_secret_is_documented_as_optional_and_only_admins_get_it(tenant_a, schema) -> None:
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(tenant=tenant_a, name="Hook", action="win_back", webhook_url="https://example.com/hook", webhook_secret="s3cret")
    component = schema["components"]["schemas"]["CampaignWithSecret"]

    assert "webhook_secret" in component["properties"] and "webhook_secret" not in component["required"]
    assert "name" in component["required"]
    for role, sees in ((Role.VIEWER, False), (Role.ANALYST, False), (Role.ADMIN, True)):
        assert ("webhook_secret" in api_client_for(tenant_a, role).get(f"/api/v1/campaigns/{campaign.pk}/").json()) == sees, role


# --- 5. 413 and 415 are documented; the bulk 400 always has the bulk result's fields ----------------------


def test_operations_with_a_body_document_413_and_415(schema) -> None:
    for path, method in (("/api/v1/customers/bulk/", "post"), ("/api/v1/campaigns/", "post"), ("/api/v1/customers/{id}/", "patch"), ("/api/v1/imports/", "post")):
        assert {"413", "415"} <= set(schema["paths"][path][method]["responses"]), (path, method)
    assert not {"413", "415"} & set(schema["paths"]["/api/v1/customers/"]["get"]["responses"])


def test_a_bulk_body_of_another_media_type_is_a_415(tenant_a, api_a) -> None:
    response = api_a.post("/api/v1/customers/bulk/", data="customer_id\nc1\n", content_type="text/plain")

    assert response.status_code == 415 and "text/plain" in response.json()["detail"]


def test_malformed_json_to_bulk_answers_the_documented_bulk_result(tenant_a, api_a, schema) -> None:
    response = api_a.post("/api/v1/orders/bulk/", data='[{"customer_id": "c1",', content_type="application/json")

    assert response.status_code == 400
    body = response.json()
    documented = schema["paths"]["/api/v1/orders/bulk/"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    refused = api_a.post("/api/v1/orders/bulk/", [], format="json").json()  # the answer of any other refused bulk request
    assert set(body) == set(refused) == set(properties(schema, documented))
    assert (body["ok"], body["kind"], body["rows"], body["error_count"]) == (False, "orders", 0, 1)
    assert body["message"] == body["detail"] and body["detail"].startswith("JSON parse error")
    assert body["errors"] == [{"row": 0, "column": "", "message": body["detail"]}]  # the request as a whole, as row 0
    with tenant_context(tenant_a):
        assert not Order.objects.exists()


# --- 6. A body that is not an object is a 400 with detail; a field's errors are a list ----------------


@pytest.mark.parametrize(("body", "got"), [("null", "null"), ("[]", "list"), ("123", "int"), ('"x"', "str")])
def test_a_body_that_is_not_an_object_is_a_400_with_detail(shop_a_data, api_a, body, got) -> None:
    with tenant_context(shop_a_data):
        customer = Customer.objects.get(external_id="c1")
    for method, url in (("patch", f"/api/v1/customers/{customer.pk}/"), ("post", "/api/v1/campaigns/"), ("post", "/api/v1/segments/"), ("post", "/api/v1/jobs/score/")):
        response = getattr(api_a, method)(url, data=body, content_type="application/json")
        assert response.status_code == 400, (method, url)
        assert response.json() == {"detail": f"Invalid data. Expected a dictionary, but got {got}."}, (method, url)
    with tenant_context(shop_a_data):
        assert not Campaign.objects.exists() and not Segment.objects.exists()


def test_a_nested_object_of_the_wrong_type_is_its_fields_list_of_messages(tenant_a, api_a) -> None:
    response = api_a.post("/api/v1/campaigns/", {"name": "x", "action": "win_back", "filters": [1, 2]}, format="json")
    unknown = api_a.post("/api/v1/segments/", {"name": "x", "filters": {"colour": "red"}}, format="json")
    bad_item = api_a.post("/api/v1/segments/", {"name": "x", "filters": {"stages": ["lapsed", "bogus"]}}, format="json")
    missing = api_a.post("/api/v1/campaigns/", {"action": "win_back"}, format="json")

    assert response.status_code == 400 and response.json() == {"filters": ['Must be a JSON object, e.g. {"stages": ["lapsed"]}.']}
    assert unknown.status_code == 400 and unknown.json()["filters"]["colour"][0].startswith("unknown filter; the filters are stages,")
    assert bad_item.status_code == 400 and bad_item.json() == {"filters": {"stages": ['Item 2: "bogus" is not one of: prospect, new, active, loyal, at_risk, lapsed, reactivated.']}}
    assert missing.status_code == 400 and missing.json() == {"name": ["This field is required."]}


# --- 7. Every path under /api/ answers JSON ------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_every_unknown_path_under_api_is_a_json_404(tenant_a, api_a, settings, debug) -> None:
    settings.DEBUG = debug
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(tenant=tenant_a, name="Real", action="win_back")
    for method, url in (
        ("get", "/api/v1/insights/abc/"), ("get", "/api/v1/insights/1234567890123456789/"), ("get", "/api/v1/insights/1234567890123456789/stages/"),
        ("get", "/api/v1/nonexistent/"), ("post", "/api/v1/nonexistent/"), ("get", "/api/v1/"), ("get", "/api/v2/customers/"),
        ("get", f"/api/v1/campaigns/{campaign.pk}/nonexistent/"), ("get", "/api/v1/campaigns/99999999999999999999/report/"),
        ("post", "/api/v1/campaigns/99999999999999999999/launch/"),
    ):
        response = getattr(api_a, method)(url)
        assert response.status_code == 404, (method, url, response.status_code)
        assert response["Content-Type"] == "application/json" and response.json() == {"detail": "Not found."}, (method, url)
    anonymous = api_a.__class__()
    assert anonymous.post("/api/v1/nonexistent/", {"a": 1}, format="json").json() == {"detail": "Not found."}  # no CSRF refusal either


def test_the_schema_and_docs_answer_with_and_without_the_final_slash(db, client) -> None:
    for url in ("/api/schema/", "/api/schema", "/api/docs/", "/api/docs"):
        assert client.get(url).status_code == 200, url


# --- 8. Times in Z, role refusals name the role, reviews carry their sentiment ------------------------------


def test_the_campaign_report_writes_its_window_times_as_every_other_time(insights_a, tenant_a, api_a) -> None:
    created = api_a.post("/api/v1/campaigns/", {"name": "All", "action": "win_back", "control_share": 0.5}, format="json").json()
    launched = api_a.post(f"/api/v1/campaigns/{created['id']}/launch/")
    assert launched.status_code == 200, launched.json()

    report = api_a.get(f"/api/v1/campaigns/{created['id']}/report/").json()

    assert launched.json()["launched_at"].endswith("Z")
    for name in ("window_end", "measured_until"):
        assert report[name].endswith("Z") and "+00:00" not in report[name], (name, report[name])
        assert dt.datetime.fromisoformat(report[name]).tzinfo is not None


@pytest.mark.parametrize(("role", "send", "detail"), [
    (Role.VIEWER, lambda api, ids: api.post("/api/v1/customers/bulk/", [{"customer_id": "x"}], format="json"),
     "This needs the analyst role or above; this key is a viewer key."),
    (Role.ANALYST, lambda api, ids: api.delete(f"/api/v1/customers/{ids['c1']}/"), "This needs the admin role or above; this key is an analyst key."),
    (Role.ANALYST, lambda api, ids: api.post("/api/v1/models/retrain/", {}, format="json"), "This needs the admin role or above; this key is an analyst key."),
])
def test_a_role_refusal_names_the_role_needed(shop_a_data, role, send, detail) -> None:
    with tenant_context(shop_a_data):
        ids = {"c1": Customer.objects.get(external_id="c1").pk}
        before = Customer.objects.count()

    response = send(api_client_for(shop_a_data, role), ids)

    assert response.status_code == 403 and response.json() == {"detail": detail}
    with tenant_context(shop_a_data):
        assert Customer.objects.count() == before


def test_a_session_refusal_names_the_role_too(shop_a_data, bob, client) -> None:
    client.force_login(bob)
    response = client.post("/api/v1/segments/", data=json.dumps({"name": "x"}), content_type="application/json")

    assert response.status_code == 403 and response.json() == {"detail": "This needs the analyst role or above; you are a viewer in this shop."}


def test_reviews_carry_their_sentiment_and_aspect_read_only(shop_a_data, api_a, schema) -> None:
    from customers.models import Review

    with tenant_context(shop_a_data):
        Review.objects.filter(external_id="r1").update(sentiment="positive", sentiment_score=0.8, aspect="delivery")
    rows = {row["external_id"]: row for row in api_a.get("/api/v1/reviews/").json()["results"]}

    assert (rows["r1"]["sentiment"], rows["r1"]["sentiment_score"], rows["r1"]["aspect"]) == ("positive", 0.8, "delivery")
    assert (rows["r2"]["sentiment"], rows["r2"]["sentiment_score"], rows["r2"]["aspect"]) == ("", None, "")
    review = properties(schema, "Review")
    assert all(review[name]["readOnly"] for name in ("sentiment", "sentiment_score", "aspect"))
    assert review["sentiment_score"]["nullable"] is True
    enums = [schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]["enum"] for ref in review["sentiment"]["oneOf"]]
    assert sorted(value for enum in enums for value in enum) == ["", "negative", "neutral", "positive"]


def test_a_review_for_an_unknown_customer_creates_that_customer_as_an_order_does(tenant_a, api_a) -> None:
    response = api_a.post("/api/v1/reviews/bulk/", [{"customer_id": "new1", "review_id": "rv1", "created_at": "2024-02-03T10:00:00Z", "text": "Nice", "sku": "s9", "product_name": "Hat"}], format="json")

    assert response.status_code == 200 and response.json()["details"] == {"new_customers": 1, "new_products": 1}
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="new1")
        assert (customer.first_seen, customer.review_count, customer.order_count) == (dt.datetime(2024, 2, 3, 10, tzinfo=dt.UTC), 1, 0)
