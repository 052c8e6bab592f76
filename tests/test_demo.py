"""The demo loader: the synthetic shop's generator, its load through the import service,
the CDNOW sample, and the ``seed_demo`` command."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum

from clmsite.models import Membership, Role, Tenant
from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, OrderItem, Product, Review
from customers.services import demo
from customers.services.imports import ImportResult

END = dt.date(2025, 6, 30)
SMALL = 300


def _csv_texts(shop: demo.DemoShop, directory: Path) -> dict[str, str]:
    directory.mkdir()
    return {kind: path.read_text(encoding="utf-8") for kind, path in shop.write_csvs(directory).items()}


def _revenue(tenant: Tenant) -> Decimal:
    with tenant_context(tenant):
        total = Order.objects.aggregate(total=Sum("amount"))["total"]
    # SQLite sums decimals as floats; compare in cents.
    return Decimal(str(total)).quantize(Decimal("0.01"))


def _counts(tenant: Tenant) -> tuple[int, int, int, int, int]:
    with tenant_context(tenant):
        return (
            Customer.objects.count(),
            Product.objects.count(),
            Order.objects.count(),
            OrderItem.objects.count(),
            Review.objects.count(),
        )


@pytest.fixture
def shop_tenant(db: Any) -> Tenant:
    return Tenant.objects.create(slug="outdoor", name="Outdoor")


@pytest.fixture(scope="module")
def small_shop() -> demo.DemoShop:
    return demo.generate_shop(customers=SMALL, seed=7, end_date=END)


# --- The generator ------------------------------------------------------------------------


def test_same_seed_generates_identical_files(tmp_path: Path) -> None:
    # Given two shops from the same seed and one from another
    first = demo.generate_shop(customers=SMALL, seed=7, end_date=END)
    second = demo.generate_shop(customers=SMALL, seed=7, end_date=END)
    other = demo.generate_shop(customers=SMALL, seed=8, end_date=END)

    # Then the same seed writes byte-identical CSVs and another seed does not
    assert _csv_texts(first, tmp_path / "a") == _csv_texts(second, tmp_path / "b")
    assert _csv_texts(first, tmp_path / "a2")["orders"] != _csv_texts(other, tmp_path / "c")["orders"]
    assert len(first.orders) == len(second.orders)
    assert sum(o.amount_cents for o in first.orders) == sum(o.amount_cents for o in second.orders)


def test_a_bigger_shop_starts_with_the_same_customers(small_shop: demo.DemoShop) -> None:
    smaller = demo.generate_shop(customers=100, seed=7, end_date=END)

    assert [(c.external_id, c.email, [(o.external_id, o.amount_cents) for o in c.orders]) for c in smaller.customers] == [
        (c.external_id, c.email, [(o.external_id, o.amount_cents) for o in c.orders]) for c in small_shop.customers[:100]
    ]


def test_history_ends_before_the_end_date_and_spans_about_two_and_a_half_years(small_shop: demo.DemoShop) -> None:
    end = dt.datetime.combine(END, dt.time(), tzinfo=dt.UTC)
    order_times = [o.ordered_at for o in small_shop.orders]
    review_times = [r.created_at for r in small_shop.reviews]

    assert max(order_times + review_times) < end
    assert end - dt.timedelta(days=demo.HISTORY_DAYS) <= min(order_times)
    assert (end - min(order_times)).days > 800
    assert all(c.created_at <= c.orders[0].ordered_at for c in small_shop.customers if c.orders)


def test_default_size_is_about_five_thousand_customers_and_twenty_thousand_orders() -> None:
    shop = demo.generate_shop(end_date=END)

    assert len(shop.customers) == 5000
    assert 17_000 <= len(shop.orders) <= 22_000
    assert 2_400 <= len(shop.reviews) <= 3_400
    assert 100 <= len(shop.products) <= 130
    assert len({p.category for p in shop.products}) == 8


def test_archetypes_behave_as_described() -> None:
    shop = demo.generate_shop(customers=2000, seed=7, end_date=END)
    end = shop.end
    by_archetype: dict[str, list[demo.DemoCustomer]] = {}
    for customer in shop.customers:
        by_archetype.setdefault(customer.archetype, []).append(customer)

    def mean_order_value(name: str) -> float:
        orders = [o for c in by_archetype[name] for o in c.orders]
        return sum(o.amount_cents for o in orders) / len(orders)

    def gaps(name: str) -> list[float]:
        return [(b.ordered_at - a.ordered_at).days for c in by_archetype[name] for a, b in zip(c.orders, c.orders[1:], strict=False)]

    # Prospects never ordered; everyone else did
    assert by_archetype["prospect"]
    assert all(not c.orders for c in by_archetype["prospect"])
    assert all(c.orders for name, cs in by_archetype.items() if name != "prospect" for c in cs)
    # One-time buyers are the biggest group and almost all bought once
    assert max(by_archetype, key=lambda name: len(by_archetype[name])) == "one_time"
    assert sum(len(c.orders) == 1 for c in by_archetype["one_time"]) / len(by_archetype["one_time"]) > 0.9
    # Regulars keep a cadence of about a month or two; VIPs buy more often and spend more
    assert 25 <= statistics.median(gaps("loyal")) <= 60
    assert statistics.median(gaps("vip")) < statistics.median(gaps("loyal"))
    assert mean_order_value("vip") > 1.5 * mean_order_value("one_time") > 1.5 * mean_order_value("bargain")
    # Loyal customers are mostly still active; lapsing ones mostly are not
    active = {
        name: sum(c.orders[-1].ordered_at >= end - dt.timedelta(days=180) for c in cs) / len(cs)
        for name, cs in by_archetype.items()
        if name != "prospect"
    }
    assert active["loyal"] > 0.55
    assert active["lapsing"] < active["loyal"] - 0.15
    # New customers' first orders fall in the last 60 days
    assert all(c.orders[0].ordered_at >= end - dt.timedelta(days=demo.NEW_CUSTOMER_DAYS + 1) for c in by_archetype["new"])
    # Seasonal buyers buy in their season's months only
    for customer in by_archetype["seasonal"]:
        months = {o.ordered_at.month for o in customer.orders}
        assert months <= {11, 12} or months <= {3, 4, 5} or months <= {6, 7, 8}, months


def test_bad_experiences_and_negative_reviews_predict_churn() -> None:
    # Given a mid-sized shop
    shop = demo.generate_shop(customers=1000, seed=7, end_date=END)
    cutoff = shop.end - dt.timedelta(days=180)

    def churned(customers: list[demo.DemoCustomer]) -> float:
        return sum(c.orders[-1].ordered_at < cutoff for c in customers) / len(customers)

    negative = [c for c in shop.customers if any(r.rating is not None and r.rating <= 2 for r in c.reviews)]
    positive = [c for c in shop.customers if c.reviews and all(r.rating is not None and r.rating >= 4 for r in c.reviews)]

    # Then customers who wrote a 1-2 star review more often have no order in the last 180 days
    assert len(negative) >= 50
    assert len(positive) >= 100
    assert churned(negative) > churned(positive) + 0.1

    # And after a reviewed order, the next order is much less likely when the review was bad
    def reorder_rate(ratings: set[int]) -> float:
        outcomes = []
        for customer in shop.customers:
            order_ids = [o.external_id for o in customer.orders]
            for review in customer.reviews:
                if review.rating in ratings:
                    position = order_ids.index("O" + review.external_id[1:])
                    outcomes.append(position < len(order_ids) - 1)
        return sum(outcomes) / len(outcomes)

    assert reorder_rate({1, 2}) < reorder_rate({4, 5}) - 0.25

    # And so does a bad experience, reviewed or not (orders old enough to have been followed up)
    def again(experience: str) -> float:
        outcomes = [
            index < len(c.orders) - 1
            for c in shop.customers
            for index, o in enumerate(c.orders)
            if o.experience == experience and o.ordered_at < cutoff
        ]
        return sum(outcomes) / len(outcomes)

    assert again("bad") < again("mixed") < again("good")
    assert again("bad") < again("good") - 0.3


def test_review_text_follows_the_experience_and_varies() -> None:
    shop = demo.generate_shop(customers=2000, seed=7, end_date=END)
    reviews = shop.reviews
    by_experience: dict[str, list[demo.DemoReview]] = {}
    for review in reviews:
        by_experience.setdefault(review.experience, []).append(review)

    rated = [r for r in reviews if r.rating is not None]
    assert 0.05 <= (len(reviews) - len(rated)) / len(reviews) <= 0.15
    assert all(r.rating >= 4 for r in by_experience["good"] if r.rating is not None)
    assert all(r.rating <= 2 for r in by_experience["bad"] if r.rating is not None)
    assert Counter(r.rating for r in by_experience["mixed"]).most_common(1)[0][0] == 3
    # Not one sentence per rating: many distinct texts at every level
    for experience in ("good", "mixed", "bad"):
        texts = {r.text for r in by_experience[experience]}
        assert len(texts) > 0.6 * len(by_experience[experience]), experience
    assert all(r.text.strip() for r in reviews)


def test_review_text_names_the_problem() -> None:
    import random

    rng = random.Random(1)
    jacket = next(p for p in demo.build_catalogue() if p.category == "Jackets")
    texts = [demo.review_text(rng, jacket, "bad", "delivery") for _ in range(30)]

    assert all(any(word in t.lower() for word in ("arrive", "late", "deliver", "package", "weeks")) for t in texts), texts


# --- Loading through the import service ---------------------------------------------------------


@pytest.mark.django_db
def test_loading_the_shop_twice_changes_nothing(shop_tenant: Tenant, small_shop: demo.DemoShop) -> None:
    # Given the shop loaded once
    first = demo.load_shop(shop_tenant, small_shop)
    counts, revenue = _counts(shop_tenant), _revenue(shop_tenant)

    # When it is loaded again
    second = demo.load_shop(shop_tenant, small_shop)

    # Then the first load created everything, and the second found nothing to change
    assert [kind for kind in first] == ["products", "customers", "orders", "reviews"]
    assert all(result.ok for result in first.values())
    assert first["orders"].created == len(small_shop.orders)
    assert all(result.created == 0 and result.updated == 0 for result in second.values())
    assert _counts(shop_tenant) == counts
    assert _revenue(shop_tenant) == revenue == Decimal(sum(o.amount_cents for o in small_shop.orders)) / 100
    assert counts == (
        SMALL,
        len(small_shop.products),
        len(small_shop.orders),
        sum(len(o.lines) for o in small_shop.orders),
        len(small_shop.reviews),
    )


@pytest.mark.django_db
def test_the_loaded_shop_has_a_plausible_mix(shop_tenant: Tenant, small_shop: demo.DemoShop) -> None:
    demo.load_shop(shop_tenant, small_shop)

    with tenant_context(shop_tenant):
        one_time = Customer.objects.filter(order_count=1).count()
        repeat = Customer.objects.filter(order_count__gt=1).count()
        never = Customer.objects.filter(order_count=0).count()
        ratings = Counter(Review.objects.values_list("rating", flat=True))
        categories = set(OrderItem.objects.values_list("product__category", flat=True))
        statuses = Counter(Order.objects.values_list("status", flat=True))
        countries = Counter(Customer.objects.values_list("country", flat=True))
        customer = Customer.objects.exclude(order_count=0).first()

    assert one_time > repeat > 0.25 * (one_time + repeat)
    assert 0 < never < 0.1 * SMALL
    assert ratings[1] + ratings[2] > 0
    assert ratings[4] + ratings[5] > ratings[1] + ratings[2]
    assert ratings[None] > 0
    assert len(categories) >= 5
    assert statuses["completed"] > 0.95 * sum(statuses.values())
    assert statuses["refunded"] + statuses["cancelled"] > 0
    assert countries.most_common(1)[0][0] == "US"
    assert len(countries) >= 4
    assert customer is not None
    assert customer.email.endswith("@example.com")
    assert set(customer.attributes) == {"signup_source", "accepts_email_marketing"}


@pytest.mark.django_db
def test_seed_demo_creates_the_tenant_and_login_once() -> None:
    # When the demo is seeded twice
    first = demo.do_seed_demo(customers=120, end_date=END)
    tenant = Tenant.objects.get(slug=demo.DEMO_SLUG)
    counts, revenue = _counts(tenant), _revenue(tenant)
    second = demo.do_seed_demo(customers=120, end_date=END)

    # Then there is one demo tenant, owned by the demo login, and nothing changed the second time
    assert (tenant.name, tenant.currency) == ("Demo Outdoor Co.", "USD")
    assert Tenant.objects.filter(slug=demo.DEMO_SLUG).count() == 1
    user = get_user_model().objects.get(username="demo")
    assert user.check_password("demo12345")
    assert Membership.objects.get(user=user, tenant=tenant).role == Role.OWNER
    assert Membership.objects.filter(user=user).count() == 1
    assert _counts(tenant) == counts
    assert _revenue(tenant) == revenue
    assert first.tenants == second.tenants
    assert first.tenants[0].customers == 120
    assert not Tenant.objects.filter(slug=demo.CDNOW_SLUG).exists()


@pytest.mark.django_db
def test_seed_demo_keeps_an_existing_demo_user(django_user_model: Any) -> None:
    # Given a demo user whose password was changed
    user = django_user_model.objects.create_user("demo", password="changed-by-someone-1")

    # When the demo is seeded with the CDNOW sample only
    demo.do_seed_demo(synthetic=False, cdnow=True)

    # Then the user is kept as it was and owns the cdnow tenant
    user.refresh_from_db()
    assert user.check_password("changed-by-someone-1")
    assert django_user_model.objects.filter(username="demo").count() == 1
    assert list(Membership.objects.filter(user=user).values_list("tenant__slug", "role")) == [("cdnow", Role.OWNER)]
    assert not Tenant.objects.filter(slug=demo.DEMO_SLUG).exists()


# --- CDNOW ----------------------------------------------------------------------------------


def _cdnow_file_columns() -> list[list[str]]:
    text = (Path(demo.__file__).resolve().parent.parent / "demo_data" / "CDNOW_sample.txt").read_text(encoding="ascii")
    return [line.split() for line in text.splitlines() if line.strip()]


def test_read_cdnow_returns_one_record_per_line() -> None:
    lines = demo.read_cdnow()
    columns = _cdnow_file_columns()

    assert len(lines) == len(columns) == 6919
    assert len({line.customer_id for line in lines}) == 2357
    assert lines[0] == demo.CdnowLine("00004", "0001", dt.date(1997, 1, 1), 2, Decimal("29.33"))
    assert sum(line.dollars for line in lines) == sum(Decimal(c[4]) for c in columns)
    assert min(line.date for line in lines) == dt.date(1997, 1, 1)
    assert max(line.date for line in lines) <= dt.date(1998, 6, 30)
    assert any(line.dollars == 0 for line in lines)


@pytest.mark.django_db
def test_load_cdnow_makes_one_order_per_customer_per_day(shop_tenant: Tenant) -> None:
    columns = _cdnow_file_columns()

    # When the sample is loaded, twice
    first = demo.load_cdnow(shop_tenant)
    counts = _counts(shop_tenant)
    second = demo.load_cdnow(shop_tenant)

    # Then there is one order per (customer, day), worth the day's dollars
    assert all(result.ok for result in first.values())
    assert all(result.created == 0 and result.updated == 0 for result in second.values())
    assert _counts(shop_tenant) == counts
    pairs = {(c[0], c[2]) for c in columns}
    with tenant_context(shop_tenant):
        assert Customer.objects.count() == 2357
        assert Order.objects.count() == len(pairs) == 6696
        assert set(Order.objects.values_list("external_id", flat=True)) == {f"{customer}-{day}" for customer, day in pairs}
        order = Order.objects.select_related("customer").get(external_id="00004-19970101")
        assert (order.customer.external_id, order.ordered_at, order.amount) == (
            "00004",
            dt.datetime(1997, 1, 1, tzinfo=dt.UTC),
            Decimal("29.33"),
        )
        assert Order.objects.filter(amount=0).exists()
        item = OrderItem.objects.select_related("product").get(order=order)
        assert (item.quantity, item.product.sku, item.product.category) == (2, "CD", "Music")
        assert Customer.objects.get(external_id="00004").attributes == {"cdnow_full_set_id": "0001"}
    assert _revenue(shop_tenant) == sum(Decimal(c[4]) for c in columns)


# --- The command --------------------------------------------------------------------------


@pytest.mark.django_db
def test_command_seeds_and_says_how_to_sign_in() -> None:
    out = StringIO()

    call_command("seed_demo", "--customers", "80", "--seed", "3", "--end-date", "2025-06-30", stdout=out)

    text = out.getvalue()
    assert "Generating" in text
    assert "Importing products… done (120" in text
    assert "Importing reviews… done" in text
    assert "sign in as demo / demo12345" in text
    tenant = Tenant.objects.get(slug="demo")
    with tenant_context(tenant):
        assert Customer.objects.count() == 80


@pytest.mark.django_db
def test_command_reports_a_failed_import_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an import service that refuses the file
    def refuse(tenant: Tenant, kind: str, path: str, **kwargs: Any) -> ImportResult:
        return ImportResult(kind, False, message="Nothing was imported: 1 error in 1 row.")

    monkeypatch.setattr(demo, "import_csv", refuse)

    # When the demo is seeded, then the command fails with the import's message
    with pytest.raises(CommandError, match="Nothing was imported: 1 error in 1 row"):
        call_command("seed_demo", "--customers", "20", "--end-date", "2025-06-30", stdout=StringIO())
    # And nothing was imported
    with tenant_context(Tenant.objects.get(slug="demo")):
        assert Customer.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--no-synthetic"], "needs --cdnow"),
        (["--end-date", "30/06/2025"], "argument --end-date: 30/06/2025 is not a date like"),
        (["--customers", "0"], "at least 1"),
    ],
)
def test_command_refuses_bad_arguments(arguments: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("seed_demo", *arguments, stdout=StringIO())
    assert not Tenant.objects.exists()
