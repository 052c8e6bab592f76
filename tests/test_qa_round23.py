"""Session 24: the API answers as the pages do (a customer found by an order number); a shop's
models count its own days, in its time zone."""

from __future__ import annotations

import datetime as dt

import pytest

from clmsite.tenancy import shop_day, shop_day_end, shop_midnight, tenant_context
from customers.services.imports import import_rows
from modeling.features import features_as_of, load_history, order_days
from modeling.services import InvalidAsOf, check_as_of, last_order_date

pytestmark = pytest.mark.django_db


def ids(response):
    assert response.status_code == 200, response.content
    return [customer["external_id"] for customer in response.json()["results"]]


def test_the_api_finds_a_customer_by_an_order_number_as_the_customer_list_does(shop_a_data, api_a):
    assert import_rows(shop_a_data, "orders", [{"customer_id": "c2", "order_id": "#1611", "ordered_at": "2024-04-01", "amount": "9"}]).ok

    assert ids(api_a.get("/api/v1/customers/", {"search": "o2"})) == ["c1"]
    assert ids(api_a.get("/api/v1/customers/", {"search": "1611"})) == ["c2"]  # Shopify's "#1611", as a support request quotes it
    assert ids(api_a.get("/api/v1/customers/", {"search": "#1611"})) == ["c2"]
    # Or'ed with the other fields, each customer once, and the filters still apply.
    assert ids(api_a.get("/api/v1/customers/", {"search": "c", "ordering": "external_id"})) == ["c1", "c2"]
    assert ids(api_a.get("/api/v1/customers/", {"search": "o2", "min_orders": 3})) == []


def test_an_order_number_finds_nothing_in_another_shop(shop_a_data, shop_b_data, api_b):
    assert import_rows(shop_a_data, "orders", [{"customer_id": "c2", "order_id": "a-only", "ordered_at": "2024-04-01", "amount": "9"}]).ok

    assert ids(api_b.get("/api/v1/customers/", {"search": "a-only"})) == []
    assert ids(api_b.get("/api/v1/customers/", {"search": "o3"})) == ["c2"]  # its own c2's


# --- The shop's days: a shop in Los Angeles counts its own calendar days ---------------------

# 04:00 UTC on 1 March 2024 is 20:00 on 29 February in Los Angeles; 09:00 UTC is 01:00 on the 1st there.
EVENING = [
    {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-02-10T18:00:00Z", "amount": "10"},
    {"customer_id": "c1", "order_id": "o2", "ordered_at": "2024-03-01T04:00:00Z", "amount": "20"},
    {"customer_id": "c1", "order_id": "o3", "ordered_at": "2024-03-01T09:00:00Z", "amount": "30"},
]


def in_zone(tenant, zone):
    tenant.time_zone = zone
    tenant.save()
    assert import_rows(tenant, "orders", EVENING).ok
    return tenant


def test_the_shop_day_helpers_read_the_shops_clock(tenant_a):
    tenant_a.time_zone = "America/Los_Angeles"
    moment = dt.datetime(2024, 3, 1, 4, 0, tzinfo=dt.UTC)

    assert shop_day(moment, tenant_a) == dt.date(2024, 2, 29)
    assert shop_midnight(dt.date(2024, 3, 1), tenant_a) == dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.UTC)
    assert shop_day_end(dt.date(2024, 2, 29), tenant_a) == dt.datetime(2024, 3, 1, 7, 59, 59, tzinfo=dt.UTC)
    tenant_a.time_zone = "UTC"
    assert shop_day(moment, tenant_a) == dt.date(2024, 3, 1)


def test_as_of_a_day_means_the_end_of_the_shops_day(tenant_a):
    shop = in_zone(tenant_a, "America/Los_Angeles")

    history = load_history(shop, ceiling=dt.date(2024, 2, 29))

    assert len(history.orders) == 2  # the 8 pm order of the 29th (UTC's 1 March) is in; 1 am on the 1st is not
    days = order_days(history.orders)
    assert [d.date() for d in days["day"]] == [dt.date(2024, 2, 10), dt.date(2024, 2, 29)]
    features = features_as_of(load_history(shop), dt.date(2024, 3, 1))
    assert features.loc[features.index[0], "orders"] == 3
    assert features.loc[features.index[0], "recency_days"] < 1  # the last order is 1 am on the as-of day, not "yesterday"
    assert last_order_date(shop) == dt.date(2024, 3, 1)


def test_a_utc_shop_counts_the_same_orders_on_utc_days(tenant_a):
    shop = in_zone(tenant_a, "UTC")

    history = load_history(shop, ceiling=dt.date(2024, 2, 29))

    assert len(history.orders) == 1
    assert [d.date() for d in order_days(load_history(shop).orders)["day"]] == [dt.date(2024, 2, 10), dt.date(2024, 3, 1)]  # one day, one purchase


def test_the_first_order_day_that_bounds_an_as_of_date_is_the_shops(tenant_a):
    shop = tenant_a
    shop.time_zone = "Asia/Tokyo"  # 18:00 UTC on 10 February is 03:00 on the 11th in Tokyo
    shop.save()
    assert import_rows(shop, "orders", EVENING).ok

    with pytest.raises(InvalidAsOf, match=r"before the shop's first order \(2024-02-11\)"):
        check_as_of(shop, dt.date(2024, 2, 10))
    assert check_as_of(shop, dt.date(2024, 2, 11)) == dt.date(2024, 2, 11)


def test_a_date_without_a_time_is_the_shops_day_and_a_time_without_an_offset_the_shops_time(tenant_a, tmp_path):
    from customers.models import Customer, Order
    from customers.services.imports import import_csv

    tenant_a.time_zone = "America/Los_Angeles"
    tenant_a.save()
    path = tmp_path / "c.csv"
    path.write_text("customer_id,created_at\nc1,2025-10-28\nc2,20251028\nc3,2025-10-28T10:00:00Z\n", encoding="utf-8")

    assert import_csv(tenant_a, "customers", str(path)).ok
    assert import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2025-11-02 09:30", "amount": "5"}]).ok

    with tenant_context(tenant_a):
        seen = dict(Customer.objects.values_list("external_id", "first_seen"))
        ordered = Order.objects.get().ordered_at
    assert seen["c1"] == seen["c2"] == dt.datetime(2025, 10, 28, 7, 0, tzinfo=dt.UTC)  # midnight in Los Angeles (PDT)
    assert seen["c3"] == dt.datetime(2025, 10, 28, 10, 0, tzinfo=dt.UTC)  # an offset is kept as written
    assert ordered == dt.datetime(2025, 11, 2, 17, 30, tzinfo=dt.UTC)  # 09:30 PST, after the clocks went back
    assert shop_day(seen["c1"], tenant_a) == dt.date(2025, 10, 28)
    # Read again, the same file changes nothing.
    again = import_csv(tenant_a, "customers", str(path))
    assert (again.created, again.updated) == (0, 0)


def test_sentiment_trains_on_no_fewer_different_texts_than_its_minimum():
    """The QA shop's 40 rated reviews had 5 texts: the held-out part was one text of one class,
    on which the transformer scored 1.0 and the majority baseline 0.0, and it served."""
    from modeling.sentiment import MIN_RATED_REVIEWS, train_sentiment

    texts = ["Love it", "Great fit", "Broke fast", "Too small", "Fine"] * 8
    ratings = [5, 5, 1, 2, 3] * 8

    result = train_sentiment(texts, ratings, candidates=("ngram",))

    assert result.status == "skipped" and not result.champion
    assert result.reason == f"the 40 rated reviews have only 5 different texts; sentiment needs at least {MIN_RATED_REVIEWS}"


def test_sentiment_refuses_a_split_that_leaves_one_class_on_a_side():
    """One negative text, posted three times: it stays on one side of the split, so the other
    side has positives only, and no model can be checked (or trained) on both classes."""
    from modeling.sentiment import train_sentiment

    texts = [f"happy with order number {i}" for i in range(40)] + ["awful"] * 3
    ratings = [5] * 40 + [1] * 3

    result = train_sentiment(texts, ratings, candidates=("ngram",))

    assert result.status == "skipped" and not result.champion
    assert result.reason == "too few different texts of the rarer class (3 negative, 40 positive rated reviews) to hold some out and check a model on both classes"


def test_saving_settings_says_when_what_changed_takes_effect_and_nothing_else(tenant_a, alice, client):
    client.force_login(alice)
    form = {"name": "Shop A", "currency": "USD", "time_zone": "UTC", "horizon_days": 90, "high_tier_percent": 20, "low_tier_percent": 50,
            "retrain_weekday": 6, "retrain_hour": 2, "score_hour": 4}

    def saved(**changes):
        response = client.post("/settings/", {**form, **changes}, follow=True)
        assert response.status_code == 200
        return [str(m) for m in response.context["messages"]]

    assert saved(time_zone="America/Los_Angeles") == [
        "Settings saved. Pages show times in the new time zone now, and stage and as-of dates count its days from the next scoring."]
    form["time_zone"] = "America/Los_Angeles"
    assert saved(name="Shop A Co.") == ["Settings saved."]
    assert saved(horizon_days=60, high_tier_percent=10) == ["Settings saved. The horizon applies from the next training; value tiers follow from the next scoring."]


def test_switching_to_a_shop_whose_name_ends_in_a_period_says_it_once(tenant_a, tenant_b, alice, client):
    from clmsite.models import Membership, Role

    tenant_b.name = "Demo Outdoor Co."
    tenant_b.save()
    Membership.objects.create(user=alice, tenant=tenant_b, role=Role.VIEWER)
    client.force_login(alice)

    response = client.post("/tenant/switch/", {"tenant_id": tenant_b.pk}, follow=True)

    assert "Switched to Demo Outdoor Co." in [str(m) for m in response.context["messages"]]


def test_the_team_form_names_a_bad_username_and_a_bad_email_at_once_beside_their_fields(alice, client):
    client.force_login(alice)

    response = client.post("/settings/team/", {"username": "has space", "email": "not-an-email", "role": "viewer"})

    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["username"] == ["A new username takes 1 to 150 letters a-z, digits and @ . + - _ (no spaces)."]
    assert "email" in form.errors and not form.non_field_errors()
    assert 'value="has space"' in response.content.decode()  # what was typed stays


@pytest.mark.parametrize(("params", "status"), [
    ({"min_orders": "２"}, 400), ({"min_spent": "２"}, 400), ({"min_spent": "1e3"}, 400),
    ({"min_spent": "99.5"}, 200), ({"min_spent": "-1"}, 200), ({"min_orders": "2"}, 200),
])
def test_number_filters_take_plain_digits_as_page_does(shop_a_data, api_a, params, status):
    response = api_a.get("/api/v1/customers/", params)

    assert response.status_code == status, response.content
    if status == 400:
        assert response.json() == {next(iter(params)): ["Write a plain number in the digits 0-9, such as 100 or 99.50."]}


def test_a_probability_filter_still_takes_a_leading_point(api_a):
    assert api_a.get("/api/v1/predictions/", {"churn_probability__gte": ".5"}).status_code == 200


def test_a_406_carries_the_rate_limit_headers_as_every_answer_does(api_a):
    response = api_a.get("/api/v1/customers/", HTTP_ACCEPT="text/html")

    assert response.status_code == 406
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(response.headers)


def test_an_orders_line_errors_come_in_the_lines_order(api_a):
    response = api_a.post("/api/v1/orders/", {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-01",
                                              "lines": [{"amount": "x"}, {"amount": "5", "quantity": "lots"}, {"amount": "y", "bogus": 1}]}, format="json")

    assert response.status_code == 400
    assert [message.split(":")[0] for message in response.json()["lines"]] == ["Item 1", "Item 2", "Item 3", "Item 3"]  # an unknown key in its line's place too


def test_a_launched_campaigns_edit_is_a_409_before_its_body_is_read(tenant_a, api_a):
    from campaigns.models import Campaign

    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Gone out", action="win_back", state=Campaign.State.RUNNING)

    response = api_a.patch(f"/api/v1/campaigns/{campaign.pk}/", {"name": ""}, format="json")

    assert response.status_code == 409 and response.json() == {"detail": "A launched campaign cannot be edited."}


def test_an_order_may_be_set_back_to_a_status_the_shops_orders_have(shop_a_data, api_a):
    from customers.models import Order

    assert import_rows(shop_a_data, "orders", [{"customer_id": "c1", "order_id": "p1", "ordered_at": "2024-04-01", "amount": "9", "status": "pending"}]).ok
    with tenant_context(shop_a_data):
        order = Order.objects.get(external_id="o1")

    assert api_a.patch(f"/api/v1/orders/{order.pk}/", {"status": "Pending"}, format="json").json()["status"] == "pending"
    assert api_a.patch(f"/api/v1/orders/{order.pk}/", {"status": "authorized"}, format="json").status_code == 400  # no order of the shop has it


def test_lists_order_by_id(shop_a_data, api_a):
    ids = [c["id"] for c in api_a.get("/api/v1/customers/", {"ordering": "-id"}).json()["results"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2


def test_a_day_in_a_filter_is_the_shops_day_on_the_api_and_in_a_saved_segment(tenant_a, api_a):
    from customers.models import Customer
    from modeling.insights import apply_filters
    from modeling.models import CustomerInsight

    shop = in_zone(tenant_a, "America/Los_Angeles")  # c1's last order: 1 March 09:00 UTC, 01:00 on the 1st in Los Angeles
    assert import_rows(shop, "orders", [{"customer_id": "c2", "order_id": "o9", "ordered_at": "2024-03-01T04:00:00Z", "amount": "5"}]).ok  # 8 pm on 29 February there

    def listed(**params):
        return ids(api_a.get("/api/v1/customers/", {**params, "ordering": "external_id"}))

    assert listed(last_order_after="2024-03-01") == ["c1"]
    assert listed(last_order_before="2024-03-01") == ["c2"]
    assert listed(last_order_after="2024-03-01T00:00:00") == ["c1", "c2"]  # a time without an offset stays UTC, as a sync's cursor
    with tenant_context(shop):
        for customer in Customer.objects.all():
            CustomerInsight.objects.create(customer=customer, as_of="2024-03-02", stage="active", stage_since="2024-03-01", stage_reason="-", action="nurture", action_reason="-")
        members = apply_filters(CustomerInsight.objects.all(), {"last_order_after": "2024-03-01"})
        assert [i.customer.external_id for i in members] == ["c1"]


def test_an_as_of_date_after_the_shops_today_is_refused(tenant_a):
    from clmsite.tenancy import shop_today

    shop = in_zone(tenant_a, "America/Los_Angeles")
    today = shop_today(shop)

    assert check_as_of(shop, today) == today
    with pytest.raises(InvalidAsOf, match=rf"is in the future; the latest as-of date is {today.isoformat()}"):
        check_as_of(shop, today + dt.timedelta(days=1))


@pytest.mark.parametrize(("tenure", "said"), [(28.2, "first order 28 days ago"), (28.9, "first order 28 days ago"), (0.6, "first order today")])
def test_the_first_order_factor_counts_calendar_days_as_the_stage_does(tenure, said):
    import pandas as pd

    from modeling.explain import describe

    assert describe("tenure_days", pd.Series({"tenure_days": tenure}), []) == said


def test_a_segments_category_counts_sales_only(tenant_a):
    from customers.models import Customer
    from modeling.insights import apply_filters
    from modeling.models import CustomerInsight

    assert import_rows(tenant_a, "orders", [
        {"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-03-01", "amount": "5", "category": "Kitchen", "sku": "k1"},
        {"customer_id": "c2", "order_id": "o2", "ordered_at": "2024-03-01", "amount": "5", "category": "Kitchen", "sku": "k1", "status": "refunded"},
    ]).ok
    with tenant_context(tenant_a):
        for customer in Customer.objects.all():
            CustomerInsight.objects.create(customer=customer, as_of="2024-03-02", stage="active", stage_since="2024-03-01", stage_reason="-", action="nurture", action_reason="-")
        assert [i.customer.external_id for i in apply_filters(CustomerInsight.objects.all(), {"category": "kitchen"})] == ["c1"]


def test_the_time_zone_picker_groups_zones_by_region_with_their_offsets(tenant_a, alice, client):
    client.force_login(alice)

    page = client.get("/settings/").content.decode()

    assert '<optgroup label="America">' in page and '<option value="America/Los_Angeles">Los Angeles (UTC−' in page
    assert 'value="US/Pacific"' not in page and 'value="EST"' not in page  # old aliases of a region's zone
    assert 'value="Asia/Kolkata"' in page and 'value="Asia/Calcutta"' not in page  # nor a region's old spellings (where the system lists zones by country)
    tenant_a.time_zone = "US/Pacific"  # saved before the picker left aliases out: kept
    tenant_a.save()
    assert '<option value="US/Pacific" selected>US/Pacific</option>' in client.get("/settings/").content.decode()


def test_the_models_page_says_why_a_mix_of_families_was_not_validated_together():
    from modeling.models import ModelVersion
    from modeling.views import _served_together

    def serving(jobs, champions):
        return [ModelVersion(target=target, family=family, job_id=job, is_champion=champion)
                for target, family, job, champion in zip(("purchase", "orders", "revenue"), ("tabular", "tabular", "bgnbd"), jobs, champions, strict=True)]

    assert _served_together(serving((None, None, None), (True, True, False)))["why_not"] == "an admin made one of them active by hand, so its training chose another mix"
    assert _served_together(serving((1, 2, 2), (True, True, True)))["why_not"] == "they come from different trainings"


def test_the_customer_page_counts_days_since_the_last_order_on_the_shops_calendar(tenant_a, alice, client):
    from django.utils import timezone

    from customers.models import Customer

    when = timezone.now() - dt.timedelta(days=6, hours=16)
    assert import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": when.isoformat(), "amount": "5"}]).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get()
    client.force_login(alice)

    page = client.get(f"/customers/{customer.pk}/").content.decode()

    days = (shop_day(timezone.now(), tenant_a) - shop_day(when, tenant_a)).days
    assert f'data-testid="recency">{days} days ago<' in page and "hours" not in page.split('data-testid="recency"')[1][:40]


def test_ctrl_c_in_a_command_ends_with_one_line_and_status_130():
    import io

    from clmsite.management.base import ClmCommand

    class Interrupted(ClmCommand):
        def handle(self, *args, **options):
            raise KeyboardInterrupt

    err = io.StringIO()
    with pytest.raises(SystemExit) as ended:
        Interrupted(stderr=err).execute(traceback=False, no_color=True, force_color=False, skip_checks=True)

    assert ended.value.code == 130 and err.getvalue().strip() == "Interrupted."


@pytest.mark.parametrize(("text", "encoding", "said"), [
    ("customer_id,name\nc1,山田太郎\nc2,佐藤花子\nc3,鈴木一郎\n", "shift_jis", "in cp932 (Japanese)"),
    ("customer_id,name,city\n" + "".join(f"c{i},{name},{city}\n" for i, (name, city) in enumerate(
        [("Иван Петров", "Москва"), ("Мария Иванова", "Санкт-Петербург"), ("Сергей Смирнов", "Новосибирск"), ("Ольга Кузнецова", "Екатеринбург")] * 5)),
     "cp1251", "in cp1251 (Russian)"),
])
def test_a_file_in_another_scripts_encoding_is_refused_not_imported_garbled(tenant_a, tmp_path, text, encoding, said):
    from customers.models import Customer
    from customers.services.imports import import_csv

    path = tmp_path / "c.csv"
    path.write_bytes(text.encode(encoding))

    result = import_csv(tenant_a, "customers", str(path))

    assert not result.ok and "the file is not in UTF-8 but, it seems, " + said in result.message and "Save it as UTF-8 CSV" in result.message
    assert result.errors and result.errors[0].row == 1
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_a_windows_1252_file_still_imports_and_a_utf_32_one_too(tenant_a, tmp_path):
    from customers.models import Customer
    from customers.services.imports import import_csv

    western = tmp_path / "w.csv"
    western.write_bytes("customer_id,name\nc1,Renée Ångström\nc2,Crème brûlée – “special”\n".encode("cp1252"))
    wide = tmp_path / "u32.csv"
    wide.write_bytes("customer_id,name\nc3,Zoë\n".encode("utf-32"))

    assert import_csv(tenant_a, "customers", str(western)).ok
    assert import_csv(tenant_a, "customers", str(wide)).ok
    with tenant_context(tenant_a):
        assert dict(Customer.objects.values_list("external_id", "name")) == {"c1": "Renée Ångström", "c2": "Crème brûlée – “special”", "c3": "Zoë"}


def test_a_time_in_the_future_is_named_on_the_shops_clock_and_a_lower_case_z_is_utc(tenant_a):
    import datetime as dt

    from django.utils import timezone

    from customers.services.parsing import FieldError, parse_datetime

    zone = dt.timezone(dt.timedelta(hours=-5), "EST")
    ahead = (timezone.now() + dt.timedelta(days=3)).astimezone(zone).replace(tzinfo=None, microsecond=0)
    with pytest.raises(FieldError, match=rf"^{ahead:%Y-%m-%d %H:%M} is in the future"):
        parse_datetime(ahead.isoformat(), zone=zone)
    assert parse_datetime("2024-03-01T10:00:00z") == dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)


def test_import_data_names_a_device_as_not_a_regular_file(tenant_a):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match=r"Not a file: /dev/null \(a device or a pipe, not a regular file\)"):
        call_command("import_data", "--tenant", tenant_a.slug, "--kind", "customers", "/dev/null")


@pytest.mark.parametrize("page", ["", " ", "%20"])
def test_a_blank_page_is_the_first_as_an_empty_one_is(shop_a_data, api_a, page):
    response = api_a.get(f"/api/v1/customers/?page={page}&page_size={page}")

    assert response.status_code == 200 and response.json()["count"] == 2
