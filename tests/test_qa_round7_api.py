"""API and CLI QA walk, round 7: a method an endpoint lacks is a 405 for every role; refusals
by state are 409s; choice-like filters refuse what is not a choice; nothing sent is dropped
without a word; the catch-all 404 is a missing id's, byte for byte."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_csv, import_rows
from modeling.models import Segment
from tests.conftest import ORDERS_A, api_client_for, write_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def orders_a(tenant_a, tmp_path):
    assert import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", ORDERS_A)).ok
    with tenant_context(tenant_a):
        return Customer.objects.get(external_id="c1")


def test_a_method_the_endpoint_lacks_is_a_405_for_every_role(tenant_a, orders_a) -> None:
    with tenant_context(tenant_a):
        product_id = orders_a.orders.first().items.first().product_id
    for role in (Role.VIEWER, Role.ANALYST, Role.ADMIN):
        client = api_client_for(tenant_a, role)
        assert client.delete(f"/api/v1/products/{product_id}/").status_code == 405, role
        assert client.post("/api/v1/predictions/", {}, format="json").status_code == 405, role  # (customers take a POST: a create)
        assert client.put(f"/api/v1/customers/{orders_a.pk}/", {}, format="json").status_code == 405, role
    # A method the endpoint has still needs its role.
    assert api_client_for(tenant_a, Role.VIEWER).delete(f"/api/v1/customers/{orders_a.pk}/").status_code == 403


def test_refusals_by_state_are_409s(tenant_a, api_a) -> None:
    rollback = api_a.post("/api/v1/models/rollback/", {"target": "sentiment"}, format="json")
    assert rollback.status_code == 409 and "no earlier" in rollback.json()["detail"]
    with tenant_context(tenant_a):
        learned = Segment.objects.create(tenant=tenant_a, kind=Segment.Kind.LEARNED, key="l1", name="Sock buyers", size=1, is_current=True)
    refused = api_a.delete(f"/api/v1/segments/{learned.pk}/")
    assert refused.status_code == 409 and "follow the data" in refused.json()["detail"]
    with tenant_context(tenant_a):
        assert Segment.objects.filter(pk=learned.pk).exists()


def test_filters_refuse_what_cannot_match_and_a_category_ignores_case(tenant_a, api_a, orders_a) -> None:
    assert api_a.get("/api/v1/models/?family=bogus").status_code == 400
    assert api_a.get("/api/v1/models/?family=tabular").status_code == 200
    for query in ("rating=6", "rating=0", "rating__gte=9"):
        answer = api_a.get(f"/api/v1/reviews/?{query}")
        assert answer.status_code == 400 and query.split("=")[0] in answer.json(), query
    assert api_a.get("/api/v1/reviews/?rating=5").status_code == 200
    assert api_a.get("/api/v1/products/?category=shoes").json()["count"] == api_a.get("/api/v1/products/?category=Shoes").json()["count"] == 1


def test_nothing_sent_is_dropped_without_a_word(tenant_a, api_a, tmp_path) -> None:
    # Two files in one upload: which was meant? Neither is imported.
    files = [SimpleUploadedFile("a.csv", b"customer_id\nx1\n"), SimpleUploadedFile("b.csv", b"customer_id\nx2\n")]
    two = api_a.post("/api/v1/imports/", {"kind": "customers", "file": files}, format="multipart")
    assert two.status_code == 400 and "file" in two.json()
    # A bulk key without a name, with a value: refused with its row, as a PATCH refuses it.
    blank = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "a2", "": "v"}], format="json").json()
    assert not blank["ok"] and blank["errors"][0]["row"] == 1 and "needs a name" in blank["errors"][0]["message"]
    # Items that are not objects are named.
    items = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "a3"}, 1, None], format="json").json()
    assert not items["ok"] and [e["row"] for e in items["errors"]] == [2, 3]
    # A file's column without a header name is reported, not silently lost.
    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,,name\nz1,lost,Zed\n"))
    assert result.ok and "without a name in the header (column 2)" in result.message
    with tenant_context(tenant_a):
        assert not Customer.objects.filter(external_id__in=["a2", "a3"]).exists()


def test_the_catch_all_404_is_a_missing_ids_byte_for_byte(tenant_a, api_a) -> None:
    missing = api_a.get("/api/v1/customers/987654/")
    for url in ("/api/v1/nope/", "/api/v1/insights/1234567890123456789/"):
        unknown = api_a.get(url)
        assert (unknown.status_code, unknown.content) == (404, missing.content), url
        assert unknown["Cache-Control"] == missing["Cache-Control"] == "private, no-store"
        assert "Accept" in unknown["Vary"]


def test_a_customers_detail_links_to_all_its_orders_and_an_empty_patch_changes_nothing(tenant_a, api_a, orders_a) -> None:
    detail = api_a.get(f"/api/v1/customers/{orders_a.pk}/").json()
    every = api_a.get(detail["orders_url"]).json()
    assert every["count"] == len(detail["orders"]) == 2 and detail["reviews_url"].split("?")[1] == f"customer={orders_a.pk}" and "/api/v1/reviews" in detail["reviews_url"]
    for body in ({}, {"name": orders_a.name}):
        patched = api_a.patch(f"/api/v1/customers/{orders_a.pk}/", body, format="json")
        assert patched.status_code == 200 and patched.json()["updated_at"] == detail["updated_at"], body
    assert api_a.patch(f"/api/v1/customers/{orders_a.pk}/", {"name": "New"}, format="json").json()["updated_at"] != detail["updated_at"]


def test_create_tenant_refuses_slugs_that_would_confuse(tenant_a) -> None:
    with pytest.raises(CommandError, match="'shop-a' already exists"):
        call_command("create_tenant", "Shop-A", "--name", "Shouty")
    with pytest.raises(CommandError, match="starting with a letter or digit"):
        call_command("create_tenant", "--name", "Dash", "--", "-dash")
    with pytest.raises(CommandError, match="The name takes"):
        call_command("create_tenant", "fine", "--name", " ")
    with pytest.raises(CommandError, match="1 to 100 characters"):
        call_command("create_api_key", "--tenant", "shop-a", "--name", "k" * 101)


def test_import_rows_keeps_working_for_a_key_without_a_value(tenant_a) -> None:
    assert import_rows(tenant_a, "customers", [{"customer_id": "e1", "": None}]).ok


def test_a_file_of_another_kind_is_named(tenant_a, tmp_path) -> None:
    reviews = write_csv(tmp_path / "r.csv", "customer_id,review_id,created_at,text,rating\nc1,r1,2024-01-01,great,5\n")
    result = import_csv(tenant_a, "orders", reviews)
    assert not result.ok and "This looks like a file of reviews" in result.message and "import it as reviews" in result.message


def test_an_operation_that_takes_no_body_refuses_one(tenant_a, api_a) -> None:
    from campaigns.models import Campaign

    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(tenant=tenant_a, name="Real", action="win_back")
    url = f"/api/v1/campaigns/{campaign.pk}/cancel/"
    assert api_a.post(url, {"control_share": 0.5}, format="json").status_code == 400
    assert api_a.post(url, "not json", content_type="application/json").status_code == 400
    assert api_a.post(url, "x", content_type="text/plain").status_code == 415
    with tenant_context(tenant_a):
        assert Campaign.objects.get(pk=campaign.pk).state == "draft"  # nothing happened
    assert api_a.post(url, {}, format="json").status_code == 200
    assert api_a.post(f"/api/v1/campaigns/{campaign.pk}/launch/").status_code == 409  # no body at all is fine; the state refuses


def test_retrain_takes_a_list_of_families_as_the_cli_does(tenant_a, api_a, django_capture_on_commit_callbacks) -> None:
    from customers.models import Order
    from modeling.models import Job

    with tenant_context(tenant_a):  # something to learn from (a shop with nothing is refused up front)
        Order.objects.create(customer=Customer.objects.create(external_id="r1"), external_id="o1", ordered_at="2024-01-02T00:00:00Z", amount=5)
    with django_capture_on_commit_callbacks(execute=False):
        queued = api_a.post("/api/v1/models/retrain/", {"family": "bgnbd, tabular"}, format="json")
    assert queued.status_code == 202
    with tenant_context(tenant_a):
        assert Job.objects.get(pk=queued.json()["id"]).params["family"] == "bgnbd,tabular"
    bad = api_a.post("/api/v1/models/retrain/", {"family": "bgnbd,bogus"}, format="json")
    assert bad.status_code == 400 and "bogus" in bad.json()["family"][0]


def test_a_search_with_a_nul_names_the_search(api_a) -> None:
    answer = api_a.get("/api/v1/customers/?search=%00")
    assert answer.status_code == 400 and answer.json() == {"search": ["Null characters are not allowed."]}


def test_a_json_number_too_large_is_named_as_such(api_a) -> None:
    answer = api_a.post("/api/v1/orders/bulk/", '[{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01", "amount": 1e400}]',
                        content_type="application/json").json()
    assert not answer["ok"] and answer["errors"] == [{"row": 1, "column": "amount", "message": "is a number too large to read"}]
