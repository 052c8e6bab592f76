"""Session 23: what a merchant meets on the way in (countries typed as they come, the
customer list on a phone)."""

from __future__ import annotations

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_csv, import_rows

pytestmark = pytest.mark.django_db


def test_a_country_the_app_does_not_recognise_is_kept_and_named_in_the_result(tenant_a, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("customer_id,country\nc1,Untied States\nc2,Bavaria\nc3,Bavaria\nc4,Deutschland\nc5,us\nc6,XX\nc7,\n", encoding="utf-8")

    result = import_csv(tenant_a, "customers", str(path))

    assert result.ok, result.errors
    assert result.unknown_countries == {"Bavaria": 2, "Untied States": 1, "XX": 1}
    assert "4 customers have a country this app does not recognise, kept as written: Bavaria (2), Untied States (1), XX (1)." in result.message
    with tenant_context(tenant_a):
        assert dict(Customer.objects.values_list("external_id", "country")) == {
            "c1": "Untied States", "c2": "Bavaria", "c3": "Bavaria", "c4": "DE", "c5": "US", "c6": "XX", "c7": ""}
    known = import_rows(tenant_a, "customers", [{"customer_id": "c8", "country": "France"}])
    assert known.ok and known.unknown_countries == {} and "recognise" not in known.message


def test_a_blank_country_is_not_an_unknown_one_nor_is_the_stored_one_it_keeps(tenant_a):
    assert import_rows(tenant_a, "customers", [{"customer_id": "c1", "country": "Bavaria"}]).unknown_countries == {"Bavaria": 1}

    again = import_rows(tenant_a, "customers", [{"customer_id": "c1", "country": " ", "name": "Ann"}, {"customer_id": "c2", "country": ""}])

    assert again.ok and again.unknown_countries == {} and "recognise" not in again.message


@pytest.mark.parametrize(("written", "code"), [
    ("XK", "XK"), ("Kosovo", "XK"), ("Côte d’Ivoire", "CI"), ("Turkiye", "TR"), ("São Tomé and Príncipe", "ST"), ("Democratic Republic of the Congo", "CD"),
    ("Vatican City", "VA"), ("Macau", "MO"), ("Palestine", "PS"), ("Trinidad & Tobago", "TT"), ("Bosnia & Herzegovina", "BA"), ("St. Lucia", "LC"),
    ("The Bahamas", "BS"), ("Republic of Korea", "KR"), ("Falkland Islands", "FK")])
def test_country_names_as_platforms_and_people_write_them_are_recognised(written, code):
    from customers.services.parsing import is_country_code, parse_country

    assert parse_country(written) == code and is_country_code(code)


def test_a_date_a_spreadsheet_rewrote_says_so():
    from customers.services.parsing import FieldError, parse_datetime

    with pytest.raises(FieldError, match="a spreadsheet may have rewritten the dates in its local style"):
        parse_datetime("30.11.2026 18:20")
    with pytest.raises(FieldError) as plain:
        parse_datetime("yesterday")
    assert "spreadsheet" not in str(plain.value)


def test_a_request_its_role_refuses_counts_against_the_budget_and_says_what_is_left(tenant_a):
    from clmsite.models import Role
    from tests.conftest import api_client_for

    viewer = api_client_for(tenant_a, Role.VIEWER)
    first = viewer.get("/api/v1/customers/")
    refused = viewer.post("/api/v1/customers/bulk/", [{"customer_id": "c1"}], format="json")

    assert refused.status_code == 403
    assert int(refused["RateLimit-Remaining"]) == int(first["RateLimit-Remaining"]) - 1 and refused["RateLimit-Limit"] == first["RateLimit-Limit"]


def test_an_id_in_other_digits_answers_as_a_missing_one_on_every_route(tenant_a):
    from clmsite.models import Role
    from modeling import jobs
    from tests.conftest import api_client_for

    job = jobs.create_job(tenant_a, "import", params={"kind": "orders", "filename": "o.csv"})
    api = api_client_for(tenant_a, Role.ADMIN)
    missing = api.get("/api/v1/jobs/999999/")
    assert api.get(f"/api/v1/jobs/{job.pk}/").status_code == 200
    for spelled in ("".join(chr(0xFF10 + int(d)) for d in str(job.pk)), f"%20{job.pk}", f"{job.pk}.0"):
        for route in ("jobs", "imports"):
            answer = api.get(f"/api/v1/{route}/{spelled}/")
            assert (answer.status_code, answer.json()) == (404, missing.json()), (route, spelled)


def test_the_schema_says_each_write_operation_s_least_role(tenant_a):
    from tests.conftest import api_client_for

    paths = api_client_for(tenant_a).get("/api/schema/?format=json").json()["paths"]
    said = {(method, path): op.get("description", "") for path, ops in paths.items() for method, op in ops.items() if method in ("post", "patch", "delete")}
    assert said and all(text.count("Role: ") == 1 for text in said.values()), [key for key, text in said.items() if text.count("Role: ") != 1]
    assert "Role: admin or above" in said[("delete", "/api/v1/customers/{id}/")] and "Role: analyst or above" in said[("post", "/api/v1/orders/bulk/")]


def test_the_schema_answers_an_unknown_format_in_json_as_every_error(client):
    assert client.get("/api/schema/").status_code == 200 and client.get("/api/schema/?format=json").json()["openapi"].startswith("3.")

    refused = client.get("/api/schema/?format=xml")

    assert refused.status_code == 400 and refused["Content-Type"].startswith("application/json") and "format" in refused.json()


def test_the_pages_speak_the_shop_s_time_zone_and_the_api_keeps_utc(client, alice, tenant_a):
    from clmsite.models import Role
    from customers.models import Order
    from tests.conftest import api_client_for

    import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2025-07-23T03:56:00Z", "amount": "10.00"}])
    client.force_login(alice)
    settings_page = client.get("/settings/")
    assert 'name="time_zone"' in settings_page.content.decode()
    form = {"name": tenant_a.name, "currency": "USD", "time_zone": "America/New_York", "horizon_days": 90, "high_tier_percent": 20,
            "low_tier_percent": 40, "retrain_weekday": 6, "retrain_hour": 3, "score_hour": 2}
    assert client.post("/settings/", form).status_code == 302
    tenant_a.refresh_from_db()
    assert tenant_a.time_zone == "America/New_York"
    with tenant_context(tenant_a):
        order = Order.objects.get()

    page = client.get(f"/customers/{order.customer_id}/").content.decode()

    assert "2025-07-22 23:56" in page and "Date (America/New_York)" in page  # the evening before, as the shop saw it
    api = api_client_for(tenant_a, Role.VIEWER)
    assert api.get(f"/api/v1/orders/{order.pk}/").json()["ordered_at"] == "2025-07-23T03:56:00Z"
    assert api.get("/api/v1/shop/").json()["time_zone"] == "America/New_York"
    assert client.post("/settings/", {**form, "time_zone": "Mars/Olympus"}).status_code == 200  # refused, the form again


def test_an_older_file_that_makes_refunded_orders_sales_again_says_so(tenant_a):
    import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2025-01-05", "amount": "10.00", "status": "refunded"},
                                     {"customer_id": "c1", "order_id": "o2", "ordered_at": "2025-01-06", "amount": "10.00", "status": "cancelled"}])

    older = import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2025-01-05", "amount": "10.00", "status": "paid"},
                                             {"customer_id": "c1", "order_id": "o2", "ordered_at": "2025-01-06", "amount": "10.00"}])

    assert older.ok and older.sales_again == {"o1": "refunded → paid"}  # a blank status keeps o2's
    assert "The import made 1 order that was cancelled, refunded, failed or voided a sale again: o1 (refunded → paid)." in older.message


def test_letters_a_windows_1252_save_replaced_by_question_marks_are_refused_not_stored(tenant_a, tmp_path):
    path = tmp_path / "customers.csv"  # Excel's "CSV (Comma delimited)": é survives, ł, ễ and 山田 become "?"
    path.write_bytes("customer_id,name\nc1,José Núñez\nc2,Ma?gorzata Wi?niewska\nc3,?? ??\nc4,Is it you?\n".encode("cp1252"))

    result = import_csv(tenant_a, "customers", str(path))

    assert not result.ok and [(e.row, e.column) for e in result.errors] == [(3, "name"), (4, "name")]
    assert "has '?' where letters were" in result.errors[0].message and 'save it as "CSV UTF-8"' in result.errors[0].message
    utf8 = tmp_path / "utf8.csv"
    utf8.write_text("customer_id,name\nc1,José Núñez\nc2,Ma?gorzata\n", encoding="utf-8")
    assert import_csv(tenant_a, "customers", str(utf8)).ok  # a UTF-8 file keeps what it says


def test_an_order_number_finds_its_customer_in_the_list(tenant_a):
    from customers.services.queries import search_customers

    import_rows(tenant_a, "orders", [{"customer_id": "ana@example.com", "order_id": "#1611", "ordered_at": "2025-01-05", "amount": "10.00"},
                                     {"customer_id": "c2", "order_id": "A-77", "ordered_at": "2025-01-05", "amount": "10.00"}])

    def found(query: str) -> list[str]:
        with tenant_context(tenant_a):
            return [c.external_id for c in search_customers(tenant_a, query=query)]

    assert found("#1611") == found("1611") == ["ana@example.com"] and found("A-77") == ["c2"] and found("#16") == []


def test_a_launch_time_typed_in_the_shop_s_time_zone_is_kept_and_audited_in_utc(client, alice, tenant_a):
    import datetime as dt

    from campaigns.models import Campaign, CampaignAudit

    tenant_a.time_zone = "America/New_York"
    tenant_a.save()
    client.force_login(alice)
    year = dt.date.today().year + 1 if dt.date.today().month > 6 else dt.date.today().year
    local = f"{year}-12-01T09:00"  # 09:00 in New York in December is 14:00 UTC (EST)
    form = client.get("/campaigns/new/").content.decode()
    assert "in America/New_York, the shop's time zone" in form

    created = client.post("/campaigns/new/", {"name": "Morning", "action": "win_back", "channel": "email", "control_share": 10,
                                              "attribution_days": 30, "scheduled_for": local})

    assert created.status_code == 302
    with tenant_context(tenant_a):
        campaign = Campaign.objects.get()
        assert campaign.scheduled_for == dt.datetime(year, 12, 1, 14, 0, tzinfo=dt.UTC)
        assert f"launch scheduled for {year}-12-01 14:00 UTC" in CampaignAudit.objects.get(campaign=campaign).detail
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert f"{year}-12-01 09:00 America/New_York" in page
