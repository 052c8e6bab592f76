"""Merchant pages: login, tenant switching, roles, upload with error report."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from clmsite.models import ApiKey, Role
from clmsite.services import do_add_member
from clmsite.tenancy import tenant_context
from customers.models import Customer
from modeling.models import Job

pytestmark = pytest.mark.django_db


def test_pages_need_login(client):
    response = client.get("/customers/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_login_and_browse(shop_a_data, alice, client):
    response = client.post("/login/", {"username": "alice", "password": "alice-pass-123"}, follow=True)
    assert response.status_code == 200
    assert b"Revenue and orders by month" in response.content
    assert response["Cache-Control"] == "private, no-store"

    listing = client.get("/customers/", {"q": "c1", "sort": "-spent"})
    assert b"c1" in listing.content and b">c2<" not in listing.content
    with tenant_context(shop_a_data):
        c1 = Customer.objects.get(external_id="c1")
    detail = client.get(f"/customers/{c1.pk}/")
    assert b"Great fit but slow delivery" in detail.content
    assert b"Trail shoe" in detail.content


def test_user_in_two_tenants_switches(shop_a_data, shop_b_data, alice, client):
    do_add_member(shop_b_data, alice, Role.ANALYST)
    client.force_login(alice)
    assert b"Shop A" in client.get("/").content

    client.post("/tenant/switch/", {"tenant_id": shop_b_data.pk})

    page = client.get("/customers/")
    assert b"Road shoe" not in page.content  # list page shows customers, not products
    assert page.context["page"].paginator.count == 2
    assert page.context["tenant"] == shop_b_data


def test_switching_to_a_foreign_tenant_is_404(shop_a_data, shop_b_data, charlie, client):
    client.force_login(charlie)
    assert client.post("/tenant/switch/", {"tenant_id": shop_a_data.pk}).status_code == 404
    assert client.get("/").context["tenant"] == shop_b_data


def test_upload_shows_progress_page_and_row_errors(tenant_a, alice, client, django_capture_on_commit_callbacks):
    client.force_login(alice)
    bad = SimpleUploadedFile("orders.csv", b"customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,12\nc2,o2,someday,5\n")

    with django_capture_on_commit_callbacks(execute=True):
        posted = client.post("/imports/", {"kind": "orders", "file": bad})
    response = client.get(posted["Location"])

    assert response.status_code == 200
    assert b"someday" in response.content and b"ordered_at" in response.content
    assert b'data-testid="import-errors"' in response.content
    with tenant_context(tenant_a):
        assert Customer.objects.count() == 0
        assert Job.objects.get().state == Job.State.FAILED


def test_viewer_cannot_upload_or_manage_keys(shop_a_data, bob, client):
    client.force_login(bob)
    upload = SimpleUploadedFile("c.csv", b"customer_id\nzz\n")
    assert client.post("/imports/", {"kind": "customers", "file": upload}).status_code == 404
    assert client.get("/settings/api-keys/").status_code == 404
    assert b"Upload a CSV file" not in client.get("/imports/").content
    with tenant_context(shop_a_data):
        assert not Customer.objects.filter(external_id="zz").exists()


def test_owner_creates_and_revokes_an_api_key(tenant_a, alice, client):
    client.force_login(alice)
    response = client.post("/settings/api-keys/", {"name": "Sync", "role": "viewer"}, follow=True)
    assert response.redirect_chain == [("/settings/api-keys/", 302)]  # a reload makes no second key
    raw = response.context["new_key"]
    assert raw.startswith("clm_") and raw.encode() in response.content
    key = ApiKey.objects.get(tenant=tenant_a)
    assert (key.name, key.role, key.matches(raw)) == ("Sync", "viewer", True)
    assert raw.encode() not in client.get("/settings/api-keys/").content  # shown once

    client.post(f"/settings/api-keys/{key.pk}/revoke/")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_job_status_json(tenant_a, alice, client, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/imports/", {"kind": "customers", "file": SimpleUploadedFile("c.csv", b"customer_id\nq1\n")})
    with tenant_context(tenant_a):
        job = Job.objects.get()
    body = client.get(f"/jobs/{job.pk}/status/").json()
    assert (body["state"], body["percent"], body["finished"]) == ("succeeded", 100, True)


def test_unknown_page_is_a_friendly_404(alice, client):
    client.force_login(alice)
    response = client.get("/no/such/page/")
    assert response.status_code == 404


def test_owner_edits_horizon_and_tiers_and_viewer_cannot(tenant_a, alice, bob, client):
    client.force_login(alice)
    response = client.post("/settings/", {"name": "Shop A+", "currency": "eur", "horizon_days": 60, "high_tier_percent": 10, "low_tier_percent": 60,
                                          "retrain_weekday": 2, "retrain_hour": 1, "score_hour": 5})
    assert response.status_code == 302
    tenant_a.refresh_from_db()
    assert (tenant_a.name, tenant_a.currency, tenant_a.horizon_days) == ("Shop A+", "EUR", 60)
    assert tenant_a.settings["value_tier_quantiles"] == {"high": 0.9, "medium": 0.6}
    bad = client.post("/settings/", {"name": "x", "currency": "EUR", "horizon_days": 60, "high_tier_percent": 50, "low_tier_percent": 60,
                                     "retrain_weekday": 2, "retrain_hour": 1, "score_hour": 5})
    assert bad.status_code == 200 and b"must add up to less than 100" in bad.content
    for code in ("nan", "inf", "ABC"):
        refused = client.post("/settings/", {"name": "x", "currency": code, "horizon_days": 60, "high_tier_percent": 10, "low_tier_percent": 60,
                                             "retrain_weekday": 2, "retrain_hour": 1, "score_hour": 5})
        assert refused.status_code == 200 and b"ISO 4217" in refused.content
    tenant_a.refresh_from_db()
    assert tenant_a.currency == "EUR"
    client.force_login(bob)
    assert client.get("/settings/").status_code == 404
