"""QA round 9, imports: a column a file leaves out (or a blank cell) keeps the stored value
in every kind; an import waiting for another import of the same shop says so and can be
cancelled; the import page and the bulk API say what their row counts count."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, OrderItem, Product, Review
from customers.services.imports import import_csv, import_rows
from tests.conftest import write_csv

pytestmark = pytest.mark.django_db


def review_fields(tenant: Any) -> dict[str, tuple[Any, ...]]:
    with tenant_context(tenant):
        return {r.external_id: (r.customer.external_id, r.rating, r.product.sku if r.product else None, r.text)
                for r in Review.objects.select_related("customer", "product")}


def line_fields(tenant: Any) -> list[tuple[Any, ...]]:
    with tenant_context(tenant):
        return list(OrderItem.objects.order_by("order__external_id", "line_no").values_list(
            "order__external_id", "line_no", "product__sku", "quantity", "unit_price", "amount"))


# 1. A column left out, or a blank cell, keeps the stored value


def test_a_bulk_review_without_rating_and_sku_keeps_them(tenant_a, api_a):
    # given a review stored with a rating and a product
    full = {"customer_id": "QA1", "review_id": "QR2", "created_at": "2026-11-02", "text": "Nice", "rating": 4, "sku": "ACC-001"}
    assert api_a.post("/api/v1/reviews/bulk/", [full], format="json").json()["created"] == 1

    # when the same review is sent without its optional keys
    partial = {key: full[key] for key in ("customer_id", "review_id", "created_at", "text")}
    answer = api_a.post("/api/v1/reviews/bulk/", [partial], format="json").json()

    # then nothing changed, and the rating and the product are kept
    assert (answer["ok"], answer["created"], answer["updated"], answer["unchanged"]) == (True, 0, 0, 1)
    assert review_fields(tenant_a) == {"QR2": ("QA1", 4, "ACC-001", "Nice")}

    # and a changed text still updates the review, keeping them as well
    answer = api_a.post("/api/v1/reviews/bulk/", [{**partial, "text": "Nicer"}], format="json").json()
    assert (answer["updated"], answer["unchanged"]) == (1, 0)
    assert review_fields(tenant_a) == {"QR2": ("QA1", 4, "ACC-001", "Nicer")}


def test_a_reviews_file_without_the_optional_columns_or_with_blank_cells_keeps_rating_and_product(tenant_a, tmp_path):
    full = "customer_id,review_id,created_at,text,rating,sku,product_name\nc1,r1,2024-01-05,Fine,5,s1,Shoe\nc2,r2,2024-01-06,Meh,2,s2,Sock\n"
    assert import_csv(tenant_a, "reviews", write_csv(tmp_path / "full.csv", full)).created == 2
    stored = review_fields(tenant_a)

    # a file without rating, sku and product_name
    bare = "customer_id,review_id,created_at,text\nc1,r1,2024-01-05,Fine\nc2,r2,2024-01-06,Meh\n"
    result = import_csv(tenant_a, "reviews", write_csv(tmp_path / "bare.csv", bare))
    assert (result.ok, result.created, result.updated, result.unchanged) == (True, 0, 0, 2)
    assert review_fields(tenant_a) == stored == {"r1": ("c1", 5, "s1", "Fine"), "r2": ("c2", 2, "s2", "Meh")}

    # a file with those columns, blank in one row and set in the other
    blanks = "customer_id,review_id,created_at,text,rating,sku,product_name\nc1,r1,2024-01-05,Fine,,,\nc2,r2,2024-01-06,Meh,3,s1,\n"
    result = import_csv(tenant_a, "reviews", write_csv(tmp_path / "blanks.csv", blanks))
    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    assert review_fields(tenant_a) == {"r1": ("c1", 5, "s1", "Fine"), "r2": ("c2", 3, "s1", "Meh")}
    # the same file again changes nothing
    again = import_csv(tenant_a, "reviews", write_csv(tmp_path / "blanks2.csv", blanks))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    with tenant_context(tenant_a):
        assert Product.objects.get(sku="s1").name == "Shoe"  # product_name never renames a stored product


def test_a_new_review_without_rating_or_sku_has_none(tenant_a):
    result = import_rows(tenant_a, "reviews", [{"customer_id": "c1", "review_id": "r9", "created_at": "2024-01-05", "text": "Hm"}])
    assert (result.ok, result.created) == (True, 1)
    assert review_fields(tenant_a) == {"r9": ("c1", None, None, "Hm")}


CUSTOMERS_FULL = "customer_id,email,name,country,created_at,tier\nc1,a@example.com,Ann,DE,2024-01-02,gold\n"


@pytest.mark.parametrize("partial", [
    "customer_id\nc1\n",
    "customer_id,email\nc1,\n",
    "customer_id,email,name,country,created_at,tier\nc1,,,,,\n",
])
def test_a_customer_keeps_every_column_a_file_leaves_out_or_blank(tenant_a, tmp_path, partial):
    assert import_csv(tenant_a, "customers", write_csv(tmp_path / "full.csv", CUSTOMERS_FULL)).created == 1
    result = import_csv(tenant_a, "customers", write_csv(tmp_path / "partial.csv", partial))
    assert (result.ok, result.updated, result.unchanged) == (True, 0, 1)
    with tenant_context(tenant_a):
        customer = Customer.objects.get()
    assert (customer.email, customer.name, customer.country, customer.first_seen.date().isoformat(), customer.attributes) == (
        "a@example.com", "Ann", "DE", "2024-01-02", {"tier": "gold"})


def test_a_bulk_customer_keeps_keys_a_row_leaves_out_or_sends_null(tenant_a):
    assert import_rows(tenant_a, "customers", [{"customer_id": "c1", "email": "a@example.com", "name": "Ann", "country": "DE"}]).created == 1
    result = import_rows(tenant_a, "customers", [{"customer_id": "c1", "email": None}, {"customer_id": "c2", "name": "Bo"}])
    assert (result.created, result.updated, result.unchanged) == (1, 0, 1)
    with tenant_context(tenant_a):
        assert list(Customer.objects.order_by("external_id").values_list("external_id", "email", "name", "country")) == [
            ("c1", "a@example.com", "Ann", "DE"), ("c2", "", "Bo", "")]


@pytest.mark.parametrize("partial", ["sku\ns1\n", "sku,price\ns1,\n", "sku,name,category,price\ns1,,,\n"])
def test_a_product_keeps_every_column_a_file_leaves_out_or_blank(tenant_a, tmp_path, partial):
    assert import_csv(tenant_a, "products", write_csv(tmp_path / "full.csv", "sku,name,category,price\ns1,Shoe,Shoes,19.90\n")).created == 1
    result = import_csv(tenant_a, "products", write_csv(tmp_path / "partial.csv", partial))
    assert (result.ok, result.updated, result.unchanged) == (True, 0, 1)
    with tenant_context(tenant_a):
        assert list(Product.objects.values_list("sku", "name", "category", "price")) == [("s1", "Shoe", "Shoes", Decimal("19.90"))]


ORDERS_FULL = """customer_id,order_id,ordered_at,amount,currency,quantity,sku,product_name,category,status
c1,o1,2024-01-05,20.00,USD,2,s1,Trail shoe,Shoes,cancelled
c1,o1,2024-01-05,5.50,USD,1,s2,Wool sock,Socks,cancelled
c2,o2,2024-02-05,9.99,USD,3,s2,Wool sock,Socks,completed
"""


@pytest.mark.parametrize("partial", [
    "customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-05,20.00\nc1,o1,2024-01-05,5.50\nc2,o2,2024-02-05,9.99\n",
    "customer_id,order_id,ordered_at,amount,currency,quantity,sku,product_name,category,status\n"
    "c1,o1,2024-01-05,20.00,,,,,,\nc1,o1,2024-01-05,5.50,,,,,,\nc2,o2,2024-02-05,9.99,,,,,,\n",
])
def test_an_order_and_its_lines_keep_every_column_a_file_leaves_out_or_blank(tenant_a, tmp_path, partial):
    # given orders stored with every optional column (o1 cancelled, in dollars, with products and quantities)
    assert import_csv(tenant_a, "orders", write_csv(tmp_path / "full.csv", ORDERS_FULL)).created == 2
    lines = line_fields(tenant_a)
    assert lines == [("o1", 1, "s1", 2, Decimal("10.00"), Decimal("20.00")), ("o1", 2, "s2", 1, Decimal("5.50"), Decimal("5.50")),
                     ("o2", 1, "s2", 3, Decimal("3.33"), Decimal("9.99"))]

    # when the same orders come without the optional columns, or with them blank
    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "partial.csv", partial))

    # then nothing changed: not the orders, not their lines
    assert (result.ok, result.created, result.updated, result.unchanged, result.details["order_lines_written"]) == (True, 0, 0, 2, 0)
    assert line_fields(tenant_a) == lines
    with tenant_context(tenant_a):
        assert list(Order.objects.order_by("external_id").values_list("external_id", "currency", "status")) == [
            ("o1", "USD", "cancelled"), ("o2", "USD", "completed")]
        assert Customer.objects.get(external_id="c1").order_count == 0  # o1 is still cancelled


def test_an_order_line_without_quantity_keeps_it_and_prices_a_changed_amount_by_it(tenant_a, tmp_path):
    assert import_csv(tenant_a, "orders", write_csv(tmp_path / "full.csv", ORDERS_FULL)).ok
    changed = "customer_id,order_id,ordered_at,amount\nc2,o2,2024-02-05,12.00\nc2,o2,2024-02-05,1.00\n"
    result = import_csv(tenant_a, "orders", write_csv(tmp_path / "changed.csv", changed))
    assert (result.updated, result.details["order_lines_written"]) == (1, 2)
    # the first line keeps its quantity and product; the new second line has neither stored, so 1 and none
    assert line_fields(tenant_a)[2:] == [("o2", 1, "s2", 3, Decimal("4.00"), Decimal("12.00")), ("o2", 2, None, 1, Decimal("1.00"), Decimal("1.00"))]
    again = import_csv(tenant_a, "orders", write_csv(tmp_path / "changed2.csv", changed))
    assert (again.updated, again.unchanged, again.details["order_lines_written"]) == (0, 1, 0)


# 2. An import waiting for another import of its shop says so, and a cancel stops it there


def _wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("then", ["cancel", "release"])
def test_an_import_waiting_for_the_shops_lock_says_so_and_a_cancel_stops_it_at_once(tenant_a, tmp_path, then):
    import threading

    from django.db import connection, connections

    from customers.services.import_jobs import run_import_job
    from customers.services.imports import SHOP_LOCK
    from modeling import jobs
    from modeling.models import Job

    if connection.vendor != "postgresql":
        pytest.skip("the shop's import lock is PostgreSQL's advisory lock")
    # given another import of this shop holding its lock, on another database connection
    other = connections.create_connection("default")
    other.ensure_connection()
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [SHOP_LOCK, tenant_a.pk])
    text = "customer_id,order_id,ordered_at,amount\nc1,o1,2025-01-02,12.50\nc2,o2,2025-01-03,7.00\n"
    job = jobs.create_job(tenant_a, Job.Kind.IMPORT, params={"kind": "orders", "path": write_csv(tmp_path / "orders.csv", text)})
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(run_import_job(tenant_a.pk, job.pk))
        except Exception as exc:  # surfaced below
            outcome.append(exc)
        finally:
            connection.close()

    def fresh() -> Job:
        with tenant_context(tenant_a):
            return Job.objects.get(pk=job.pk)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        # when the import has checked its rows and waits for the lock
        waiting = _wait_for(lambda: (job_now := fresh()).message == "Waiting for another import of this shop to finish" and job_now)
        # then it says so, as running, and its heartbeat keeps up while it waits
        assert waiting.state == Job.State.RUNNING
        _wait_for(lambda: fresh().heartbeat_at > waiting.heartbeat_at, timeout=5)
        assert worker.is_alive()
        if then == "cancel":
            jobs.do_request_cancel(tenant_a, job.pk)
            worker.join(timeout=5)  # at once, while the other import still holds the lock
            assert not worker.is_alive()
        else:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SHOP_LOCK, tenant_a.pk])
            worker.join(timeout=20)
    finally:
        other.close()
        worker.join(timeout=30)
    finished = fresh()
    with tenant_context(tenant_a):
        orders = Order.objects.count()
    if then == "cancel":
        assert outcome == [None]
        assert (finished.state, finished.message, orders) == (Job.State.CANCELLED, "Cancelled; nothing was imported.", 0)
    else:
        assert outcome[0].ok
        assert (finished.state, finished.message, orders) == (Job.State.SUCCEEDED, "Imported 2 orders: 2 new, 0 updated, 0 unchanged.", 2)
    # and the import let go of the lock: another connection takes it at once
    check = connections.create_connection("default")
    try:
        with check.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SHOP_LOCK, tenant_a.pk])
            assert cursor.fetchone()[0] is True
    finally:
        check.close()



# 3. The import page and the bulk API say what they count


def test_the_import_page_counts_orders_and_names_the_files_lines(tenant_a, alice, client, tmp_path):
    from customers.services.import_jobs import run_import_job
    from modeling import jobs
    from modeling.models import Job

    # given an orders file of 6 lines: 5 orders, one of them of 2 lines
    text = "customer_id,order_id,ordered_at,amount\n" + "".join(f"c{i},o{i},2025-01-0{i},1{i}.00\n" for i in range(1, 6)) + "c1,o1,2025-01-01,2.00\n"
    job = jobs.create_job(tenant_a, Job.Kind.IMPORT, params={"kind": "orders", "filename": "orders.csv", "path": write_csv(tmp_path / "orders.csv", text)})
    result = run_import_job(tenant_a.pk, job.pk)
    assert (result.rows, result.details["lines"], result.details["order_lines_written"]) == (5, 6, 6)

    # when its page is shown
    client.force_login(alice)
    page = client.get(f"/imports/{job.pk}/").content.decode()

    # then it counts orders, from 6 lines, and says Rows nowhere
    assert '<dt>Orders</dt><dd data-testid="import-rows">5 <span class="muted">(from 6 lines)</span></dd>' in page
    assert "<dt>Rows</dt>" not in page and "<dt>Lines</dt>" not in page
    assert "<dt>Order lines written</dt><dd>6</dd>" in page


def test_an_import_of_another_kind_is_counted_by_its_kind(tenant_a, alice, client, tmp_path):
    from customers.services.import_jobs import run_import_job
    from modeling import jobs
    from modeling.models import Job

    job = jobs.create_job(tenant_a, Job.Kind.IMPORT, params={"kind": "products", "filename": "p.csv", "path": write_csv(tmp_path / "p.csv", "sku\ns1\ns2\n")})
    assert run_import_job(tenant_a.pk, job.pk).rows == 2
    client.force_login(alice)
    page = client.get(f"/imports/{job.pk}/").content.decode()
    assert '<dt>Products</dt><dd data-testid="import-rows">2</dd>' in page


def test_the_bulk_api_counts_one_order_of_two_lines_as_one_row_of_two_lines(tenant_a, api_a):
    line = {"customer_id": "c1", "order_id": "o1", "ordered_at": "2025-01-02", "amount": "5.00"}
    body = api_a.post("/api/v1/orders/bulk/", [line, {**line, "amount": "7.00"}], format="json").json()
    assert (body["ok"], body["rows"], body["created"], body["details"]["lines"], body["details"]["order_lines_written"]) == (True, 1, 1, 2, 2)
    assert body["message"] == "Imported 1 order: 1 new, 0 updated, 0 unchanged."
