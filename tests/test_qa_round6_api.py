"""API QA walk, round 6: a PATCH merges a customer's attributes as an import does; a body's
unknown or read-only field and a list's unknown query parameter are 400s, not ignored;
choice filters refuse what is not a choice; a campaign's state conflicts are 409s."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Campaign, CampaignAudit
from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer, Review
from customers.services.imports import import_csv, import_rows
from modeling.models import CustomerInsight, Job, Segment
from tests.conftest import ORDERS_A, api_client_for, write_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(db: Any) -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def customer(tenant_a, tmp_path) -> Customer:
    """c1 with two attributes from a customers file."""
    assert import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,name,Tier,city\nc1,Ann,gold,Oslo\n")).ok
    with tenant_context(tenant_a):
        return Customer.objects.get(external_id="c1")


@pytest.fixture
def insights_a(shop_a_data) -> dict[str, Any]:
    """c1 lapsed (win-back), c2 active (nurture)."""
    with tenant_context(shop_a_data):
        c1, c2 = Customer.objects.get(external_id="c1"), Customer.objects.get(external_id="c2")
        common = {"tenant": shop_a_data, "as_of": dt.date(2024, 3, 31), "stage_since": dt.date(2024, 3, 1), "stage_reason": "r", "action_reason": "r"}
        CustomerInsight.objects.create(customer=c1, stage="lapsed", action="win_back", value_tier="high", priority=2.0, **common)
        CustomerInsight.objects.create(customer=c2, stage="active", action="nurture", value_tier="low", priority=1.0, **common)
    return {"c1": c1, "c2": c2}


def stored(tenant, customer: Customer) -> tuple[Any, ...]:
    with tenant_context(tenant):
        return Customer.objects.values_list("email", "name", "attributes", "total_spent", "updated_at").get(pk=customer.pk)


# --- 1. A PATCH merges attributes as an import does; unknown and read-only fields are refused ------------


def test_a_patch_merges_attributes_into_the_stored_ones_as_an_import_stores_them(tenant_a, customer, api_a) -> None:
    # when one attribute is added, one changed (in another case, with spaces), one sent blank
    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", {"attributes": {"n": 5, "share": 0.25, "vip": True, "City": " Bergen ", "tier": None, "note": ""}}, format="json")

    # then the others keep their values, and the values are the text a bulk upsert stores
    assert response.status_code == 200, response.json()
    expected = {"tier": "gold", "city": "Bergen", "n": "5", "share": "0.25", "vip": "true"}
    assert response.json()["attributes"] == expected
    assert stored(tenant_a, customer)[2] == expected
    assert import_rows(tenant_a, "customers", [{"customer_id": "c2", "n": 5, "share": 0.25, "vip": True, "City": " Bergen "}]).ok
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c2").attributes == {"n": "5", "share": "0.25", "vip": "true", "city": "Bergen"}


def test_a_patch_without_attributes_keeps_them(tenant_a, customer, api_a) -> None:
    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", {"name": "Ann B"}, format="json")

    assert response.status_code == 200
    assert stored(tenant_a, customer)[1:3] == ("Ann B", {"tier": "gold", "city": "Oslo"})


@pytest.mark.parametrize(("attributes", "errors"), [
    ({"address": {"city": "Oslo"}}, {"address": ["must be a string, a number or true/false, not a JSON object"]}),
    ({"tags": ["a", "b"]}, {"tags": ["must be a string, a number or true/false, not a JSON list"]}),
    ({"x" * 101: "1"}, {"x" * 101: ["the attribute name is 101 characters long; the limit is 100"]}),
    ({"bio": "y" * 1001}, {"bio": ["is 1,001 characters long; the limit is 1,000"]}),
    ({"bad": "a\x00b"}, {"bad": ["contains a NUL byte"]}),
    ({"Email": "x@example.com"}, {"Email": ["email is a column of the customer, not an attribute"]}),
    ({"Tier": "silver", "tier": "bronze"}, {"tier": ["names the same attribute as another key (tier); send one of them"]}),
    ({" ": "1"}, {" ": ["an attribute needs a name"]}),
])
def test_an_attribute_an_import_would_refuse_is_a_400_naming_its_key_and_nothing_changes(tenant_a, customer, api_a, attributes, errors) -> None:
    before = stored(tenant_a, customer)

    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", {"name": "Changed", "attributes": {"ok": "1", **attributes}}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["attributes"] and list(body["attributes"]) == list(errors)
    for key, messages in errors.items():
        assert len(body["attributes"][key]) == 1 and body["attributes"][key][0].endswith(messages[0]), body
    assert stored(tenant_a, customer) == before


def test_a_patch_with_read_only_or_unknown_fields_is_a_400_naming_them_and_nothing_changes(tenant_a, customer, api_a) -> None:
    before = stored(tenant_a, customer)

    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", {"name": "Rich", "total_spent": "1000000", "bogus": 1}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "total_spent": ["This field is read-only; this operation writes attributes, country, email, name, remove_attributes."],
        "bogus": ["Unknown field; this operation writes attributes, country, email, name, remove_attributes."],
    }
    assert stored(tenant_a, customer) == before


def test_put_is_not_an_operation_405_and_nothing_changes(tenant_a, customer, api_a, schema) -> None:
    before = stored(tenant_a, customer)

    response = api_a.put(f"/api/v1/customers/{customer.pk}/", {"email": "", "name": "Put", "country": "", "attributes": {}}, format="json")

    assert response.status_code == 405
    assert stored(tenant_a, customer) == before
    assert not [path for path, operations in schema["paths"].items() if "put" in operations]


def test_every_writable_endpoint_refuses_unknown_and_read_only_fields(insights_a, tenant_a, api_a) -> None:
    campaign = {"name": "Win back", "action": "win_back"}
    with tenant_context(tenant_a):
        draft = Campaign.objects.create(tenant=tenant_a, name="Draft", action="win_back")
        counts = (Campaign.objects.count(), Segment.objects.count(), Job.objects.count())

    answers = {
        "campaign": api_a.post("/api/v1/campaigns/", {**campaign, "audience": "everyone"}, format="json"),
        "campaign state": api_a.post("/api/v1/campaigns/", {**campaign, "state": "running"}, format="json"),
        "campaign edit": api_a.patch(f"/api/v1/campaigns/{draft.pk}/", {"name": "x", "audience_size": 9}, format="json"),
        "segment": api_a.post("/api/v1/segments/", {"name": "Big", "kind": "learned", "filters": {}}, format="json"),
        "retrain": api_a.post("/api/v1/models/retrain", {"horizon": 30}, format="json"),
        "score": api_a.post("/api/v1/jobs/score/", {"date": "2024-03-31"}, format="json"),
        "rollback": api_a.post("/api/v1/models/rollback/", {"target": "purchase", "version": 3}, format="json"),
        "import": api_a.post("/api/v1/imports/", {"kind": "orders", "file": SimpleUploadedFile("o.csv", ORDERS_A.encode()), "delimiter": ";"}, format="multipart"),
    }

    names = {"import": "delimiter", "campaign": "audience", "campaign state": "state", "campaign edit": "audience_size", "segment": "kind", "retrain": "horizon", "score": "date", "rollback": "version"}
    for label, response in answers.items():
        assert response.status_code == 400 and list(response.json()) == [names[label]], (label, response.json())
    assert answers["retrain"].json()["horizon"] == ["Unknown field; this operation writes as_of, family, horizon_days, sentiment_candidates."]
    with tenant_context(tenant_a):
        assert (Campaign.objects.count(), Segment.objects.count(), Job.objects.count()) == counts
        assert Campaign.objects.get(pk=draft.pk).name == "Draft"


# --- 2. Lists refuse unknown query parameters; filters integrators expect; choices are choices ------------


@pytest.mark.parametrize("path", ["customers", "orders", "products", "reviews", "imports", "models", "jobs", "predictions", "segments", "insights", "campaigns"])
def test_an_unknown_query_parameter_of_a_list_is_a_400_naming_those_it_takes(shop_a_data, api_a, path) -> None:
    response = api_a.get(f"/api/v1/{path}/?colour=red")

    assert response.status_code == 400
    assert list(response.json()) == ["colour"]
    assert response.json()["colour"][0].startswith("Unknown query parameter; this list takes ")


def test_the_orders_list_names_exactly_the_parameters_it_takes(shop_a_data, api_a) -> None:
    response = api_a.get("/api/v1/orders/?customer_ID=c1")

    assert response.json() == {"customer_ID": ["Unknown query parameter; this list takes after, customer, customer_id, format, order_id, ordered_at__gte, ordered_at__lt, ordering, page, page_size, search, status, updated_at__gte, updated_at__lt."]}


def test_every_documented_query_parameter_of_a_list_is_taken(shop_a_data, api_a, schema) -> None:
    lists = [path for path, operations in schema["paths"].items() if "get" in operations and "{" not in path and "parameters" in operations["get"]]
    assert len(lists) >= 11
    for path in lists:
        for parameter in schema["paths"][path]["get"]["parameters"]:
            if parameter["in"] == "query":
                response = api_a.get(f"{path}?{parameter['name']}=")
                if parameter["name"] not in ("page", "page_size", "search", "ordering", "format"):  # an empty filter is refused, not read as no filter
                    assert response.status_code == 400 and parameter["name"] in response.json(), (path, parameter["name"])
                else:
                    assert response.status_code == 200, (path, parameter["name"], response.json())
    assert api_a.get("/api/v1/predictions/?as_of=2024-03-31&format=json").status_code == 200  # read by the view itself, and DRF's format override


def test_orders_filter_by_the_customers_id_as_imported_and_by_status_without_case(shop_a_data, api_a) -> None:
    assert import_rows(shop_a_data, "orders", [{"customer_id": "c2", "order_id": "o9", "ordered_at": "2024-03-05", "amount": "9.00", "status": "Canceled"}]).ok

    by_customer = api_a.get("/api/v1/orders/?customer_id=c1").json()
    by_status = [api_a.get(f"/api/v1/orders/?status={status}").json() for status in ("Cancelled", "canceled", "CANCELLED")]
    completed = api_a.get("/api/v1/orders/?status=Completed").json()

    assert sorted(order["external_id"] for order in by_customer["results"]) == ["o1", "o2"]
    assert api_a.get("/api/v1/orders/?customer_id=nobody").json()["count"] == 0
    assert [[order["external_id"] for order in answer["results"]] for answer in by_status] == [["o9"]] * 3
    assert completed["count"] == 3 and "o9" not in [order["external_id"] for order in completed["results"]]


def test_reviews_filter_by_sentiment_aspect_and_the_customers_id(shop_a_data, api_a) -> None:
    with tenant_context(shop_a_data):
        Review.objects.filter(external_id="r1").update(sentiment="positive", aspect="fit")
        Review.objects.filter(external_id="r2").update(sentiment="negative", aspect="quality")

    def ids(query: str) -> list[str]:
        response = api_a.get(f"/api/v1/reviews/?{query}")
        assert response.status_code == 200, response.json()
        return [review["external_id"] for review in response.json()["results"]]

    assert ids("sentiment=negative") == ["r2"]
    assert ids("sentiment=negative&aspect=price") == []
    assert ids("aspect=fit") == ["r1"]
    assert ids("customer_id=c2") == ["r2"]


@pytest.mark.parametrize("query", [
    "insights/?action=bogus", "insights/?value_tier=top", "insights/?stage=bogus", "reviews/?aspect=colour", "reviews/?sentiment=angry",
    "segments/?is_current=yes", "campaigns/?action=bogus", "predictions/?value_tier=top",
])
def test_a_value_outside_a_filters_choices_is_a_400_naming_the_filter(insights_a, api_a, query) -> None:
    response = api_a.get(f"/api/v1/{query}")

    assert response.status_code == 400
    assert list(response.json()) == [query.split("?")[1].split("=")[0]]


def test_choice_filters_still_filter(insights_a, api_a) -> None:
    with tenant_context(insights_a["c1"].tenant):
        Segment.objects.create(tenant=insights_a["c1"].tenant, kind=Segment.Kind.LEARNED, key="old", name="Old", is_current=False)

    assert [row["customer_external_id"] for row in api_a.get("/api/v1/insights/?action=win_back").json()["results"]] == ["c1"]
    assert [row["customer_external_id"] for row in api_a.get("/api/v1/insights/?value_tier=low").json()["results"]] == ["c2"]
    assert [row["name"] for row in api_a.get("/api/v1/segments/?is_current=false").json()["results"]] == ["Old"]
    assert api_a.get("/api/v1/segments/?is_current=true").json()["count"] == 0


# --- 3. A campaign's state conflicts are 409s, as a finished job's cancel is ------------------------------


def test_a_campaigns_state_conflicts_answer_409_with_detail_and_change_nothing(insights_a, tenant_a, api_a) -> None:
    created = api_a.post("/api/v1/campaigns/", {"name": "All", "action": "win_back", "control_share": 0.5}, format="json").json()
    assert api_a.post(f"/api/v1/campaigns/{created['id']}/launch/").status_code == 200
    with tenant_context(tenant_a):
        audits = CampaignAudit.objects.count()

    launch = api_a.post(f"/api/v1/campaigns/{created['id']}/launch/")
    edit = api_a.patch(f"/api/v1/campaigns/{created['id']}/", {"name": "renamed"}, format="json")
    delete = api_a.delete(f"/api/v1/campaigns/{created['id']}/")

    assert (launch.status_code, launch.json()) == (409, {"detail": "A running campaign cannot be launched."})
    assert (edit.status_code, edit.json()) == (409, {"detail": "A launched campaign cannot be edited."})
    assert (delete.status_code, delete.json()) == (409, {"detail": "A launched campaign is kept for its report: it cannot be deleted. An admin or owner can cancel it to stop it."})
    assert api_a.post(f"/api/v1/campaigns/{created['id']}/cancel/").status_code == 200
    # Cancelled, it is still kept, and nothing says to cancel it again.
    assert api_a.delete(f"/api/v1/campaigns/{created['id']}/").json() == {"detail": "A launched campaign is kept for its report: it cannot be deleted."}
    cancel = api_a.post(f"/api/v1/campaigns/{created['id']}/cancel/")
    assert (cancel.status_code, cancel.json()) == (409, {"detail": "The campaign is already cancelled."})
    with tenant_context(tenant_a):
        campaign = Campaign.objects.get(pk=created["id"])
        assert (campaign.name, campaign.state) == ("All", Campaign.State.CANCELLED)
        assert CampaignAudit.objects.count() == audits + 1  # the one cancel that happened


def test_launching_a_campaign_with_an_empty_audience_is_a_409(insights_a, tenant_a, api_a) -> None:
    created = api_a.post("/api/v1/campaigns/", {"name": "None", "action": "win_back", "filters": {"actions": ["vip_care"]}}, format="json").json()

    launch = api_a.post(f"/api/v1/campaigns/{created['id']}/launch/")

    assert (launch.status_code, launch.json()) == (409, {"detail": "The audience is empty: nothing to launch."})
    with tenant_context(tenant_a):
        assert Campaign.objects.get(pk=created["id"]).state == Campaign.State.DRAFT


def test_a_finished_jobs_cancel_is_the_same_409(tenant_a, api_a) -> None:
    with tenant_context(tenant_a):
        job = Job.objects.create(tenant=tenant_a, kind=Job.Kind.SCORE, state=Job.State.SUCCEEDED)

    response = api_a.post(f"/api/v1/jobs/{job.pk}/cancel/")

    assert response.status_code == 409 and list(response.json()) == ["detail"]


def test_the_schema_documents_every_409(schema) -> None:
    for path, method in (("/api/v1/campaigns/{id}/launch/", "post"), ("/api/v1/campaigns/{id}/cancel/", "post"), ("/api/v1/campaigns/{id}/", "patch"),
                         ("/api/v1/campaigns/{id}/", "delete"), ("/api/v1/jobs/{id}/cancel/", "post"), ("/api/v1/models/retrain/", "post")):
        conflict = schema["paths"][path][method]["responses"]["409"]
        assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Conflict"}, (path, method)
    assert schema["components"]["schemas"]["Conflict"]["properties"] == {"detail": {"type": "string"}}


# --- 4 and 5. The README says what the paths take and who a campaign reaches ------------------------------


def test_the_readme_names_the_insights_id_and_a_campaigns_audience() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "/insights/{customer_id}/" not in readme and "`/api/v1/insights/{id}/` (the customer's numeric `id` from `/customers/`)" in readme
    assert "`action` is what is sent, not who receives it" in readme and "`audience_size` is set at launch" in readme


def test_a_campaign_without_segment_or_filters_reaches_every_customer_with_an_insight_whatever_its_action(insights_a, tenant_a, api_a) -> None:
    """As the README says: the action is not a filter; ``filters.actions`` is."""
    everyone = api_a.post("/api/v1/campaigns/", {"name": "All", "action": "vip_care"}, format="json").json()
    targeted = api_a.post("/api/v1/campaigns/", {"name": "Lapsed", "action": "win_back", "filters": {"actions": ["win_back"]}}, format="json").json()

    assert (everyone["audience_size"], targeted["value_at_risk"]) == (None, None)  # set at launch, null (not 0) before
    assert api_a.get(f"/api/v1/campaigns/{everyone['id']}/report/").json()["preview"]["size"] == 2
    assert api_a.get(f"/api/v1/campaigns/{targeted['id']}/report/").json()["preview"]["size"] == 1
    assert api_a.post(f"/api/v1/campaigns/{targeted['id']}/launch/").json()["audience_size"] == 1


def test_a_viewer_is_refused_for_its_role_and_an_outsider_finds_nothing_whatever_the_body(customer, tenant_a, api_b) -> None:
    """The role check and the lookup come before the body's: a bad field tells them nothing."""
    before = stored(tenant_a, customer)
    viewer = api_client_for(tenant_a, Role.VIEWER)

    assert viewer.patch(f"/api/v1/customers/{customer.pk}/", {"bogus": 1}, format="json").status_code == 403
    assert api_b.patch(f"/api/v1/customers/{customer.pk}/", {"bogus": 1, "attributes": {"n": 1}}, format="json").status_code == 404
    assert stored(tenant_a, customer) == before
