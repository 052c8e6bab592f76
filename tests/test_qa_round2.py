"""Defects found by QA against PostgreSQL with a real worker (2026-12-01), each pinned by a test."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from campaigns.models import Action, Campaign
from campaigns.tasks import run_campaign_schedule_task
from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer, Order
from customers.services.imports import import_rows
from modeling import jobs
from modeling.models import Job
from tests.conftest import api_client_for, write_csv

pytestmark = pytest.mark.django_db


def test_the_campaign_form_refuses_an_attribution_window_the_api_refuses(tenant_a, client, alice) -> None:
    client.force_login(alice)
    for days, message in (("999999999", "less than or equal to 365"), ("0", "greater than or equal to 1")):
        page = client.post("/campaigns/new/", {"name": "Too long", "action": Action.WIN_BACK, "channel": "email", "control_share": "10", "attribution_days": days})
        assert page.status_code == 200 and message in page.content.decode()
    page = client.post("/campaigns/new/", {"name": "Too big a control", "action": Action.WIN_BACK, "channel": "email", "control_share": "90", "attribution_days": "30"})
    assert "less than or equal to 50" in page.content.decode()
    with tenant_context(tenant_a):
        assert not Campaign.objects.exists()


def test_one_tenants_broken_campaign_does_not_stop_the_schedule_for_the_others(tenant_a, tenant_b) -> None:
    launched = timezone.now() - dt.timedelta(days=40)
    with tenant_context(tenant_a):  # a row saved before the form checked the window: its end overflows
        Campaign.objects.create(tenant=tenant_a, name="Broken", action=Action.WIN_BACK, state=Campaign.State.RUNNING, launched_at=launched, attribution_days=999_999_999)
    with tenant_context(tenant_b):
        ended = Campaign.objects.create(tenant=tenant_b, name="Ended", action=Action.WIN_BACK, state=Campaign.State.RUNNING, launched_at=launched, attribution_days=30)
    run_campaign_schedule_task()
    with tenant_context(tenant_b):
        ended.refresh_from_db()
    assert ended.state == Campaign.State.COMPLETED


def test_a_cancel_during_the_write_rolls_it_back_and_one_after_it_says_it_came_too_late(tenant_a, tmp_path, monkeypatch) -> None:
    from customers.services import imports
    from customers.services.import_jobs import run_import_job

    text = "customer_id,order_id,ordered_at,amount\n" + "".join(f"c{i},o{i},2025-01-0{1 + i % 9},12.50\n" for i in range(50))
    job = jobs.create_job(tenant_a, Job.Kind.IMPORT, params={"kind": "orders", "path": write_csv(tmp_path / "orders.csv", text)})
    checkpoint = jobs.JobReporter.checkpoint
    seen = []

    def cancel_right_after_the_checkpoint(self, fraction: float, message: str = "") -> None:
        checkpoint(self, fraction, message)
        with tenant_context(tenant_a):
            seen.append(Job.objects.get(pk=job.pk).message)
            jobs.do_request_cancel(tenant_a, job.pk)  # asked while the rows are being written

    monkeypatch.setattr(jobs.JobReporter, "checkpoint", cancel_right_after_the_checkpoint)
    assert run_import_job(tenant_a.pk, job.pk) is None
    assert seen == ["Writing to the database"]  # the bar leaves "Checking rows" before the write
    with tenant_context(tenant_a):
        finished = Job.objects.get(pk=job.pk)
        assert Customer.objects.count() == 0 and Order.objects.count() == 0  # the write was rolled back
    assert (finished.state, finished.message) == (Job.State.CANCELLED, "Cancelled; nothing was imported.")

    # A cancel after the last statement of the write, just before the commit, is too late: the
    # import commits and says so.
    monkeypatch.setattr(jobs.JobReporter, "checkpoint", checkpoint)
    load = imports._load

    def cancel_after_the_write(*args, **kwargs):
        result = load(*args, **kwargs)
        jobs.do_request_cancel(tenant_a, second.pk)
        return result

    monkeypatch.setattr(imports, "_load", cancel_after_the_write)
    second = jobs.create_job(tenant_a, Job.Kind.IMPORT, params={"kind": "orders", "path": write_csv(tmp_path / "again.csv", text)})
    result = run_import_job(tenant_a.pk, second.pk)
    assert result.ok and result.created == 50
    with tenant_context(tenant_a):
        finished = Job.objects.get(pk=second.pk)
        assert Customer.objects.count() == 50
    assert finished.state == Job.State.SUCCEEDED
    assert finished.message == "Imported 50 orders: 50 new, 0 updated, 0 unchanged. (The cancel came too late: the rows were already written.)"


def test_a_cancel_before_the_write_imports_nothing_and_drops_the_upload(tenant_a, tmp_path, monkeypatch) -> None:
    from pathlib import Path

    from customers.services.import_jobs import run_import_job

    path = Path(write_csv(tmp_path / "orders.csv", "customer_id,order_id,ordered_at,amount\nc1,o1,2025-01-01,12.50\n"))
    job = jobs.create_job(tenant_a, Job.Kind.IMPORT, params={"kind": "orders", "path": str(path)})
    report = jobs.JobReporter.__call__

    def cancel_is_asked_at_once(self, fraction, message=""):
        with tenant_context(tenant_a):
            Job.objects.filter(pk=self.job.pk).update(cancel_requested=True)
        return report(self, fraction, message)

    monkeypatch.setattr(jobs.JobReporter, "__call__", cancel_is_asked_at_once)
    assert run_import_job(tenant_a.pk, job.pk) is None
    with tenant_context(tenant_a):
        assert Job.objects.get(pk=job.pk).state == Job.State.CANCELLED and not Customer.objects.exists()
    assert not path.exists()  # the upload is not kept once the job has ended
    shown = api_client_for(tenant_a, Role.VIEWER).get(f"/api/v1/jobs/{job.pk}/").json()
    assert shown["params"] == {"kind": "orders"}  # the server's upload path is not the client's business


def test_an_api_body_over_the_upload_limit_answers_413(tenant_a, settings) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    api = api_client_for(tenant_a, Role.ADMIN)
    rows = [{"customer_id": f"c{i}", "name": "x" * 100} for i in range(200)]
    response = api.post("/api/v1/customers/bulk/", data=json.dumps(rows), content_type="application/json")
    assert response.status_code == 413 and "larger than" in response.json()["detail"] and "fewer rows" in response.json()["detail"]
    segment = api.post("/api/v1/segments/", data=json.dumps({"name": "x" * 20_000, "filters": {}}), content_type="application/json")
    assert segment.status_code == 413 and "rows" not in segment.json()["detail"]  # not a bulk request: no advice about rows


def test_an_email_too_long_is_a_row_error_and_an_edit_is_checked_as_an_import_is(tenant_a) -> None:
    result = import_rows(tenant_a, "customers", [{"customer_id": "ok"}, {"customer_id": "long", "email": "a" * 300 + "@example.com"}])
    assert not result.ok and [(e.row, e.column, e.message) for e in result.errors] == [(2, "email", "is 312 characters long; the limit is 254")]
    assert import_rows(tenant_a, "customers", [{"customer_id": "c1", "email": "A@Example.com"}]).ok
    api = api_client_for(tenant_a, Role.ANALYST)
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    bad = api.patch(f"/api/v1/customers/{customer.pk}/", {"email": "bad"}, format="json")
    assert bad.status_code == 400 and bad.json() == {"email": ["'bad' is not an email address"]}
    good = api.patch(f"/api/v1/customers/{customer.pk}/", {"email": "New@Example.com", "name": "New"}, format="json")
    assert good.status_code == 200 and good.json()["email"] == "new@example.com"
    with tenant_context(tenant_a):
        edited = Customer.objects.get(pk=customer.pk)
    assert edited.updated_at > customer.updated_at


def test_json_objects_lists_and_booleans_in_named_columns_are_refused(tenant_a) -> None:
    result = import_rows(tenant_a, "customers", [{"customer_id": {"a": 1}, "name": True, "country": 12, "loyalty": {"tier": "gold"}}])
    assert not result.ok
    assert [(e.row, e.column, e.message) for e in result.errors] == [
        (1, "customer_id", "must be a string or a number, not a JSON object"), (1, "name", "must be a string or a number, not true/false"),
        (1, "loyalty", "an attribute must be text, a number or true/false, not a JSON object"),  # every problem of the row in one answer
    ]
    # Other keys are attributes: text, a number or true/false, flat as a CSV column (and as
    # the API's PATCH takes them); an object is a row error of its own.
    nested = import_rows(tenant_a, "customers", [{"customer_id": 7, "country": 12, "loyalty": {"tier": "gold"}}])
    assert [(e.column, e.message) for e in nested.errors] == [("loyalty", "an attribute must be text, a number or true/false, not a JSON object")]
    assert import_rows(tenant_a, "customers", [{"customer_id": 7, "country": 12, "loyalty": "gold"}]).ok
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="7").attributes == {"loyalty": "gold"}


def test_only_admins_cancel_training_as_only_admins_start_it(tenant_a, client, django_user_model) -> None:
    from clmsite.services import do_add_member

    training = jobs.create_job(tenant_a, Job.Kind.TRAIN, params={"as_of": "2025-06-30"})
    analyst = api_client_for(tenant_a, Role.ANALYST)
    refused = analyst.post(f"/api/v1/jobs/{training.pk}/cancel/")
    assert refused.status_code == 403 and refused.json() == {"detail": "Only an admin or above can cancel a training job."}
    user = django_user_model.objects.create_user("carol", password="carol-pass-123")
    do_add_member(tenant_a, user, Role.ANALYST)
    client.force_login(user)
    client.post(f"/jobs/{training.pk}/cancel/", {"next": "/models/"})
    with tenant_context(tenant_a):
        assert Job.objects.get(pk=training.pk).state == Job.State.QUEUED
    assert api_client_for(tenant_a, Role.ADMIN).post(f"/api/v1/jobs/{training.pk}/cancel/").json()["state"] == "cancelled"
    scoring = jobs.create_job(tenant_a, Job.Kind.SCORE, params={"as_of": "2025-06-30"})
    assert analyst.post(f"/api/v1/jobs/{scoring.pk}/cancel/").json()["state"] == "cancelled"


def test_a_nul_character_in_the_customer_search_is_not_a_server_error(tenant_a, client, alice) -> None:
    client.force_login(alice)
    assert client.get("/customers/?q=%00").status_code == 200
    answer = api_client_for(tenant_a).get("/api/v1/customers/?search=%00")
    assert answer.status_code == 400 and "null" in answer.json()["search"][0].lower()  # named after the parameter, as every filter error is
