"""The hostile CSV corpus, through every entrance of the one import service.

Each file either imports exactly the expected rows or imports nothing with row- and
column-level messages; the web upload and the API answer without a 500 or a traceback."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, Review
from customers.services.imports import import_csv
from modeling.models import Job

H = b"customer_id,order_id,ordered_at,amount\n"
GOOD = b"c1,o1,2024-01-05,10.00\nc2,o2,20240106,20.50\n"

# name: (kind, content, expected) — expected is ("ok", rows) or ("error", [(row, column), ...] or a phrase)
CORPUS: dict[str, tuple[str, bytes, tuple]] = {
    "empty": ("orders", b"", ("error", "empty")),
    "header only": ("orders", H, ("error", "no data rows")),
    "missing column": ("orders", b"customer_id,order_id,ordered_at\nc1,o1,2024-01-05\n", ("error", "amount")),
    "bad date": ("orders", H + b"c1,o1,2024-13-45,10\n", ("error", [(2, "ordered_at")])),
    "bad number": ("orders", H + b"c1,o1,2024-01-05,ten\n", ("error", [(2, "amount")])),
    "NaN": ("orders", H + b"c1,o1,2024-01-05,NaN\n", ("error", [(2, "amount")])),
    "infinity": ("orders", H + b"c1,o1,2024-01-05,inf\n", ("error", [(2, "amount")])),
    "ragged row": ("orders", H + b"c1,o1,2024-01-05,10,extra,cells\n", ("error", [(2, "")])),
    "short row": ("orders", H + b"c1,o1\n", ("error", [(2, "")])),
    "NUL byte": ("orders", H + b"c1,o1,2024-01-05,1\x00\n", ("error", "NUL")),
    "binary garbage": ("orders", b"\x00\x01\x02\xff\xfe\x89PNG binary", ("error", "binary")),
    "huge field": ("orders", H + b'c1,o1,2024-01-05,"' + b"9" * 200_000 + b'"\n', ("error", "longer than")),
    "conflicting duplicate order id": ("orders", H + b"c1,o1,2024-01-05,10\nc2,o1,2024-01-05,10\n", ("error", [(3, "customer_id")])),
    "one bad row at the end": ("orders", H + GOOD + b"c3,o3,2024-01-07,oops\n", ("error", [(4, "amount")])),
    "a bad row and a conflicting repeat": ("orders", H + b"c1,o1,2024-01-05,10\nc2,o2,2024-01-05,oops\nc3,o1,2024-01-05,10\n", ("error", [(3, "amount"), (4, "customer_id")])),
    "two bad rows": ("orders", H + b"c1,o1,yesterday,10\nc2,o2,2024-01-05,-\n", ("error", [(2, "ordered_at"), (3, "amount")])),
    "good with YYYYMMDD": ("orders", H + GOOD, ("ok", 2)),
    "BOM and CRLF": ("orders", b"\xef\xbb\xbf" + (H + GOOD).replace(b"\n", b"\r\n"), ("ok", 2)),
    "Latin-1 names": ("customers", "customer_id,name\nc1,Zoë Müller\n".encode("latin-1"), ("ok", 1)),
    "formula-like text is data": ("customers", b"customer_id,name\nc1,=HYPERLINK(\"x\")\n", ("ok", 1)),
    "order dated years ahead": ("orders", H + b"c1,o1,2062-01-05,10\n", ("error", [(2, "ordered_at")])),
    "review dated years ahead": ("reviews", b"customer_id,review_id,created_at,text\nc1,r1,20620105,ok\n", ("error", [(2, "created_at")])),
    "rating out of range": ("reviews", b"customer_id,review_id,created_at,text,rating\nc1,r1,2024-01-05,ok,9\n", ("error", [(2, "rating")])),
}


def _counts(tenant) -> int:
    with tenant_context(tenant):
        return Order.objects.count() + Customer.objects.count() + Review.objects.count()


@pytest.mark.django_db
@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_file_imports_exactly_or_nothing(tenant_a, tmp_path, name) -> None:
    kind, content, (outcome, expected) = CORPUS[name]
    path = tmp_path / "file.csv"
    path.write_bytes(content)
    result = import_csv(tenant_a, kind, str(path))
    if outcome == "ok":
        assert result.ok and result.rows == expected and result.created == expected, result
        assert import_csv(tenant_a, kind, str(path)).unchanged == expected  # and again: nothing changes
        return
    assert not result.ok and _counts(tenant_a) == 0, name
    text = (result.message + " " + " ".join(f"{e.row} {e.column} {e.message}" for e in result.errors)).lower()
    if isinstance(expected, list):
        assert [(e.row, e.column) for e in result.errors] == expected, (name, result.errors)
        assert all(e.message for e in result.errors)
    else:
        assert expected.lower() in text, (name, text)
    assert "traceback" not in text


@pytest.mark.django_db
def test_corpus_through_the_upload_page_and_the_api_never_500s(tenant_a, alice, client, api_a, django_capture_on_commit_callbacks) -> None:
    client.force_login(alice)
    for name, (kind, content, _) in CORPUS.items():
        with django_capture_on_commit_callbacks(execute=True):
            page = client.post("/imports/", {"kind": kind, "file": SimpleUploadedFile("f.csv", content)})
            api = api_a.post("/api/v1/imports/", {"kind": kind, "file": SimpleUploadedFile("f.csv", content)}, format="multipart")
        assert page.status_code in (200, 302) and api.status_code in (202, 400), (name, page.status_code, api.status_code)
        for body in (page.content, api.content):
            assert b"Traceback" not in body and b"Internal error" not in body
    with tenant_context(tenant_a):
        states = list(Job.objects.filter(kind="import").values_list("state", flat=True))
    assert states and set(states) <= {"succeeded", "failed"}


@pytest.mark.django_db(transaction=True)
def test_the_same_file_imported_twice_at_once_ends_as_if_imported_once(tenant_a, tmp_path) -> None:
    """Two imports of one file race (two threads, two database connections); the per-tenant
    lock serialises them, so the second finds every row unchanged."""
    import threading

    from django.db import connection

    from tests.conftest import ORDERS_A

    path = tmp_path / "orders.csv"
    path.write_text(ORDERS_A + "".join(f"c{i},race-{i},2024-02-{1 + i % 28:02d},{i}.50,1,r{i % 7},Thing {i % 7},Cat\n" for i in range(2000)))
    results, errors = [], []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            results.append(import_csv(tenant_a, "orders", str(path)))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(results) == 2 and all(r.ok for r in results), (errors, results)
    assert sorted(r.created for r in results)[0] == 0 and sum(r.created for r in results) == results[0].rows
    with tenant_context(tenant_a):
        once = (Order.objects.count(), Customer.objects.count())
    assert import_csv(tenant_a, "orders", str(path)).unchanged == results[0].rows
    with tenant_context(tenant_a):
        assert (Order.objects.count(), Customer.objects.count()) == once
