"""Tenant isolation, generated from the URL conf: every page and endpoint that takes an
id is walked with another tenant's ids. A new URL with an id and no entry in
``OBJECTS_BY_URL`` fails this suite, so coverage cannot silently fall behind."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from campaigns.models import Campaign, PlaybookRule
from clmsite.models import ApiKey, Membership, Role
from clmsite.services import do_create_api_key
from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, Product, Review
from customers.services.import_jobs import do_start_import
from modeling.models import CustomerInsight, Job, ModelVersion, Prediction, Segment, StageSnapshot

pytestmark = pytest.mark.django_db

# URL name -> (how to find shop A's object for it, HTTP method)
OBJECTS_BY_URL: dict[str, tuple[str, str]] = {
    "customer-detail": ("customer", "GET"),
    "order-detail": ("order", "GET"),
    "product-detail": ("product", "GET"),
    "review-detail": ("review", "GET"),
    "import-detail": ("job", "GET"),
    "import-errors": ("job", "GET"),
    "customer_detail": ("customer", "GET"),
    "import_detail": ("job", "GET"),
    "import_checked": ("job", "POST"),
    "job_status": ("job", "GET"),
    "cancel_job": ("job", "POST"),
    "revoke_api_key": ("api_key", "POST"),
    "change_member_role": ("membership", "POST"),
    "remove_member": ("membership", "POST"),
    "send_invite": ("membership", "POST"),
    "accept_invitation": ("invitation", "POST"),  # a login's own invitations: another login's is a 404
    "decline_invitation": ("invitation", "POST"),
    "model_version": ("model_version", "GET"),
    "promote_version": ("model_version", "POST"),
    "model-detail": ("model_version", "GET"),
    "model-promote": ("model_version", "POST"),
    "job-detail": ("job", "GET"),
    "job-cancel": ("job", "POST"),
    "prediction-detail": ("prediction", "GET"),
    "segment-detail": ("segment", "GET"),
    "segment-members": ("segment", "GET"),
    "insight-detail": ("customer", "GET"),  # insights are looked up by customer id
    "insight-stages": ("customer", "GET"),
    "segment_detail": ("segment", "GET"),
    "delete_segment": ("segment", "POST"),
    "edit_segment": ("segment", "GET"),
    "playbook_rule": ("rule", "GET"),
    "playbook_delete_rule": ("rule", "POST"),
    "campaign-detail": ("campaign", "GET"),
    "campaign-launch": ("campaign", "POST"),
    "campaign_delete": ("campaign", "POST"),
    "campaign-cancel": ("campaign", "POST"),
    "campaign-rotate-webhook-secret": ("campaign", "POST"),
    "campaign-report": ("campaign", "GET"),
    "campaign-audience": ("campaign", "GET"),
    "campaign_detail": ("campaign", "GET"),
    "campaign_edit": ("campaign", "GET"),
    "campaign_launch": ("campaign", "POST"),
    "campaign_cancel": ("campaign", "POST"),
    "campaign_rotate_secret": ("campaign", "POST"),
    "campaign_audience_csv": ("campaign", "GET"),
}
# URLs whose parameter is not an object id; each is scoped inside its service.
# <target> is a model target name (the rollback only sees the tenant's versions); <action> a
# playbook action (the draft is built from the tenant's own insights).
# <uidb64>/<token> is an invite link: Django's signed token, checked against the login it names.
NOT_ID_PARAMETERS = {"rollback", "campaign_suggest", "set_password"}
# Lists and pages without ids, fetched as shop B and searched for shop A's data.
LIST_URLS = {
    "/api/v1/customers/": "customer",
    "/api/v1/customers/?search=c1": "customer",
    "/api/v1/orders/": "order",
    "/api/v1/products/": "product",
    "/api/v1/reviews/": "review",
    "/api/v1/imports/": "job",
    "/api/v1/jobs/": "job",
    "/api/v1/segments/": "segment",
    "/api/v1/campaigns/": "campaign",
}
PAGE_URLS = ["/", "/customers/", "/customers/?q=c1", "/imports/", "/settings/api-keys/", "/settings/team/", "/account/password/", "/models/", "/settings/", "/lifecycle/", "/segments/", "/priorities/", "/playbook/", "/reviews/", "/campaigns/", "/campaigns/new/"]
MISSING_ID = 987654321
ODD_IDS = ["-1", "0", str(2**63), "00000000-0000-0000-0000-000000000000"]


def url_patterns_with_ids() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(patterns: list[Any], prefix: str = "") -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace == "admin":
                    continue  # Django admin is staff-only and deliberately cross-tenant
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern) and (pattern.pattern.converters or re.search(r"\(\?P<", str(pattern.pattern))):
                found.append((pattern.name or "", prefix + str(pattern.pattern)))

    walk(get_resolver().url_patterns)
    return found


@pytest.fixture
def shop_a_objects(shop_a_data, shop_b_data, alice, django_capture_on_commit_callbacks, django_user_model) -> dict[str, Any]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    with django_capture_on_commit_callbacks(execute=True):
        job = do_start_import(shop_a_data, "customers", SimpleUploadedFile("a.csv", b"customer_id\nc7\n"), "a.csv")
        do_start_import(shop_b_data, "customers", SimpleUploadedFile("b.csv", b"customer_id\nc7\n"), "b.csv")
    key, _ = do_create_api_key(shop_a_data, role=Role.VIEWER, name="A's key")
    with tenant_context(shop_a_data):
        version = ModelVersion.objects.create(target="purchase", family="tabular", as_of="2024-03-01", metrics={"auc": 0.777})
        prediction = Prediction.objects.create(
            customer=Customer.objects.get(external_id="c1"), as_of="2024-03-01", horizon_days=90, purchase_probability=0.4,
            churn_probability=0.6, expected_orders=0.5, predicted_value=12, value_tier="low",
        )
        segment = Segment.objects.create(tenant=shop_a_data, kind="saved", key="trail", name="Trail shoe fans", filters={"stages": ["new"]})
        CustomerInsight.objects.create(
            tenant=shop_a_data, customer=Customer.objects.get(external_id="c1"), as_of="2024-03-01", stage="new", stage_since="2024-02-01",
            stage_reason="new: first order 29 days ago", action="second_purchase", action_reason="Trail shoe nudge", priority=7.0,
        )
        StageSnapshot.objects.create(tenant=shop_a_data, customer=Customer.objects.get(external_id="c1"), as_of="2024-03-01", stage="new", since="2024-02-01", reason="new")
        rule = PlaybookRule.objects.create(tenant=shop_a_data, name="Trail shoe rule", action="nurture")
        campaign = Campaign.objects.create(tenant=shop_a_data, name="Trail shoe win-back", action="win_back", filters={"stages": ["new"]})
    with tenant_context(shop_b_data):
        Segment.objects.create(tenant=shop_b_data, kind="saved", key="road", name="Road fans", filters={"stages": ["new"]})
        Campaign.objects.create(tenant=shop_b_data, name="Road win-back", action="win_back")
    with tenant_context(shop_a_data):
        return {
            "segment": segment,
            "rule": rule,
            "campaign": campaign,
            "model_version": version,
            "prediction": prediction,
            "customer": Customer.objects.get(external_id="c1"),
            "order": Order.objects.get(external_id="o1"),
            "product": Product.objects.get(sku="s1"),
            "review": Review.objects.get(external_id="r1"),
            "job": Job.objects.get(pk=job.pk),
            "api_key": key,
            "membership": Membership.objects.get(user=alice, tenant=shop_a_data),
            "invitation": Membership.objects.create(user=django_user_model.objects.create_user("zoe", password="zoe-pass-123"), tenant=shop_a_data, accepted=False),
        }


def id_kwarg(name: str) -> str:
    return {
        "customer_detail": "customer_id", "import_detail": "job_id", "import_checked": "job_id", "job_status": "job_id", "cancel_job": "job_id", "revoke_api_key": "key_id",
        "change_member_role": "membership_id", "remove_member": "membership_id", "send_invite": "membership_id",
        "accept_invitation": "membership_id", "decline_invitation": "membership_id",
        "model_version": "version_id", "promote_version": "version_id", "segment_detail": "segment_id", "delete_segment": "segment_id", "edit_segment": "segment_id",
        "playbook_rule": "rule_id", "playbook_delete_rule": "rule_id", "insight-detail": "customer", "insight-stages": "customer",
        "campaign_detail": "campaign_id", "campaign_edit": "campaign_id", "campaign_launch": "campaign_id", "campaign_cancel": "campaign_id", "campaign_delete": "campaign_id",
        "campaign_audience_csv": "campaign_id", "campaign_rotate_secret": "campaign_id",
    }.get(name, "pk")


def test_every_url_with_an_id_is_covered():
    uncovered = [f"{name} ({route})" for name, route in url_patterns_with_ids() if name not in OBJECTS_BY_URL and name not in NOT_ID_PARAMETERS]
    assert uncovered == [], f"Add isolation coverage for: {uncovered}"


def strip_csrf(content: bytes) -> bytes:
    return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", content)


def test_foreign_ids_answer_exactly_like_missing_ones(shop_a_objects, charlie, api_b, client):
    client.force_login(charlie)
    for name, _ in url_patterns_with_ids():
        if name in NOT_ID_PARAMETERS:
            continue
        kind, method = OBJECTS_BY_URL[name]
        obj = shop_a_objects[kind]
        foreign = reverse(name, kwargs={id_kwarg(name): obj.pk})
        missing = reverse(name, kwargs={id_kwarg(name): MISSING_ID})
        caller = api_b if foreign.startswith("/api/") else client
        send = caller.post if method == "POST" else caller.get
        got_foreign, got_missing = send(foreign), send(missing)
        assert got_foreign.status_code == 404, (name, got_foreign.status_code)
        assert got_missing.status_code == 404, (name, got_missing.status_code)
        assert strip_csrf(got_foreign.content) == strip_csrf(got_missing.content), name


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_ids_behave_like_missing_ones(shop_a_objects, api_b, odd):
    for base in ("customers", "orders", "products", "reviews", "imports"):
        response = api_b.get(f"/api/v1/{base}/{odd}/")
        assert response.status_code == 404, (base, odd, response.status_code)


def test_foreign_writes_change_nothing(shop_a_objects, charlie, api_b, client):
    customer = shop_a_objects["customer"]
    assert api_b.patch(f"/api/v1/customers/{customer.pk}/", {"name": "pwned"}, format="json").status_code == 404
    assert api_b.put(f"/api/v1/customers/{customer.pk}/", {"name": "pwned"}, format="json").status_code == 405  # no PUT, for any id
    assert api_b.delete(f"/api/v1/customers/{customer.pk}/").status_code == 404
    version = shop_a_objects["model_version"]
    assert api_b.post(f"/api/v1/models/{version.pk}/promote/").status_code == 404
    assert api_b.post(f"/api/v1/jobs/{shop_a_objects['job'].pk}/cancel/").status_code == 404
    assert api_b.delete(f"/api/v1/segments/{shop_a_objects['segment'].pk}/").status_code == 404
    assert api_b.patch(f"/api/v1/segments/{shop_a_objects['segment'].pk}/", {"name": "pwned"}, format="json").status_code == 404
    with tenant_context(customer.tenant):
        order = customer.orders.first()
    assert api_b.patch(f"/api/v1/orders/{order.pk}/", {"status": "refunded"}, format="json").status_code == 404
    assert api_b.delete(f"/api/v1/orders/{order.pk}/").status_code == 404
    with tenant_context(customer.tenant):
        review, product = customer.reviews.first(), order.items.first().product
    assert api_b.patch(f"/api/v1/reviews/{review.pk}/", {"text": "pwned"}, format="json").status_code == 404
    assert api_b.patch(f"/api/v1/products/{product.pk}/", {"name": "pwned"}, format="json").status_code == 404
    campaign = shop_a_objects["campaign"]
    assert api_b.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": "pwned"}, format="json").status_code == 404
    assert api_b.post(f"/api/v1/campaigns/{campaign.pk}/launch/").status_code == 404
    refused = api_b.post("/api/v1/campaigns/", {"name": "x", "action": "win_back", "segment": shop_a_objects["segment"].pk}, format="json")
    assert refused.status_code == 400 and "segment" in refused.json()
    client.force_login(charlie)
    client.post(reverse("delete_segment", kwargs={"segment_id": shop_a_objects["segment"].pk}))
    client.post(reverse("playbook_delete_rule", kwargs={"rule_id": shop_a_objects["rule"].pk}))
    client.post(reverse("playbook_rule", kwargs={"rule_id": shop_a_objects["rule"].pk}), {"name": "pwned", "action": "nurture", "channel": "email", "position": 1})
    client.post(reverse("revoke_api_key", kwargs={"key_id": shop_a_objects["api_key"].pk}))
    client.post(reverse("change_member_role", kwargs={"membership_id": shop_a_objects["membership"].pk}), {"role": "viewer"})
    client.post(reverse("remove_member", kwargs={"membership_id": shop_a_objects["membership"].pk}))
    client.post(reverse("accept_invitation", kwargs={"membership_id": shop_a_objects["invitation"].pk}))
    client.post(reverse("cancel_job", kwargs={"job_id": shop_a_objects["job"].pk}))
    client.post(reverse("promote_version", kwargs={"version_id": version.pk}))
    client.post(reverse("rollback", kwargs={"target": "purchase"}))

    with tenant_context(customer.tenant):
        customer.refresh_from_db()
        assert customer.name == ""
        assert customer.orders.get(pk=order.pk).status == "completed"
        assert customer.reviews.get(pk=review.pk).text != "pwned" and type(product).objects.get(pk=product.pk).name != "pwned"
        assert Job.objects.get(pk=shop_a_objects["job"].pk).cancel_requested is False
        assert ModelVersion.objects.get(pk=version.pk).state == "candidate"
        assert Segment.objects.filter(pk=shop_a_objects["segment"].pk).exclude(name="pwned").exists()
        assert PlaybookRule.objects.get(pk=shop_a_objects["rule"].pk).name == "Trail shoe rule"
        assert Campaign.objects.get(pk=campaign.pk).state == "draft" and Campaign.objects.get(pk=campaign.pk).name == "Trail shoe win-back"
    assert ApiKey.objects.get(pk=shop_a_objects["api_key"].pk).revoked_at is None
    assert Membership.objects.get(pk=shop_a_objects["membership"].pk).role == Role.OWNER
    assert Membership.objects.get(pk=shop_a_objects["invitation"].pk).accepted is False


# Values only shop A has (shop B has look-alike rows with other values).
A_MARKERS = [b"Trail shoe", b"65.50", b"slow delivery", b"A's key", b"0.777"]


def test_lists_and_searches_show_nothing_of_another_tenant(shop_a_objects, charlie, api_b, client):
    for url, kind in LIST_URLS.items():
        response = api_b.get(url)
        assert response.json()["count"] >= 1, url  # B sees its own rows
        assert shop_a_objects[kind].pk not in {row["id"] for row in response.json()["results"]}, url
        for marker in A_MARKERS:
            assert marker not in response.content, (url, marker)
    client.force_login(charlie)
    for url in PAGE_URLS:
        response = client.get(url)
        assert response.status_code == 200, url
        for marker in A_MARKERS:
            assert marker not in response.content, (url, marker)


def test_bulk_rows_cannot_reach_into_another_tenant(shop_a_objects, api_b):
    """B's rows that name A's customers create B's own customers; A's are untouched."""
    rows = [{"customer_id": "c1", "order_id": "new-o", "ordered_at": "2024-05-01", "amount": "1.00"}]
    assert api_b.post("/api/v1/orders/bulk/", rows, format="json").status_code == 200
    customer = shop_a_objects["customer"]
    with tenant_context(customer.tenant):
        assert not Order.objects.filter(external_id="new-o").exists()
        customer.refresh_from_db()
        assert customer.order_count == 2


def test_user_without_membership_sees_no_tenant_pages(django_user_model, client, shop_a_data):
    loner = django_user_model.objects.create_user("loner", password="x-pass-123")
    client.force_login(loner)
    assert client.get("/").status_code == 404
    assert client.get("/customers/").status_code == 404


def test_session_api_access_is_scoped_to_the_active_tenant(shop_a_objects, charlie, client):
    client.force_login(charlie)
    assert client.get(f"/api/v1/customers/{shop_a_objects['customer'].pk}/").status_code == 404
    with tenant_context(charlie.memberships.get().tenant):
        b_customers = Customer.objects.count()
    assert client.get("/api/v1/customers/").json()["count"] == b_customers
