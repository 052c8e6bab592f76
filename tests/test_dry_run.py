"""A check ("dry run") of an import: every entrance (bulk API, CSV job over the API, the upload
page, the command line) runs the import's own checks and counts, then writes nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, OrderItem, Product, Review
from customers.services.imports import import_csv, import_rows
from modeling.models import Job
from tests.conftest import ORDERS_A, write_csv

pytestmark = pytest.mark.django_db

ORDER_ROWS = [
    {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "20.00", "sku": "s1"},
    {"customer_id": "c1", "order_id": "o2", "ordered_at": "2024-03-01", "amount": "40.00", "sku": "s1"},
    {"customer_id": "c9", "order_id": "o9", "ordered_at": "2024-04-01", "amount": "9.00", "sku": "s9"},
]


def _stored(tenant) -> tuple:
    with tenant_context(tenant):
        return (
            sorted(Customer.objects.values_list("external_id", "order_count", "total_spent", "updated_at")),
            sorted(Order.objects.values_list("external_id", "amount", "updated_at")),
            OrderItem.objects.count(), Product.objects.count(), Review.objects.count(),
        )


def test_a_dry_run_counts_what_the_import_then_does_and_writes_nothing(shop_a_data) -> None:
    before = _stored(shop_a_data)
    rows = [{"customer_id": "c2", "order_id": "o3", "ordered_at": "20240210", "amount": "13.37", "quantity": "1", "sku": "s2"},  # as stored
            {**ORDER_ROWS[1], "ordered_at": "2024-03-01T10:00:00Z", "amount": "45.00"}, ORDER_ROWS[2]]  # o2 changed, o9 new

    check = import_rows(shop_a_data, "orders", rows, dry_run=True)

    assert check.ok and check.dry_run
    assert (check.created, check.updated, check.unchanged) == (1, 1, 1)
    assert check.details["new_customers"] == 1 and check.details["new_products"] == 1
    assert check.message.startswith("Checked 3 orders: no errors. Importing them would make 1 new, update 1 and leave 1 unchanged.")
    assert check.message.endswith("Nothing was written.")
    assert _stored(shop_a_data) == before  # not a row, an aggregate or a timestamp moved

    done = import_rows(shop_a_data, "orders", rows)
    assert done.ok and not done.dry_run
    assert (done.created, done.updated, done.unchanged, done.details) == (check.created, check.updated, check.unchanged, check.details)
    assert _stored(shop_a_data) != before


def test_a_dry_run_finds_every_error_an_import_finds_including_those_only_the_database_sees(tenant_a) -> None:
    # A bad date is seen while reading; two rows of one order that disagree on its customer
    # only in SQL, after staging. The check reports both kinds as the import does.
    bad_cell = [{**ORDER_ROWS[0], "ordered_at": "not a date"}]
    conflict = [ORDER_ROWS[0], {**ORDER_ROWS[0], "customer_id": "c2"}]
    for rows in (bad_cell, conflict):
        check, real = import_rows(tenant_a, "orders", rows, dry_run=True), import_rows(tenant_a, "orders", rows)
        assert not check.ok and not real.ok
        assert [(e.row, e.column, e.message) for e in check.errors] == [(e.row, e.column, e.message) for e in real.errors]
        assert check.message == real.message.replace("Nothing was imported: ", "The check found ")
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_the_bulk_api_takes_dry_run_in_the_query_or_beside_rows(tenant_a, api_a) -> None:
    for url, body in (("/api/v1/orders/bulk/?dry_run=true", ORDER_ROWS), ("/api/v1/orders/bulk/", {"rows": ORDER_ROWS, "dry_run": True})):
        answer = api_a.post(url, body, format="json")
        assert answer.status_code == 200, answer.content
        assert answer.json()["dry_run"] is True and answer.json()["created"] == 3
    with tenant_context(tenant_a):
        assert not Order.objects.exists() and not Customer.objects.exists()

    # false writes, and the answer says it was no check
    written = api_a.post("/api/v1/orders/bulk/?dry_run=0", ORDER_ROWS, format="json")
    assert written.status_code == 200 and written.json()["dry_run"] is False and written.json()["created"] == 3
    with tenant_context(tenant_a):
        assert Order.objects.count() == 3


@pytest.mark.parametrize(("url", "body", "message"), [
    ("/api/v1/customers/bulk/?dry_run=yes", [{"customer_id": "x"}], "Must be true or false, 1 or 0, not 'yes'."),
    ("/api/v1/customers/bulk/", {"rows": [{"customer_id": "x"}], "dry_run": "true"}, 'Must be true or false (a JSON boolean), not a string ("true").'),
    ("/api/v1/customers/bulk/", {"rows": [{"customer_id": "x"}], "dry_run": None}, "Must be true or false (a JSON boolean), not null."),
])
def test_a_dry_run_flag_that_is_neither_true_nor_false_is_refused_writing_nothing(tenant_a, api_a, url, body, message) -> None:
    answer = api_a.post(url, body, format="json")
    # dry_run stays the result's boolean (as documented); the message names the flag
    assert answer.status_code == 400 and answer.json()["detail"] == f"Nothing was imported: dry_run: {message}"
    assert answer.json()["ok"] is False and answer.json()["dry_run"] is False
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_a_csv_check_over_the_api_is_a_job_that_writes_nothing_and_says_so(tenant_a, api_a, django_capture_on_commit_callbacks) -> None:
    upload = io.BytesIO(ORDERS_A.encode())
    upload.name = "orders.csv"
    with django_capture_on_commit_callbacks(execute=True):
        created = api_a.post("/api/v1/imports/", {"kind": "orders", "file": upload, "dry_run": "true"}, format="multipart")
    assert created.status_code == 202, created.content
    job = api_a.get(f"/api/v1/imports/{created.json()['id']}/").json()  # tasks run in-process in tests
    assert job["dry_run"] is True and job["state"] == "succeeded"
    assert job["summary"] == {"rows": 3, "created": 3, "updated": 0, "unchanged": 0, "error_count": 0,
                              "details": {"lines": 4, "new_customers": 2, "new_products": 2, "order_lines_written": 4}}
    assert job["message"].startswith("Checked 3 orders: no errors.")
    with tenant_context(tenant_a):
        assert not Order.objects.exists()

    upload.seek(0)
    with django_capture_on_commit_callbacks(execute=True):
        real = api_a.post("/api/v1/imports/", {"kind": "orders", "file": upload}, format="multipart").json()
    assert real["dry_run"] is False and api_a.get(f"/api/v1/imports/{real['id']}/").json()["summary"]["created"] == 3


def test_the_upload_page_checks_a_file_with_check_only(tenant_a, alice, client, tmp_path, django_capture_on_commit_callbacks) -> None:
    client.force_login(alice)
    assert 'data-testid="check-only"' in client.get("/imports/").content.decode()
    with open(write_csv(tmp_path / "orders.csv", ORDERS_A), "rb") as handle, django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/imports/", {"kind": "orders", "file": handle, "dry_run": "1"})
    with tenant_context(tenant_a):
        job = Job.objects.get(kind=Job.Kind.IMPORT)
    assert job.state == Job.State.SUCCEEDED and job.params["dry_run"] is True
    assert answer.status_code == 302 and answer["Location"] == f"/imports/{job.pk}/"
    page = client.get(answer["Location"]).content.decode()
    assert "Check of orders.csv" in page and 'data-testid="dry-run-note"' in page and "Would be new" in page and "Order lines it would write" in page
    assert "See your customers" not in page and 'data-testid="rescore-note"' not in page
    assert "check only" in client.get("/imports/").content.decode()
    with tenant_context(tenant_a):
        assert not Order.objects.exists()


def test_the_command_line_checks_a_file_with_dry_run(tenant_a, tmp_path) -> None:
    out = io.StringIO()
    call_command("import_data", "--tenant", tenant_a.slug, "--kind", "orders", "--dry-run", write_csv(tmp_path / "o.csv", ORDERS_A), stdout=out)
    assert "Checked 3 orders: no errors." in out.getvalue() and "(check job " in out.getvalue()
    with tenant_context(tenant_a):
        assert not Order.objects.exists()

    err = io.StringIO()
    with pytest.raises(CommandError, match="Check of bad.csv failed; nothing was written."):
        call_command("import_data", "--tenant", tenant_a.slug, "--kind", "orders", "--dry-run",
                     write_csv(tmp_path / "bad.csv", ORDERS_A.replace("13.37", "lots")), stdout=io.StringIO(), stderr=err)
    assert "row 5, column amount" in err.getvalue()


def test_a_dry_run_of_a_file_on_the_import_service_matches_the_import(shop_a_data, tmp_path) -> None:
    path = write_csv(tmp_path / "again.csv", ORDERS_A.replace("40.00", "41.00"))
    check = import_csv(shop_a_data, "orders", path, dry_run=True)
    real = import_csv(shop_a_data, "orders", path)
    assert check.dry_run and (check.rows, check.created, check.updated, check.unchanged) == (real.rows, real.created, real.updated, real.unchanged) == (3, 0, 1, 2)


def test_a_failed_check_still_says_it_was_a_check(tenant_a, api_a) -> None:
    answer = api_a.post("/api/v1/orders/bulk/?dry_run=true", [{**ORDER_ROWS[0], "amount": "lots"}], format="json")
    assert answer.status_code == 400 and answer.json()["dry_run"] is True and answer.json()["errors"][0]["column"] == "amount"


def test_a_csv_check_takes_only_true_false_1_or_0(tenant_a, api_a) -> None:
    upload = io.BytesIO(ORDERS_A.encode())
    upload.name = "orders.csv"
    refused = api_a.post("/api/v1/imports/", {"kind": "orders", "file": upload, "dry_run": "yes"}, format="multipart")
    assert refused.status_code == 400 and refused.json()["dry_run"] == ["Must be true or false, 1 or 0, not 'yes'."]
    with tenant_context(tenant_a):
        assert not Job.objects.exists()


def test_a_check_after_the_scoring_does_not_make_the_dashboard_say_data_came_in(tenant_a, tmp_path) -> None:
    from django.utils import timezone

    from customers.services.import_jobs import do_import_here
    from customers.views import imported_since_scoring

    with tenant_context(tenant_a):
        Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.SUCCEEDED, finished_at=timezone.now())
        do_import_here(tenant_a, "orders", write_csv(tmp_path / "o.csv", ORDERS_A), dry_run=True)
        assert not imported_since_scoring()
        do_import_here(tenant_a, "orders", write_csv(tmp_path / "o.csv", ORDERS_A))
        assert imported_since_scoring()


def test_a_passed_check_imports_its_file_without_choosing_it_again(tenant_a, alice, client, tmp_path, django_capture_on_commit_callbacks) -> None:
    from customers.services.import_jobs import checked_file

    client.force_login(alice)
    with open(write_csv(tmp_path / "orders.csv", ORDERS_A), "rb") as handle, django_capture_on_commit_callbacks(execute=True):
        check_url = client.post("/imports/", {"kind": "orders", "file": handle, "dry_run": "1"})["Location"]
    with tenant_context(tenant_a):
        check = Job.objects.get(kind=Job.Kind.IMPORT)
        kept = checked_file(check)
    assert kept is not None and kept.name == f"check-{check.pk}.csv"
    assert 'data-testid="import-checked"' in client.get(check_url).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        imported = client.post(f"/imports/{check.pk}/import/")
    with tenant_context(tenant_a):
        job = Job.objects.exclude(pk=check.pk).get(kind=Job.Kind.IMPORT)
        assert imported["Location"] == f"/imports/{job.pk}/" and job.state == Job.State.SUCCEEDED and "dry_run" not in job.params
        assert job.params["filename"] == "orders.csv" and job.result["created"] == 3 and Order.objects.count() == 3
    assert not kept.exists()
    # The file went with the import: a second press says so and imports nothing more.
    again = client.post(f"/imports/{check.pk}/import/", follow=True).content.decode()
    assert "The checked file is no longer kept" in again and 'data-testid="import-checked"' not in again
    with tenant_context(tenant_a):
        assert Job.objects.count() == 2


def test_a_failed_check_keeps_no_file_and_old_checks_are_forgotten(tenant_a, alice, client, tmp_path, django_capture_on_commit_callbacks) -> None:
    import os
    import time

    from customers.services.import_jobs import CHECK_KEPT_HOURS, checked_file, upload_path

    client.force_login(alice)
    with open(write_csv(tmp_path / "bad.csv", ORDERS_A.replace("13.37", "lots")), "rb") as handle, django_capture_on_commit_callbacks(execute=True):
        client.post("/imports/", {"kind": "orders", "file": handle, "dry_run": "1"})
    with tenant_context(tenant_a):
        failed = Job.objects.get(kind=Job.Kind.IMPORT)
    assert failed.state == Job.State.FAILED and checked_file(failed) is None and not list(upload_path(tenant_a, "x").parent.glob("check-*"))

    with open(write_csv(tmp_path / "good.csv", ORDERS_A), "rb") as handle, django_capture_on_commit_callbacks(execute=True):
        client.post("/imports/", {"kind": "orders", "file": handle, "dry_run": "1"})
    with tenant_context(tenant_a):
        passed = Job.objects.exclude(pk=failed.pk).get(kind=Job.Kind.IMPORT)
    old = time.time() - (CHECK_KEPT_HOURS + 1) * 3600
    os.utime(checked_file(passed), (old, old))
    with open(write_csv(tmp_path / "c.csv", "customer_id\nc9\n"), "rb") as handle, django_capture_on_commit_callbacks(execute=True):
        client.post("/imports/", {"kind": "customers", "file": handle})
    assert checked_file(passed) is None  # the next upload removed the day-old check's file

    # Without another upload, beat's reaper does it (every shop's, each minute).
    from customers.services.import_jobs import forget_old_checks

    with open(write_csv(tmp_path / "good.csv", ORDERS_A), "rb") as handle, django_capture_on_commit_callbacks(execute=True):
        client.post("/imports/", {"kind": "orders", "file": handle, "dry_run": "1"})
    with tenant_context(tenant_a):
        latest = Job.objects.filter(kind=Job.Kind.IMPORT).order_by("-pk").first()
    assert forget_old_checks() == 0 and checked_file(latest) is not None  # a fresh one stays
    os.utime(checked_file(latest), (old, old))
    assert forget_old_checks() == 1 and checked_file(latest) is None


def test_a_check_that_finds_errors_says_so_rather_than_failed(tenant_a, alice, client, tmp_path, django_capture_on_commit_callbacks) -> None:
    client.force_login(alice)
    with open(write_csv(tmp_path / "bad.csv", ORDERS_A.replace("13.37", "lots")), "rb") as handle, django_capture_on_commit_callbacks(execute=True):
        url = client.post("/imports/", {"kind": "orders", "file": handle, "dry_run": "1"})["Location"]
    page = client.get(url).content.decode()
    assert "Errors found" in page and "The check found 1 error in 1 row" in page
    with tenant_context(tenant_a):
        job = Job.objects.get(kind=Job.Kind.IMPORT)
    assert client.get(f"/jobs/{job.pk}/status/").json()["state_label"] == "Errors found"


def test_a_bad_dry_run_flag_on_bulk_is_named_in_the_errors(api_a, tenant_a) -> None:
    for answer in (api_a.post("/api/v1/customers/bulk/?dry_run=yes", [{"customer_id": "c1"}], format="json"),
                   api_a.post("/api/v1/customers/bulk/", {"rows": [{"customer_id": "c1"}], "dry_run": "yes"}, format="json")):
        body = answer.json()
        assert answer.status_code == 400 and body["dry_run"] is False  # the result's own flag: nothing was checked
        assert [(e["row"], e["column"]) for e in body["errors"]] == [(0, "dry_run")] and body["error_count"] == 1
        assert body["errors"][0]["message"].startswith("Must be true or false")
