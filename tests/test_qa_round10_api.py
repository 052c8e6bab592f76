"""API QA walk, round 10: a PATCH can delete a customer's attributes (``remove_attributes``),
which ``attributes`` alone cannot (there a ``null`` keeps the value, as a blank cell does)."""

from __future__ import annotations

from typing import Any

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_csv
from tests.conftest import write_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(tenant_a, tmp_path) -> Customer:
    """c1 with two attributes from a customers file."""
    assert import_csv(tenant_a, "customers", write_csv(tmp_path / "c.csv", "customer_id,name,Tier,city\nc1,Ann,gold,Oslo\n")).ok
    with tenant_context(tenant_a):
        return Customer.objects.get(external_id="c1")


def stored(tenant, customer: Customer) -> tuple[Any, ...]:
    with tenant_context(tenant):
        return Customer.objects.values_list("attributes", "updated_at").get(pk=customer.pk)


def test_a_patch_removes_the_attributes_it_names_as_a_header_names_them(tenant_a, customer, api_a) -> None:
    url = f"/api/v1/customers/{customer.pk}/"
    response = api_a.patch(url, {"remove_attributes": ["Tier", "never_set"], "attributes": {"segment": "b2b"}}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["attributes"] == {"city": "Oslo", "segment": "b2b"}
    assert "remove_attributes" not in response.json()
    attributes, updated_at = stored(tenant_a, customer)
    assert attributes == {"city": "Oslo", "segment": "b2b"}
    # Sent again, it changes nothing, not even updated_at.
    assert api_a.patch(url, {"remove_attributes": ["tier"]}, format="json").status_code == 200
    assert stored(tenant_a, customer) == (attributes, updated_at)


def test_a_key_stored_before_names_were_normalised_can_be_removed(tenant_a, customer, api_a) -> None:
    with tenant_context(tenant_a):
        Customer.objects.filter(pk=customer.pk).update(attributes={"Loyalty Tier": "gold", "city": "Oslo"})

    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", {"remove_attributes": ["loyalty_tier"]}, format="json")

    assert response.status_code == 200
    assert stored(tenant_a, customer)[0] == {"city": "Oslo"}


@pytest.mark.parametrize(("body", "errors"), [
    ({"attributes": {"tier": "silver"}, "remove_attributes": ["Tier"]}, {"remove_attributes": ["tier is also set in attributes; send it in one of them"]}),
    ({"remove_attributes": [" "]}, {"remove_attributes": ["Item 1: This field may not be blank."]}),
    ({"remove_attributes": "tier"}, {"remove_attributes": ['Expected a list of items but got type "str".']}),
])
def test_a_removal_that_cannot_be_done_as_asked_is_a_400_and_changes_nothing(tenant_a, customer, api_a, body, errors) -> None:
    before = stored(tenant_a, customer)

    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", body, format="json")

    assert (response.status_code, response.json()) == (400, errors)
    assert stored(tenant_a, customer) == before


def test_a_viewer_cannot_remove_attributes(tenant_a, customer) -> None:
    from clmsite.models import Role
    from tests.conftest import api_client_for

    response = api_client_for(tenant_a, Role.VIEWER).patch(f"/api/v1/customers/{customer.pk}/", {"remove_attributes": ["tier"]}, format="json")

    assert response.status_code == 403
    assert stored(tenant_a, customer)[0] == {"tier": "gold", "city": "Oslo"}


def _at_once(count: int, work: Any) -> tuple[list[Any], list[Exception]]:
    """``work(i)`` in ``count`` threads (each its own database connection), started together."""
    import threading

    from django.db import connection

    results, errors = [], []
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results.append(work(i))
        except Exception as exc:  # returned to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_two_campaigns_launched_at_once_do_not_share_customers(tenant_a) -> None:
    from campaigns import services
    from campaigns.models import Action, Campaign, CampaignMember
    from tests.test_qa_round5 import insights

    insights(tenant_a, 30)
    with tenant_context(tenant_a):
        ids = [Campaign.objects.create(name=f"Race {i}", action=Action.WIN_BACK, control_share=0.1).pk for i in range(2)]

    launched, refused = _at_once(2, lambda i: services.do_launch_campaign(tenant_a, ids[i]))

    # One takes the audience; the other finds it held by a running campaign, as one after the other.
    assert len(launched) == 1 and launched[0].audience_size == 30
    assert len(refused) == 1 and isinstance(refused[0], services.CampaignStateError) and "running campaigns already" in str(refused[0])
    with tenant_context(tenant_a):
        assert CampaignMember.objects.count() == 30 and CampaignMember.objects.values("customer").distinct().count() == 30


@pytest.mark.django_db(transaction=True)
def test_saved_segments_created_at_once_with_one_name_make_one_segment(tenant_a) -> None:
    from modeling import insights
    from modeling.models import Segment

    created, refused = _at_once(4, lambda i: insights.do_create_saved_segment(tenant_a, "Dup race" if i % 2 else "dup RACE", {"stages": ["new"]}))

    assert len(created) == 1 and len(refused) == 3 and all(isinstance(e, insights.SegmentNameTaken) for e in refused)
    with tenant_context(tenant_a):
        assert Segment.objects.filter(kind=Segment.Kind.SAVED).count() == 1


@pytest.mark.parametrize("url", ["/api/v1/campaigns/", "/api/v1/segments/"])
def test_filters_in_a_form_encoded_or_multipart_body_are_read_as_json_not_dropped(tenant_a, api_a, url) -> None:
    base = {"name": "Form", **({"action": "win_back"} if "campaigns" in url else {})}

    form = api_a.post(url, {**base, "filters": '{"stages": ["lapsed"], "orders_min": 2}'}, format="multipart")
    encoded = api_a.post(url, "&".join(f"{k}={v}" for k, v in {**base, "name": "Encoded", "filters": '{"stages":["new"]}'}.items()),
                         content_type="application/x-www-form-urlencoded")
    garbage = api_a.post(url, {**base, "name": "Garbage", "filters": "garbage"}, format="multipart")

    assert form.status_code == 201 and form.json()["filters"] == {"stages": ["lapsed"], "orders_min": 2}
    assert encoded.status_code == 201 and encoded.json()["filters"] == {"stages": ["new"]}
    assert garbage.status_code == 400 and garbage.json() == {"filters": ['Must be a JSON object, e.g. {"stages": ["lapsed"]}.']}


def test_only_admins_set_a_launch_time_or_a_webhook_and_then_only_they_edit_the_campaign(tenant_a, api_a, client, django_user_model) -> None:
    """A launch time launches with nobody pressing Launch, and a webhook receives the treated
    customers' contact details: analysts, who may not launch, set neither, and cannot change
    whom such a campaign (or the saved segment it targets) sends to."""
    import datetime as dt

    from django.utils import timezone

    from campaigns.models import Campaign
    from clmsite.models import Role
    from clmsite.services import do_add_member
    from modeling.models import Segment
    from tests.conftest import api_client_for

    analyst = api_client_for(tenant_a, Role.ANALYST)
    when = (timezone.now() + dt.timedelta(days=1)).isoformat()
    for body in ({"scheduled_for": when}, {"webhook_url": "https://hooks.example.com/x"}):
        refused = analyst.post("/api/v1/campaigns/", {"name": "Sneaky", "action": "win_back", **body}, format="json")
        assert refused.status_code == 403 and "Only an admin or owner can set" in refused.json()["detail"]
    with tenant_context(tenant_a):
        segment = Segment.objects.create(kind=Segment.Kind.SAVED, key="vips", name="VIPs", filters={"value_tiers": ["high"]})
    draft = analyst.post("/api/v1/campaigns/", {"name": "Plain", "action": "win_back", "segment": segment.pk, "webhook_url": ""}, format="json")
    assert draft.status_code == 201
    url = f"/api/v1/campaigns/{draft.json()['id']}/"
    assert analyst.patch(url, {"scheduled_for": when}, format="json").status_code == 403
    assert analyst.patch(url, {"name": "Renamed"}, format="json").status_code == 200  # a plain draft is the analyst's to edit
    # Once an admin schedules it with a webhook, only admins change it.
    assert api_a.patch(url, {"scheduled_for": when, "webhook_url": "https://hooks.example.com/x"}, format="json").status_code == 200
    refused = analyst.patch(url, {"filters": {}, "segment": None, "control_share": 0}, format="json")
    assert refused.status_code == 403 and refused.json()["detail"].startswith("Only an admin or owner can change a campaign with a launch time")
    assert api_a.patch(url, {"name": "Checked by an admin"}, format="json").status_code == 200

    # On the web: the form keeps the two fields for an analyst; such a campaign, and its
    # saved segment, are not theirs to edit.
    user = django_user_model.objects.create_user("ana", password="ana-pass-123")
    do_add_member(tenant_a, user, Role.ANALYST)
    client.force_login(user)
    other = analyst.post("/api/v1/campaigns/", {"name": "Other", "action": "win_back"}, format="json").json()
    assert client.get(f"/campaigns/{other['id']}/edit/").content.decode().count("set by an admin or owner") == 2
    client.post(f"/campaigns/{other['id']}/edit/", {"name": "Web", "action": "win_back", "channel": "email", "control_share": 10,
                                                   "attribution_days": 30, "scheduled_for": "", "webhook_url": "https://evil.example.com/"})
    response = client.post(f"/campaigns/{draft.json()['id']}/edit/", {"name": "Web", "action": "win_back", "channel": "email", "control_share": 0,
                                                                     "attribution_days": 30})
    assert response.status_code == 302
    edited = client.post(f"/segments/{segment.pk}/edit/", {"name": "VIPs"})
    assert edited.status_code == 302
    with tenant_context(tenant_a):
        assert Campaign.objects.get(pk=other["id"]).webhook_url == "" and Campaign.objects.get(pk=other["id"]).name == "Web"
        scheduled = Campaign.objects.get(pk=draft.json()["id"])
        assert (scheduled.name, scheduled.control_share, scheduled.state) == ("Checked by an admin", 0.1, "scheduled")
        assert Segment.objects.get(pk=segment.pk).filters == {"value_tiers": ["high"]}


def test_a_customer_keeps_at_most_a_hundred_attributes(tenant_a, customer, api_a, tmp_path) -> None:
    from customers.services.imports import ATTRIBUTES_MAX, import_rows

    header = ",".join(f"a{i}" for i in range(ATTRIBUTES_MAX + 1))
    path = write_csv(tmp_path / "wide.csv", f"customer_id,{header}\nc9,{','.join('x' * (ATTRIBUTES_MAX + 1))}\n")
    refused = import_csv(tenant_a, "customers", path)
    assert not refused.ok and "101 columns besides the customer's own would become attributes; a customer keeps at most 100" in refused.message
    assert refused.error_count == 1 and refused.errors[0].message == "101 attribute columns; at most 100"  # the error list says it too (session 24: it was empty)
    assert not import_rows(tenant_a, "customers", [{"customer_id": "c9", **{f"a{i}": "x" for i in range(ATTRIBUTES_MAX + 1)}}]).ok
    with tenant_context(tenant_a):
        assert not Customer.objects.filter(external_id="c9").exists()
    # The customer has 2: 98 more fit, 99 do not.
    url = f"/api/v1/customers/{customer.pk}/"
    too_many = api_a.patch(url, {"attributes": {f"a{i}": "x" for i in range(99)}}, format="json")
    assert too_many.status_code == 400 and too_many.json()["attributes"][0].startswith("A customer keeps at most 100 attributes; this would make 101.")
    assert stored(tenant_a, customer)[0] == {"tier": "gold", "city": "Oslo"}
    assert api_a.patch(url, {"attributes": {f"a{i}": "x" for i in range(98)}}, format="json").status_code == 200


def test_every_conflicting_order_line_is_counted_though_only_the_first_are_listed(tenant_a, tmp_path) -> None:
    """150 order ids each given to two customers: 150 errors in 150 rows, the first 100 listed
    (the total said 100, so a merchant who fixed those expected the file to go through)."""
    lines = "".join(f"X{i},XO{i},2026-01-01,10.00\nY{i},XO{i},2026-01-01,10.00\n" for i in range(150))
    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "conflicts.csv", "customer_id,order_id,ordered_at,amount\n" + lines))

    assert not result.ok and result.error_count == 150 and len(result.errors) == 100
    assert result.message.startswith("Nothing was imported: 150 errors in 150 rows (the first 100 are listed).")


def test_order_lines_repeated_cell_for_cell_are_imported_with_a_warning(tenant_a, tmp_path) -> None:
    """Rows sharing an order id are lines of one order, so an export that doubled a row adds it
    to the order: imported as documented, but the result says so."""
    body = "customer_id,order_id,ordered_at,amount,sku\nc1,o1,2025-01-05,10.00,A\nc1,o1,2025-01-05,10.00,A\nc1,o1,2025-01-05,5.00,B\nc2,o2,2025-01-06,7.00,A\n"
    path = write_csv(tmp_path / "doubled.csv", body)

    first, again = import_csv(tenant_a, "orders", path), import_csv(tenant_a, "orders", path)

    for result in (first, again):
        assert result.ok and result.details["repeated_lines"] == 1
        assert "1 line repeats the line before cell for cell: it counts as another line of its order." in result.message
    clean = import_csv(tenant_a, "orders", write_csv(tmp_path / "clean.csv", body.replace("c1,o1,2025-01-05,10.00,A\n", "", 1)))
    assert clean.ok and "repeated_lines" not in clean.details and "cell for cell" not in clean.message


def test_a_shop_systems_export_is_told_its_own_columns(tenant_a, tmp_path) -> None:
    # A WooCommerce-style export (Shopify's own exports import as they come: tests/test_shopify.py).
    header = "Order Number,Order Date,Billing Email,Order Currency,Order Total,Quantity,Item Name,Item Cost,SKU"
    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "woo.csv", header + "\n1001,2025-01-05,a@example.com,EUR,10.00,1,Tee,10.00,T1\n"))

    assert not result.ok
    assert result.message.endswith("The file's columns are Order Number, Order Date, Billing Email, Order Currency, Order Total, Quantity, Item Name, "
                                   "Item Cost, SKU: rename those that hold them.")
