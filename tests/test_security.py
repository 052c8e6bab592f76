"""Hardening: login lockout, the role matrix, enqueue-after-commit and the API's fields."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from campaigns.models import Campaign
from clmsite.models import Role
from clmsite.services import do_add_member
from clmsite.tenancy import tenant_context
from modeling.models import Job, ModelVersion
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db
SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "api_fields.json"


# --- Login -----------------------------------------------------------------------------------


def test_the_sixth_failed_login_is_refused_and_locks_even_the_right_password(client, alice, bob) -> None:
    for _ in range(5):
        response = client.post("/login/", {"username": "alice", "password": "wrong-password"})
        assert response.status_code == 200 and b"didn't match" in response.content
    refused = client.post("/login/", {"username": "alice", "password": "wrong-password"})
    assert refused.status_code == 429 and b"Too many failed sign-in attempts" in refused.content
    locked = client.post("/login/", {"username": "alice", "password": "alice-pass-123"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another account from the same address is not locked.
    assert client.post("/login/", {"username": "bob", "password": "bob-pass-123"}).status_code == 302


def test_a_success_before_the_limit_resets_the_count(client, alice) -> None:
    for _ in range(4):
        client.post("/login/", {"username": "alice", "password": "wrong-password"})
    assert client.post("/login/", {"username": "alice", "password": "alice-pass-123"}).status_code == 302
    client.logout()
    for _ in range(4):
        client.post("/login/", {"username": "alice", "password": "wrong-password"})
    assert client.post("/login/", {"username": "alice", "password": "alice-pass-123"}).status_code == 302


# --- Jobs enqueue only after commit --------------------------------------------------------------


def test_a_rolled_back_transaction_enqueues_nothing(tenant_a, django_capture_on_commit_callbacks) -> None:
    from modeling.services import do_start_scoring

    with tenant_context(tenant_a):  # a shop with models: scoring one without any is refused before it queues
        for target in ("purchase", "orders", "revenue"):
            ModelVersion.objects.create(tenant=tenant_a, target=target, family="bgnbd", as_of="2024-01-31", state=ModelVersion.State.ACTIVE)
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        do_start_scoring(tenant_a)
        raise RuntimeError("the request failed after queuing")
    assert callbacks == []
    with tenant_context(tenant_a):
        assert not Job.objects.exists()
    with django_capture_on_commit_callbacks() as callbacks:  # the same call, committed, sends exactly one task
        do_start_scoring(tenant_a)
    assert len(callbacks) == 1


# --- Roles ---------------------------------------------------------------------------------------

ORDER = [Role.VIEWER, Role.ANALYST, Role.ADMIN, Role.OWNER]


@pytest.fixture
def matrix(tenant_a, django_user_model) -> dict[str, Any]:
    users = {}
    for role in ORDER:
        user = django_user_model.objects.create_user(f"user-{role}", password="pw-123-456-789")
        do_add_member(tenant_a, user, role)
        users[role] = user
    with tenant_context(tenant_a):
        version = ModelVersion.objects.create(target="purchase", family="tabular", as_of="2024-03-01")
    return {"users": users, "version": version}


def _campaign(tenant) -> Campaign:
    with tenant_context(tenant):
        return Campaign.objects.create(tenant=tenant, name="Matrix", action="win_back")


# (what, minimum role, how) — ``how(client_or_api, objects)`` returns a response.
WEB_ACTIONS = [
    ("retrain", Role.ADMIN, lambda c, o: c.post("/models/retrain/", {})),
    ("score now", Role.ANALYST, lambda c, o: c.post("/models/score/", {"as_of": "2024-03-01"})),
    ("promote", Role.ADMIN, lambda c, o: c.post(f"/models/{o['version'].pk}/promote/")),
    ("launch", Role.ADMIN, lambda c, o: c.post(f"/campaigns/{o['campaign'].pk}/launch/")),
    ("draft a campaign", Role.ANALYST, lambda c, o: c.get("/campaigns/new/")),
    ("manage API keys", Role.ADMIN, lambda c, o: c.get("/settings/api-keys/")),
    ("shop settings", Role.ADMIN, lambda c, o: c.get("/settings/")),
    ("edit the playbook", Role.ADMIN, lambda c, o: c.get("/playbook/new/")),
    ("upload a file", Role.ANALYST, lambda c, o: c.post("/imports/", {"kind": "customers"})),
    ("read the dashboard", Role.VIEWER, lambda c, o: c.get("/")),
]
API_ACTIONS = [
    ("retrain", Role.ADMIN, lambda a, o: a.post("/api/v1/models/retrain/", {}, format="json")),
    ("promote", Role.ADMIN, lambda a, o: a.post(f"/api/v1/models/{o['version'].pk}/promote/")),
    ("launch", Role.ADMIN, lambda a, o: a.post(f"/api/v1/campaigns/{o['campaign'].pk}/launch/")),
    ("draft a campaign", Role.ANALYST, lambda a, o: a.post("/api/v1/campaigns/", {"name": "x", "action": "win_back"}, format="json")),
    ("save a segment", Role.ANALYST, lambda a, o: a.post("/api/v1/segments/", {"name": f"s-{id(a)}", "filters": {}}, format="json")),
    ("bulk upsert", Role.ANALYST, lambda a, o: a.post("/api/v1/customers/bulk/", [{"customer_id": "m1"}], format="json")),
    ("delete a customer", Role.ADMIN, lambda a, o: a.delete("/api/v1/customers/987654/")),
    ("queue scoring", Role.ANALYST, lambda a, o: a.post("/api/v1/jobs/score/", {}, format="json")),
    ("read customers", Role.VIEWER, lambda a, o: a.get("/api/v1/customers/")),
]


@pytest.mark.parametrize("what,minimum,how", WEB_ACTIONS, ids=[a[0] for a in WEB_ACTIONS])
def test_web_role_matrix(tenant_a, matrix, client, what, minimum, how) -> None:
    for role in ORDER:
        client.force_login(matrix["users"][role])
        response = how(client, {**matrix, "campaign": _campaign(tenant_a)})
        allowed = ORDER.index(role) >= ORDER.index(minimum)
        assert (response.status_code != 404) == allowed, (what, role, response.status_code)


@pytest.mark.parametrize("what,minimum,how", API_ACTIONS, ids=[a[0] for a in API_ACTIONS])
def test_api_key_role_matrix(tenant_a, matrix, what, minimum, how) -> None:
    for role in ORDER:
        response = how(api_client_for(tenant_a, role), {**matrix, "campaign": _campaign(tenant_a)})
        allowed = ORDER.index(role) >= ORDER.index(minimum)
        assert (response.status_code != 403) == allowed, (what, role, response.status_code)
        assert response.status_code < 500


# --- What the API answers ---------------------------------------------------------------------------


def schema_fields(*, in_responses: bool = False) -> dict[str, list[str]]:
    """Each component's fields; ``in_responses``: less the write-only ones (``remove_attributes``)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {name: sorted(field for field, spec in component["properties"].items() if not (in_responses and spec.get("writeOnly")))
            for name, component in sorted(schema["components"]["schemas"].items()) if "properties" in component}


def test_response_fields_match_the_snapshot() -> None:
    """Every serializer's fields, from the OpenAPI schema, against a reviewed list: adding or
    exposing a field is a deliberate change (run with UPDATE_SNAPSHOTS=1 and review the diff)."""
    current = schema_fields()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    changed = {name: {"added": sorted(set(current.get(name, [])) - set(fields)), "removed": sorted(set(fields) - set(current.get(name, [])))}
               for name, fields in expected.items() if current.get(name) != fields}
    new = sorted(set(current) - set(expected))
    assert not changed and not new, f"API fields changed: {changed}; new schemas: {new}"
    for secret in ("key_hash", "password", "tenant"):
        assert not any(secret in fields for name, fields in current.items() if name != "CustomerFilter"), secret


def test_list_responses_carry_exactly_the_documented_fields(shop_a_data, api_a) -> None:
    fields = schema_fields(in_responses=True)
    for url, component in (("/api/v1/customers/", "Customer"), ("/api/v1/orders/", "Order"), ("/api/v1/reviews/", "Review"), ("/api/v1/products/", "Product")):
        rows = api_a.get(url).json()["results"]
        assert rows and all(sorted(row) == fields[component] for row in rows), url


def test_a_poison_job_is_given_up_after_its_attempts(tenant_a, settings) -> None:
    """Each redelivery of a job whose worker keeps dying takes it over once its lease is
    stale; after MAX_ATTEMPTS it is failed instead of running forever."""
    import datetime as dt

    from django.utils import timezone

    from modeling import jobs

    settings.JOB_LEASE_SECONDS = 60
    job = jobs.create_job(tenant_a, Job.Kind.TRAIN, params={})
    for attempt in range(1, jobs.MAX_ATTEMPTS + 1):
        claimed = jobs.claim_job(tenant_a, job.pk)
        assert claimed is not None and claimed.attempts == attempt
        assert jobs.claim_job(tenant_a, job.pk) is None  # a duplicate delivery while it runs: skipped
        with tenant_context(tenant_a):  # the worker dies: the heartbeat goes stale
            Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    assert jobs.claim_job(tenant_a, job.pk) is None
    with tenant_context(tenant_a):
        job.refresh_from_db()
    assert job.state == Job.State.FAILED and "Gave up after" in job.message


def test_merchant_text_inside_chart_data_cannot_close_the_script_tag(tenant_a, alice, client) -> None:
    """Chart data is JSON inside <script type="application/json">: a learned segment named
    after an imported category that reads "</script><script>…" stays data, escaped."""
    from modeling.models import Segment

    evil = "</script><script>alert('x')</script>"
    with tenant_context(tenant_a):
        Segment.objects.create(tenant=tenant_a, kind=Segment.Kind.LEARNED, key="k1", name=f"Lapsed {evil} buyers", size=3, is_current=True)
    client.force_login(alice)
    page = client.get("/segments/").content.decode()
    assert "<script>alert(" not in page
    data = page.split('<script id="sizes-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["labels"] == [f"Lapsed {evil} buyers"]
