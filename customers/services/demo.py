"""Demo data: a synthetic outdoor shop and the public CDNOW sample, loaded through the
ordinary import service so that the demo exercises the merchants' code path.

The synthetic shop is built to train on. Each customer follows a BG/NBD-like process:
while "alive" they buy with their own cadence, and after every purchase they may leave
for good. How likely they are to leave depends on their archetype and on how the order
went (a bad experience makes leaving much more likely), and a customer's reviews follow
the same experiences. So recency, frequency, spend and review sentiment all carry signal
about the future, as they do in real shops.

Generation is deterministic for a seed, and each customer draws from their own random
stream: the first N customers of a bigger shop are the same as those of a smaller one,
and order and review ids are derived from the customer (``O00042-03`` is customer
``C00042``'s third order). So a second run with the same arguments changes nothing, and
a run on a later day (the end date defaults to today) moves the same history forward,
updating rows in place; only the few customers whose history changes shape (a season
entering or leaving the window) keep an order or review from the earlier run.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
import random
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from clmsite.models import Role, Tenant
from clmsite.services import do_add_member, do_create_tenant
from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, Review
from customers.services.imports import ImportResult, import_csv

UTC = dt.UTC

DEMO_SLUG = "demo"
DEMO_NAME = "Demo Outdoor Co."
CDNOW_SLUG = "cdnow"
CDNOW_NAME = "CDNOW sample (1997-98)"
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo12345"  # noqa: S105 - a published demo login, not a secret  # nosec B105

DEFAULT_CUSTOMERS = 5000
DEFAULT_SEED = 7
# About 2.5 years of history before the end date.
HISTORY_DAYS = 913
# "New" customers placed their first order within this many days of the end date.
NEW_CUSTOMER_DAYS = 60

CDNOW_PATH = Path(__file__).resolve().parent.parent / "demo_data" / "CDNOW_sample.txt"


class Reporter(Protocol):
    def __call__(self, message: str, *, ending: str = "\n") -> None: ...


def _silent(message: str, *, ending: str = "\n") -> None:
    return None


class DemoImportFailed(Exception):
    """An import of demo data was refused; the message is the import's own."""


# --- The catalogue ----------------------------------------------------------------------

# name, list price in USD, and the noun reviews use for it when the name's last word is not one.
_CATALOGUE: dict[str, list[tuple[str, int, str]]] = {
    "Running shoes": [
        ("Ridgeline Trail Running Shoes", 139, ""),
        ("Ridgeline GTX Waterproof Trail Shoes", 165, ""),
        ("Women's Ridgeline Trail Running Shoes", 139, ""),
        ("Cloudpath Road Running Shoes", 129, ""),
        ("Women's Cloudpath Road Running Shoes", 129, ""),
        ("Cloudpath Lite Racing Flats", 149, ""),
        ("Switchback Trail Runners", 119, ""),
        ("Tempo 3 Road Shoes", 109, ""),
        ("Women's Tempo 3 Road Shoes", 109, ""),
        ("Mesa Cushioned Running Shoes", 135, ""),
        ("Scree Rock-Plate Trail Shoes", 155, ""),
        ("Canyon Minimalist Running Shoes", 99, ""),
        ("Longhaul Max-Cushion Shoes", 169, ""),
        ("Sprint Track Spikes", 89, ""),
        ("Kids' Trail Sneakers", 59, ""),
    ],
    "Hiking boots": [
        ("Summit Pro Leather Hiking Boots", 249, ""),
        ("Summit Mid GTX Hiking Boots", 199, ""),
        ("Women's Summit Mid GTX Hiking Boots", 199, ""),
        ("Granite Backpacking Boots", 279, ""),
        ("Trailhead Lightweight Hiking Shoes", 129, ""),
        ("Women's Trailhead Lightweight Hiking Shoes", 129, ""),
        ("Alpine Mountaineering Boots", 389, ""),
        ("Tundra Insulated Winter Boots", 219, ""),
        ("Cascade Approach Shoes", 149, ""),
        ("Pathfinder Waterproof Hikers", 159, ""),
        ("Women's Pathfinder Waterproof Hikers", 159, ""),
        ("Ridge Walker Hiking Sandals", 79, ""),
        ("Ranger Vegan Hiking Boots", 179, ""),
        ("Fellrunner Lightweight Boots", 169, ""),
        ("Kids' Trailhead Hiking Boots", 69, ""),
    ],
    "Jackets": [
        ("Stormline 3L Rain Jacket", 229, ""),
        ("Women's Stormline 3L Rain Jacket", 229, ""),
        ("Drizzle Packable Rain Jacket", 89, ""),
        ("Women's Drizzle Packable Rain Jacket", 89, ""),
        ("Summit 800 Down Jacket", 329, ""),
        ("Women's Summit 800 Down Jacket", 329, ""),
        ("Glacier Expedition Parka", 429, ""),
        ("Ember Synthetic Insulated Jacket", 179, ""),
        ("Breeze Ultralight Wind Jacket", 99, ""),
        ("Ridge Softshell Jacket", 149, ""),
        ("Women's Ridge Softshell Jacket", 149, ""),
        ("Basecamp Fleece Jacket", 79, ""),
        ("Women's Basecamp Fleece Jacket", 79, ""),
        ("Alpine Hardshell Ski Jacket", 349, ""),
        ("Kids' Puddle Rain Jacket", 49, ""),
    ],
    "Tents": [
        ("Basecamp 2P Backpacking Tent", 299, ""),
        ("Basecamp 3P Backpacking Tent", 379, ""),
        ("Featherlite 1P Ultralight Tent", 349, ""),
        ("Featherlite 2P Ultralight Tent", 429, ""),
        ("Family Dome 4P Tent", 249, ""),
        ("Family Dome 6P Tent", 349, ""),
        ("Family Cabin 8P Tent", 459, ""),
        ("Summit 4-Season Expedition Tent", 649, ""),
        ("Trailhead 2P Budget Tent", 149, ""),
        ("Hammock Camping Tent", 159, ""),
        ("Trekker Trekking-Pole Shelter", 229, ""),
        ("Canopy Screen Shelter", 189, ""),
        ("Pop-Up Beach Shelter", 69, ""),
        ("Ridgeline Ultralight Bivy", 179, ""),
        ("Basecamp 2P Tent Footprint", 49, ""),
    ],
    "Backpacks": [
        ("Switchback 18L Daypack", 89, ""),
        ("Switchback 28L Daypack", 129, ""),
        ("Women's Switchback 28L Daypack", 129, ""),
        ("Traverse 45L Backpacking Pack", 219, ""),
        ("Traverse 65L Backpacking Pack", 269, ""),
        ("Women's Traverse 60L Backpacking Pack", 259, ""),
        ("Featherlite 40L Ultralight Pack", 199, ""),
        ("Summit 30L Climbing Pack", 149, ""),
        ("Trailrunner 12L Hydration Vest", 119, ""),
        ("Commuter 24L Travel Backpack", 109, ""),
        ("Expedition 80L Duffel", 159, ""),
        ("Roll-Top 20L Dry Bag", 39, ""),
        ("Sling 8L Crossbody Bag", 49, ""),
        ("Waist 5L Hip Pack", 35, ""),
        ("Kids' Explorer 15L Backpack", 45, ""),
    ],
    "Socks & base layers": [
        ("Merino Hiking Socks", 24, ""),
        ("Merino Light Running Socks", 18, ""),
        ("Cushioned Trail Running Socks", 16, ""),
        ("Expedition Heavyweight Socks", 29, ""),
        ("Merino Hiking Socks 3-Pack", 62, "socks"),
        ("Liner Socks 2-Pack", 19, "socks"),
        ("Merino 150 Base Layer Top", 69, ""),
        ("Women's Merino 150 Base Layer Top", 69, ""),
        ("Merino 250 Base Layer Bottoms", 79, ""),
        ("Women's Merino 250 Base Layer Bottoms", 79, ""),
        ("Synthetic Quick-Dry Tee", 35, ""),
        ("Merino Midweight Hoodie", 109, ""),
        ("Compression Running Tights", 59, ""),
        ("Merino Boxer Briefs", 34, ""),
        ("Thermal Neck Gaiter", 22, ""),
    ],
    "Camping kitchen": [
        ("Titan Ultralight Canister Stove", 59, ""),
        ("Basecamp Two-Burner Camp Stove", 139, ""),
        ("Titanium 900ml Cook Pot", 49, ""),
        ("Two-Person Nesting Cookset", 79, ""),
        ("Insulated Camp Mug", 22, ""),
        ("Titanium Spork", 12, ""),
        ("Collapsible Silicone Bowl Set", 24, "bowls"),
        ("4L Gravity Water Filter", 89, ""),
        ("Squeeze Water Filter", 39, ""),
        ("Pour-Over Camp Coffee Maker", 29, "coffee maker"),
        ("230g Isobutane Fuel Canister", 8, "canister"),
        ("45qt Hard-Sided Cooler", 229, ""),
        ("Camp Kitchen Utensil Kit", 34, "utensil kit"),
        ("Folding Camp Table", 79, ""),
        ("1L Insulated Water Bottle", 35, ""),
    ],
    "Accessories": [
        ("Carbon Trekking Poles", 149, ""),
        ("Aluminum Trekking Poles", 69, ""),
        ("400-Lumen Rechargeable Headlamp", 49, ""),
        ("Compact First-Aid Kit", 29, "first-aid kit"),
        ("Polarized Trail Sunglasses", 79, ""),
        ("Merino Beanie", 29, ""),
        ("Touchscreen Liner Gloves", 25, ""),
        ("Insulated Ski Gloves", 69, ""),
        ("Wide-Brim Sun Hat", 35, ""),
        ("Packable Camp Pillow", 29, ""),
        ("20,000mAh Solar Power Bank", 59, "power bank"),
        ("Emergency Bivvy Blanket", 15, ""),
        ("Trail Running Gaiters", 29, ""),
        ("Microspike Traction Cleats", 69, ""),
        ("Bear Spray Holster", 19, ""),
    ],
}

_SKU_PREFIX = {
    "Running shoes": "RUN",
    "Hiking boots": "BOOT",
    "Jackets": "JKT",
    "Tents": "TENT",
    "Backpacks": "PACK",
    "Socks & base layers": "BASE",
    "Camping kitchen": "KIT",
    "Accessories": "ACC",
}
CATEGORIES = tuple(_CATALOGUE)
# Categories where "it doesn't fit" is a plausible complaint.
_FITTED = {"Running shoes", "Hiking boots", "Jackets", "Backpacks", "Socks & base layers"}
_SEWN = _FITTED | {"Tents"}
# An outing with it, and what wears it out: "on a rainy hike", "after three washes".
_USES = {
    "Running shoes": ("run", "runs"),
    "Hiking boots": ("hike", "hikes"),
    "Jackets": ("hike", "hikes"),
    "Tents": ("trip", "trips"),
    "Backpacks": ("hike", "hikes"),
    "Socks & base layers": ("hike", "washes"),
    "Camping kitchen": ("trip", "trips"),
    "Accessories": ("trip", "trips"),
}


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    name: str
    category: str
    price_cents: int
    noun: str
    # A "lemon" has a manufacturing problem: its buyers report quality issues far more often.
    lemon: bool = False

    @property
    def plural(self) -> bool:
        return self.noun.endswith("s") and not self.noun.endswith("ss")


def build_catalogue(seed: int = DEFAULT_SEED) -> list[DemoProduct]:
    """The shop's ~120 products in 8 categories, with one lemon per category."""
    rng = random.Random(f"catalogue:{seed}")  # demo data generator, not security  # nosec B311
    products = []
    for category, entries in _CATALOGUE.items():
        lemon = rng.randrange(len(entries))
        for index, (name, dollars, noun) in enumerate(entries):
            products.append(
                DemoProduct(
                    sku=f"{_SKU_PREFIX[category]}-{index + 1:03d}",
                    name=name,
                    category=category,
                    # Prices end in .95 or .00 as shop prices do.
                    price_cents=dollars * 100 - (5 if dollars % 2 else 0),
                    noun=noun or name.split()[-1].lower(),
                    lemon=index == lemon,
                )
            )
    return products


# --- Customer archetypes ----------------------------------------------------------------


@dataclass(frozen=True)
class Archetype:
    name: str
    share: float
    mean_gap_days: float  # mean days between purchases while alive
    regularity: float  # gamma shape of the gaps: 1 is memoryless (Poisson), higher is a steadier cadence
    dropout: float  # probability of leaving after a purchase that went well
    extra_line: float  # probability of each further line in a basket
    max_lines: int
    price_bias: float  # >0 favours the dear products of a category, <0 the cheap ones
    sale_share: float  # share of lines bought at a discount
    bad_rate: float  # probability an order goes badly
    mixed_rate: float  # probability an order goes so-so
    forgiveness: float = 0.0  # share of the extra dropout after a bad or so-so order that long-standing customers forgive


# fmt: off
ARCHETYPES = (
    #         name        share gap  reg. dropout line max bias  sale  bad   mixed
    # Prospects signed up and never ordered; the rest of their row is never used.
    Archetype("prospect", 0.05, 0, 1, 0.5, 0, 0, 0, 0, 0, 0),
    Archetype("one_time", 0.43, 150, 1.0, 0.93, 0.20, 2, 0.0, 0.15, 0.08, 0.14),
    Archetype("loyal", 0.15, 35, 4.0, 0.02, 0.40, 3, 0.3, 0.10, 0.04, 0.12, forgiveness=0.3),
    Archetype("lapsing", 0.11, 40, 3.0, 0.03, 0.30, 3, 0.0, 0.15, 0.12, 0.18),
    Archetype("seasonal", 0.07, 0, 1.0, 0.10, 0.45, 4, 0.3, 0.20, 0.07, 0.13),
    Archetype("vip", 0.04, 10, 2.5, 0.005, 0.60, 5, 1.0, 0.05, 0.03, 0.10, forgiveness=0.6),
    Archetype("bargain", 0.09, 45, 1.0, 0.10, 0.10, 2, -1.5, 0.70, 0.08, 0.22),
    Archetype("new", 0.06, 35, 1.5, 0.25, 0.30, 3, 0.0, 0.15, 0.08, 0.14),
)
# fmt: on

# Added to the probability of leaving after an order that went so-so or badly: after a bad
# one most customers leave, whatever their archetype.
MIXED_EXPERIENCE_DROPOUT = 0.15
BAD_EXPERIENCE_DROPOUT = 0.60
MAX_DROPOUT = 0.97
# Archetypes whose customers are the shop's established base: acquired evenly over the
# history rather than following the recent growth in new customers.
_ESTABLISHED = {"loyal", "lapsing", "vip"}
# A lapsing customer stops after a planned number of orders; this often follows a bad one.
LAPSE_AFTER_BAD = 0.65

# Seasonal buyers shop in one window a year, for the categories that season sells.
_SEASONS = {
    "holiday gifts": ((11, 15), (12, 24), ("Jackets", "Accessories", "Socks & base layers")),
    "spring hiking": ((3, 15), (5, 31), ("Hiking boots", "Backpacks", "Running shoes")),
    "summer camping": ((6, 1), (8, 20), ("Tents", "Camping kitchen", "Backpacks")),
}

ISSUES = ("delivery", "quality", "fit", "price", "service")
_ISSUE_WEIGHTS = {"delivery": 0.30, "quality": 0.30, "fit": 0.20, "price": 0.10, "service": 0.10}
# Probability that an order gets a review: unhappy customers write more often.
_REVIEW_RATE = {"good": 0.13, "mixed": 0.20, "bad": 0.35}
UNRATED_SHARE = 0.10

_HOURS = range(24)
_HOUR_CUM_WEIGHTS = list(itertools.accumulate((1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7, 6, 6, 6, 6, 7, 8, 8, 7, 5, 3)))
_COUNTRIES = (("US", 0.70), ("CA", 0.08), ("GB", 0.08), ("DE", 0.05), ("FR", 0.04), ("AU", 0.05))
# fmt: off
_FIRST_NAMES = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Emma",
    "William", "Olivia", "Daniel", "Sophia", "Lucas", "Mia", "Noah", "Chloe", "Ethan", "Hannah",
    "Liam", "Grace", "Owen", "Zoe", "Henry", "Lea", "Felix", "Clara", "Hugo", "Ava",
)
_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
    "Thomas", "Moore", "Martin", "Lee", "Walker", "Hall", "Young", "King", "Wright", "Scott",
    "Green", "Baker", "Nelson", "Carter", "Mitchell", "Roberts", "Murphy", "Cook", "Morgan", "Bell",
)
# fmt: on
# Where customers signed up; bargain hunters come from deal sites, regulars from the newsletter.
_REGULAR_SOURCES = (("search", 0.25), ("instagram", 0.15), ("referral", 0.25), ("newsletter", 0.20), ("deal_site", 0.05), ("direct", 0.10))
_SOURCES = {
    "default": (("search", 0.35), ("instagram", 0.20), ("referral", 0.15), ("newsletter", 0.10), ("deal_site", 0.10), ("direct", 0.10)),
    "bargain": (("search", 0.25), ("instagram", 0.10), ("referral", 0.05), ("newsletter", 0.05), ("deal_site", 0.50), ("direct", 0.05)),
    "loyal": _REGULAR_SOURCES,
    "vip": _REGULAR_SOURCES,
}


# --- The generated shop -----------------------------------------------------------------


@dataclass
class DemoLine:
    product: DemoProduct
    quantity: int
    amount_cents: int


@dataclass
class DemoOrder:
    external_id: str
    customer_id: str
    ordered_at: dt.datetime
    lines: list[DemoLine]
    experience: str  # good, mixed or bad
    issue: str | None  # what went wrong, for mixed and bad
    status: str = "completed"

    @property
    def amount_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines)


@dataclass
class DemoReview:
    external_id: str
    customer_id: str
    product: DemoProduct
    created_at: dt.datetime
    rating: int | None
    text: str
    experience: str


@dataclass
class DemoCustomer:
    external_id: str
    email: str
    name: str
    country: str
    created_at: dt.datetime
    archetype: str
    signup_source: str
    accepts_email: bool  # Shopify's "Accepts Email Marketing": the consent campaigns by email and paid social ask
    orders: list[DemoOrder] = field(default_factory=list)
    reviews: list[DemoReview] = field(default_factory=list)


@dataclass
class DemoShop:
    seed: int
    end_date: dt.date
    products: list[DemoProduct]
    customers: list[DemoCustomer]

    @property
    def orders(self) -> list[DemoOrder]:
        return [order for customer in self.customers for order in customer.orders]

    @property
    def reviews(self) -> list[DemoReview]:
        return [review for customer in self.customers for review in customer.reviews]

    @property
    def end(self) -> dt.datetime:
        """History ends at midnight UTC starting the end date: "today" has no orders yet."""
        return dt.datetime.combine(self.end_date, dt.time(), tzinfo=UTC)

    def write_csvs(self, directory: Path) -> dict[str, Path]:
        """Write the shop as the four CSV files a merchant would upload, in import order."""
        paths = {kind: directory / f"demo-{kind}.csv" for kind in ("products", "customers", "orders", "reviews")}
        _write_csv(
            paths["products"],
            ["sku", "name", "category", "price"],
            ([p.sku, p.name, p.category, _money(p.price_cents)] for p in self.products),
        )
        _write_csv(
            paths["customers"],
            ["customer_id", "email", "name", "country", "created_at", "signup_source", "accepts_email_marketing"],
            (
                [c.external_id, c.email, c.name, c.country, _iso(c.created_at), c.signup_source, "yes" if c.accepts_email else "no"]
                for c in self.customers
            ),
        )
        _write_csv(
            paths["orders"],
            ["customer_id", "order_id", "ordered_at", "amount", "currency", "quantity", "sku", "product_name", "category", "status"],
            (
                [
                    o.customer_id,
                    o.external_id,
                    _iso(o.ordered_at),
                    _money(line.amount_cents),
                    "USD",
                    line.quantity,
                    line.product.sku,
                    line.product.name,
                    line.product.category,
                    o.status,
                ]
                for o in self.orders
                for line in o.lines
            ),
        )
        _write_csv(
            paths["reviews"],
            ["customer_id", "review_id", "created_at", "text", "rating", "sku"],
            (
                [r.customer_id, r.external_id, _iso(r.created_at), r.text, "" if r.rating is None else r.rating, r.product.sku]
                for r in self.reviews
            ),
        )
        return paths


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def today_utc() -> dt.date:
    return timezone.now().astimezone(UTC).date()


def generate_shop(*, customers: int = DEFAULT_CUSTOMERS, seed: int = DEFAULT_SEED, end_date: dt.date | None = None) -> DemoShop:
    """Generate the synthetic outdoor shop: ``customers`` customers (about 5% prospects who
    never ordered), ~4 orders and ~0.6 reviews per customer, all before ``end_date``."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    end_date = end_date or today_utc()
    products = build_catalogue(seed)
    generator = _ShopGenerator(products, end_date)
    shop_customers = [generator.customer(random.Random(f"customer:{seed}:{number}"), number) for number in range(1, customers + 1)]  # demo data generator, not security  # nosec B311
    return DemoShop(seed=seed, end_date=end_date, products=products, customers=shop_customers)


class _ShopGenerator:
    def __init__(self, products: list[DemoProduct], end_date: dt.date) -> None:
        self.end = dt.datetime.combine(end_date, dt.time(), tzinfo=UTC)
        self.start = self.end - dt.timedelta(days=HISTORY_DAYS)
        self.by_category: dict[str, list[DemoProduct]] = defaultdict(list)
        for product in products:
            self.by_category[product.category].append(product)
        # Cumulative weights per (category, price bias): price ** bias.
        self.cum_weights: dict[tuple[str, float], list[float]] = {}
        for archetype in ARCHETYPES:
            for category, items in self.by_category.items():
                total, cumulative = 0.0, []
                for product in items:
                    total += (product.price_cents / 10_000) ** archetype.price_bias
                    cumulative.append(total)
                self.cum_weights[(category, archetype.price_bias)] = cumulative

    # The customer -----------------------------------------------------------------------

    def customer(self, rng: random.Random, number: int) -> DemoCustomer:
        archetype = rng.choices(ARCHETYPES, weights=[a.share for a in ARCHETYPES])[0]
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        external_id = f"C{number:05d}"
        sources = _SOURCES.get(archetype.name, _SOURCES["default"])
        customer = DemoCustomer(
            external_id=external_id,
            email=f"{first}.{last}{number}@example.com".lower(),
            name=f"{first} {last}",
            country=rng.choices([c for c, _ in _COUNTRIES], weights=[w for _, w in _COUNTRIES])[0],
            created_at=self.start,
            archetype=archetype.name,
            signup_source=rng.choices([s for s, _ in sources], weights=[w for _, w in sources])[0],
            accepts_email=rng.random() < (0.85 if archetype.name in ("loyal", "vip") else 0.6),
        )
        if archetype.name == "prospect":
            customer.created_at = self._moment(rng, rng.uniform(0, HISTORY_DAYS))
            return customer
        # Three favourite categories, the first above all, fill most of the customer's baskets.
        favourites = rng.sample(CATEGORIES, 3)
        if archetype.name == "seasonal":
            season = rng.choice(list(_SEASONS))
            favourites = list(_SEASONS[season][2])
            days = self._seasonal_days(rng, season)
        else:
            days = self._purchase_days(rng, archetype)
        category_weights = itertools.accumulate(4.0 if c == favourites[0] else 2.5 if c in favourites[1:] else 0.6 for c in CATEGORIES)
        self._orders(rng, customer, archetype, days, list(category_weights))
        first_order = customer.orders[0].ordered_at
        signup_lead = 0 if rng.random() < 0.6 else rng.uniform(0, 30)
        customer.created_at = max(self.start - dt.timedelta(days=30), first_order - dt.timedelta(days=signup_lead))
        return customer

    def _moment(self, rng: random.Random, day_offset: float) -> dt.datetime:
        """A time of day on day ``day_offset`` of the history, mostly daytime and evening."""
        day = self.start + dt.timedelta(days=min(math.floor(day_offset), HISTORY_DAYS - 1))
        hour = rng.choices(_HOURS, cum_weights=_HOUR_CUM_WEIGHTS)[0]
        return day + dt.timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))

    def _first_day(self, rng: random.Random, archetype: Archetype) -> float:
        if archetype.name == "new":
            return HISTORY_DAYS - rng.uniform(0, NEW_CUSTOMER_DAYS)
        if archetype.name in _ESTABLISHED:
            return rng.uniform(0, HISTORY_DAYS)
        # The shop grows: acquisitions rise from 0.5x to 1.5x the average over the history.
        while True:
            offset = rng.uniform(0, HISTORY_DAYS)
            if rng.random() * 1.5 < 0.5 + offset / HISTORY_DAYS:
                return offset

    def _purchase_days(self, rng: random.Random, archetype: Archetype) -> list[float]:
        """Candidate purchase days while alive; _orders decides when the customer leaves."""
        mean_gap = archetype.mean_gap_days * rng.uniform(0.67, 1.33)
        shape = archetype.regularity
        day = self._first_day(rng, archetype)
        days = []
        while day < HISTORY_DAYS:
            days.append(day)
            day += max(1.0, rng.gammavariate(shape, mean_gap / shape))
        return days

    def _seasonal_days(self, rng: random.Random, season: str) -> list[float]:
        (start_month, start_day), (end_month, end_day), _ = _SEASONS[season]
        windows = []
        for year in range(self.start.year, self.end.year + 1):
            opens = dt.datetime(year, start_month, start_day, tzinfo=UTC)
            closes = dt.datetime(year, end_month, end_day, tzinfo=UTC) + dt.timedelta(days=1)
            opens, closes = max(opens, self.start), min(closes, self.end)
            if opens < closes:
                windows.append(((opens - self.start).days, (closes - self.start).days))
        # Acquired in one of the windows (longer windows more likely), then back in each later one.
        first = rng.choices(range(len(windows)), weights=[b - a for a, b in windows])[0]
        days = []
        for index, (opens_on, closes_on) in enumerate(windows):
            if index < first:
                continue
            if index > first and rng.random() > 0.85:
                continue  # skipped a year
            visits = 1 + (rng.random() < 0.45) + (rng.random() < 0.15)
            days.extend(sorted(rng.uniform(opens_on, closes_on) for _ in range(visits)))
        return days

    # Orders and experiences -------------------------------------------------------------------

    def _orders(
        self, rng: random.Random, customer: DemoCustomer, archetype: Archetype, days: list[float], category_cum_weights: list[float]
    ) -> None:
        # Customers of one archetype differ: spread the dropout on the logit scale, which
        # keeps it a probability and keeps one-time buyers near-certain to leave.
        dropout = _logistic(math.log(archetype.dropout / (1 - archetype.dropout)) + rng.gauss(0, 0.4))
        lapse_after = rng.randint(4, 14) if archetype.name == "lapsing" else None
        for number, day in enumerate(days, start=1):
            ordered_at = self._moment(rng, day)
            lines = self._basket(rng, archetype, category_cum_weights)
            experience, issue = self._experience(rng, archetype, lines, ordered_at)
            lapses = lapse_after is not None and number >= lapse_after
            force_bad = rng.random() < LAPSE_AFTER_BAD
            if lapses and force_bad and experience != "bad":
                experience, issue = "bad", self._issue(rng, lines[0].product, ordered_at)
            order = DemoOrder(
                external_id=f"O{customer.external_id[1:]}-{number:02d}",
                customer_id=customer.external_id,
                ordered_at=ordered_at,
                lines=lines,
                experience=experience,
                issue=issue,
                status=self._status(rng, experience, issue),
            )
            customer.orders.append(order)
            review = self._review(rng, order)
            if review is not None:
                customer.reviews.append(review)
            if lapses or rng.random() < _leave_probability(archetype, dropout, experience):
                break

    def _basket(self, rng: random.Random, archetype: Archetype, category_cum_weights: list[float]) -> list[DemoLine]:
        count = 1
        while count < archetype.max_lines and rng.random() < archetype.extra_line:
            count += 1
        chosen: dict[str, DemoLine] = {}
        for _ in range(count):
            category = rng.choices(CATEGORIES, cum_weights=category_cum_weights)[0]
            product = rng.choices(self.by_category[category], cum_weights=self.cum_weights[(category, archetype.price_bias)])[0]
            quantity = rng.choice((1, 1, 2, 3)) if category == "Socks & base layers" or product.price_cents < 2000 else 1
            discount = rng.uniform(0.15, 0.40) if rng.random() < archetype.sale_share else 0.0
            amount = round(product.price_cents * quantity * (1 - discount))
            if product.sku not in chosen:
                chosen[product.sku] = DemoLine(product, quantity, amount)
        # The dearest item first: it is the one the customer reviews.
        return sorted(chosen.values(), key=lambda line: -line.amount_cents)

    def _experience(
        self, rng: random.Random, archetype: Archetype, lines: list[DemoLine], ordered_at: dt.datetime
    ) -> tuple[str, str | None]:
        bad = archetype.bad_rate + (0.12 if any(line.product.lemon for line in lines) else 0.0)
        roll = rng.random()
        issue = self._issue(rng, lines[0].product, ordered_at)
        if roll < bad:
            return "bad", issue
        if roll < bad + archetype.mixed_rate:
            return "mixed", issue
        return "good", None

    def _issue(self, rng: random.Random, product: DemoProduct, ordered_at: dt.datetime) -> str:
        weights = dict(_ISSUE_WEIGHTS)
        if product.category not in _FITTED:
            weights["fit"] = 0.0
        if product.lemon:
            weights["quality"] *= 4
        if (ordered_at.month, ordered_at.day) >= (11, 20):
            weights["delivery"] *= 2.5  # the holiday rush overwhelms the carriers
        return rng.choices(ISSUES, weights=[weights[i] for i in ISSUES])[0]

    def _status(self, rng: random.Random, experience: str, issue: str | None) -> str:
        roll = rng.random()
        if experience == "bad" and issue in ("quality", "fit") and roll < 0.30:
            return "refunded"
        if roll > 0.992:
            return "cancelled"
        return "completed"

    def _review(self, rng: random.Random, order: DemoOrder) -> DemoReview | None:
        if order.status == "cancelled" or rng.random() >= _REVIEW_RATE[order.experience]:
            return None
        product = order.lines[0].product
        delay = rng.randint(4, 21) + (rng.randint(7, 14) if order.issue == "delivery" else 0)
        created_at = order.ordered_at + dt.timedelta(days=delay, hours=rng.uniform(-6, 6))
        rating = _rating(rng, order.experience)
        text = review_text(rng, product, order.experience, order.issue)
        if created_at >= self.end:
            return None
        return DemoReview(
            external_id=f"R{order.external_id[1:]}",
            customer_id=order.customer_id,
            product=product,
            created_at=created_at,
            rating=None if rng.random() < UNRATED_SHARE else rating,
            text=text,
            experience=order.experience,
        )


def _logistic(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _leave_probability(archetype: Archetype, dropout: float, experience: str) -> float:
    if experience == "good":
        return dropout
    bump = BAD_EXPERIENCE_DROPOUT if experience == "bad" else MIXED_EXPERIENCE_DROPOUT
    return min(MAX_DROPOUT, dropout + bump * (1 - archetype.forgiveness))


def _rating(rng: random.Random, experience: str) -> int:
    if experience == "good":
        return 5 if rng.random() < 0.62 else 4
    if experience == "bad":
        return 1 if rng.random() < 0.55 else 2
    roll = rng.random()
    return 3 if roll < 0.70 else 4 if roll < 0.88 else 2


# --- Review text ------------------------------------------------------------------------
# Sentences are assembled from templates with the product, its noun and its use, so that
# a classifier has to learn what is said, not match one sentence per rating.

_GOOD_OPENERS = (
    "Love the {name}.",
    "Really happy with {this}.",
    "{This} {is} exactly what I needed.",
    "Would buy again.",  # good reviews are rated 4 or 5: not "five stars"
    "Second order from this shop and still impressed.",
    "Bought {this} for a weekend trip.",
    "Excellent {noun}.",
    "My partner stole {them} already.",
    "Great purchase.",
    "",
    "",
)
_GOOD_ASPECTS = {
    "quality": (
        "Solid build, no loose threads anywhere.",
        "After {n} {uses} {it_looks} like new.",
        "{It_feels} really well made.",
        "Held up perfectly on a rainy {use}.",
        "The materials are top notch.",
    ),
    "fit": (
        "{It_fits} true to size.",
        "Great fit right out of the box.",
        "Comfortable from day one, no break-in needed.",
        "Sizing chart was spot on.",
    ),
    "delivery": (
        "Arrived in two days.",
        "Shipping was quick and the packaging minimal.",
        "Delivery was faster than promised.",
        "Came the day after I ordered!",
    ),
    "price": ("Good value for the price.", "Worth every penny.", "Cheaper than at the big stores.", "Fair price for this quality."),
    "service": (
        "Support answered my question within an hour.",
        "The team was super helpful when I asked about care.",
        "Friendly service when I had a question.",
    ),
}
_GOOD_CLOSERS = (
    "Would buy again.",
    "Highly recommend.",
    "Already ordered another one as a gift.",
    "Will be back for more.",
    "",
    "",
    "10/10.",
)

_MIXED_POSITIVE = {
    "quality": ("Nice material", "Well made", "Solid quality", "Feels sturdy"),
    "fit": ("Great fit", "Comfortable", "Fits well"),
    "delivery": ("Quick delivery", "Arrived fast", "Shipping was quick"),
    "price": ("Fair price", "Good value", "Decent price"),
    "looks": ("Looks great", "Nice color", "Looks just like the photos"),
}
_MIXED_ISSUE = {
    "delivery": (
        "delivery took almost two weeks",
        "the package arrived a week late",
        "shipping took longer than the estimate",
        "tracking was stuck for days",
    ),
    "quality": (
        "{it_feels_lower} flimsier than I expected",
        "the color faded after a few {uses}",
        "the finish is already scratched",
    ),
    "fit": ("{it_runs} half a size small", "sizing is a bit off", "{it_is} tight around the {body_part}", "I had to size up"),
    "price": ("it's a bit pricey for what you get", "I saw it cheaper elsewhere a week later", "shipping costs were steep"),
    "service": (
        "nobody answered my question about the exchange",
        "the chat support was slow to reply",
        "the return label took days to arrive",
    ),
}
# Only for things with seams.
_MIXED_QUALITY_SEWN = ("the stitching is already coming loose", "one seam started fraying after {n} {uses}")
_MIXED_CLOSERS = ("It's okay.", "Not sure I'd buy again.", "Decent overall.", "Three stars.", "Mixed feelings.", "", "")

_BAD_ISSUE = {
    "delivery": (
        "Took almost a month to arrive and the box was crushed.",
        "The order showed up twelve days late, after the trip I bought it for.",
        "Delivery took three weeks and nobody could tell me where it was.",
        "Package was lost; the replacement took another two weeks.",
    ),
    "fit": (
        "Way too small even though I ordered my usual size.",
        "Gave me blisters on the first {use}.",
        "Completely different fit from the size chart.",
        "The {noun} {is} so narrow I couldn't wear {them}.",
    ),
    "price": (
        "Way overpriced for this quality.",
        "Paid full price and it went on sale at 40% off two days later.",
        "Not worth half of what I paid.",
    ),
    "service": (
        "Customer service ignored three emails about my return.",
        "Support was rude and refused the exchange.",
        "Waited on hold forty minutes and the refund still hasn't come through.",
    ),
}
_BAD_QUALITY = {
    "Running shoes": ("The sole started peeling off after {n} runs.", "The mesh tore near the toe after a few weeks."),
    "Hiking boots": ("Leaked on the first rainy hike.", "The sole came unglued after {n} hikes."),
    "Jackets": ("The zipper broke after two hikes.", "Soaked through in light rain, so much for waterproof."),
    "Tents": ("A pole snapped the first windy night.", "The rainfly leaked at every seam."),
    "Backpacks": ("A shoulder strap ripped at the seam within a month.", "The zipper split on my second trip."),
    "Socks & base layers": ("Holes in the heel after three washes.", "Shrank two sizes in the first wash."),
    "Camping kitchen": ("Stopped working on the second trip.", "The lid warped the first time I used it."),
    "Accessories": ("Stopped working after a week.", "Broke the first time I used it."),
}
_BAD_QUALITY_GENERIC = ("Cheap materials, fell apart quickly.", "Poor quality, {it_is} already falling apart.", "Defective out of the box.")
_BAD_CLOSERS = (
    "Disappointed.",
    "Won't order again.",
    "Returning it.",
    "Very frustrating.",
    "Not what I expect from a specialist shop.",
    "Save your money.",
    "",
)
_BODY_PARTS = {
    "Running shoes": "toes",
    "Hiking boots": "ankle",
    "Jackets": "shoulders",
    "Backpacks": "hips",
    "Socks & base layers": "calves",
}


def review_text(rng: random.Random, product: DemoProduct, experience: str, issue: str | None) -> str:
    """A review of ``product`` that tells how the order went, in varied words."""
    if experience == "good":
        aspects = [a for a in _GOOD_ASPECTS if a != "fit" or product.category in _FITTED]
        sentences = [rng.choice(_GOOD_OPENERS)] + [rng.choice(_GOOD_ASPECTS[a]) for a in rng.sample(aspects, rng.choice((1, 1, 2)))]
        sentences.append(rng.choice(_GOOD_CLOSERS))
    elif experience == "mixed":
        assert issue is not None
        positives = [a for a in _MIXED_POSITIVE if a != issue and (a != "fit" or product.category in _FITTED)]
        positive = rng.choice(_MIXED_POSITIVE[rng.choice(positives)])
        problems = _MIXED_ISSUE[issue]
        if issue == "quality" and product.category in _SEWN:
            problems += _MIXED_QUALITY_SEWN
        problem = _fill(rng, rng.choice(problems), product)
        if rng.random() < 0.6:
            sentences = [f"{positive}, but {problem}."]
        else:
            sentences = [f"{positive}.", f"{problem[0].upper()}{problem[1:]}."]
        sentences.append(rng.choice(_MIXED_CLOSERS))
    else:
        assert issue is not None
        if issue == "quality":
            options = _BAD_QUALITY[product.category] + _BAD_QUALITY_GENERIC
        else:
            options = _BAD_ISSUE[issue]
        opener = rng.choice(("", "", "Bought the {name}.", "Really wanted to like {this}.", "Ugh."))
        sentences = [opener, rng.choice(options), rng.choice(_BAD_CLOSERS)]
    text = " ".join(s for s in sentences if s)
    text = _fill(rng, text, product)
    # Some people type in a hurry.
    style = rng.random()
    if style < 0.08:
        text = text.lower().rstrip(".")
    elif style < 0.14 and experience != "mixed":
        text = text.rstrip(".") + "!"
    return text or "No comment."


def _fill(rng: random.Random, template: str, product: DemoProduct) -> str:
    plural = product.plural
    use, uses = _USES[product.category]
    values = {
        "name": product.name,
        "noun": product.noun,
        "this": f"these {product.noun}" if plural else f"this {product.noun}",
        "This": f"These {product.noun}" if plural else f"This {product.noun}",
        "them": "them" if plural else "it",
        "it_looks": "they look" if plural else "it looks",
        "It_feels": "They feel" if plural else "It feels",
        "it_feels_lower": "they feel" if plural else "it feels",
        "It_fits": "They fit" if plural else "It fits",
        "it_runs": "they run" if plural else "it runs",
        "it_is": "they are" if plural else "it is",
        "is": "are" if plural else "is",
        "use": use,
        "uses": uses,
        "n": rng.choice(("two", "three", "a few", "five", "ten")),
        "body_part": _BODY_PARTS.get(product.category, "edges"),
    }
    return template.format(**values)


# --- Loading ----------------------------------------------------------------------------


@dataclass
class TenantCounts:
    slug: str
    name: str
    customers: int
    orders: int
    reviews: int


@dataclass
class SeedSummary:
    username: str
    password: str
    tenants: list[TenantCounts]


def _import(tenant: Tenant, kind: str, path: Path, report: Reporter) -> ImportResult:
    report(f"Importing {kind}… ", ending="")
    result = import_csv(tenant, kind, str(path))
    if not result.ok:
        report("failed")
        first = result.errors[0] if result.errors else None
        where = f" First problem: row {first.row}{f', column {first.column}' if first.column else ''}: {first.message}." if first else ""
        raise DemoImportFailed(f"Importing demo {kind} into '{tenant.slug}' failed: {result.message}{where}")
    report(f"done ({result.rows:,}: {result.created:,} new, {result.updated:,} updated, {result.unchanged:,} unchanged)")
    return result


def load_shop(tenant: Tenant, shop: DemoShop, *, report: Reporter = _silent) -> dict[str, ImportResult]:
    """Import the generated shop into ``tenant`` as a merchant would: four CSV uploads."""
    with tempfile.TemporaryDirectory(prefix="clm-demo-") as directory:
        paths = shop.write_csvs(Path(directory))
        return {kind: _import(tenant, kind, path, report) for kind, path in paths.items()}


@dataclass(frozen=True)
class CdnowLine:
    customer_id: str  # as in the file, zero-padded: "00004"
    full_set_id: str
    date: dt.date
    cds: int
    dollars: Decimal


def read_cdnow(path: Path | str | None = None) -> list[CdnowLine]:
    """The CDNOW sample's lines, one record per line of the file (not per order)."""
    lines = []
    with Path(path or CDNOW_PATH).open(encoding="ascii") as handle:
        for text in handle:
            if not text.strip():
                continue
            customer_id, full_set_id, day, cds, dollars = text.split()
            lines.append(
                CdnowLine(customer_id, full_set_id, dt.date(int(day[:4]), int(day[4:6]), int(day[6:])), int(cds), Decimal(dollars))
            )
    return lines


def load_cdnow(tenant: Tenant, path: Path | str | None = None, *, report: Reporter = _silent) -> dict[str, ImportResult]:
    """Import the CDNOW sample into ``tenant``: one order per customer per day."""
    lines = read_cdnow(path)
    days: dict[tuple[str, dt.date], tuple[int, Decimal]] = {}
    first_seen: dict[str, tuple[dt.date, str]] = {}
    for line in lines:
        cds, dollars = days.get((line.customer_id, line.date), (0, Decimal(0)))
        days[(line.customer_id, line.date)] = (cds + line.cds, dollars + line.dollars)
        if line.customer_id not in first_seen or line.date < first_seen[line.customer_id][0]:
            first_seen[line.customer_id] = (line.date, line.full_set_id)
    with tempfile.TemporaryDirectory(prefix="clm-cdnow-") as name:
        directory = Path(name)
        paths = {kind: directory / f"cdnow-{kind}.csv" for kind in ("products", "customers", "orders")}
        _write_csv(paths["products"], ["sku", "name", "category"], [["CD", "CD", "Music"]])
        _write_csv(
            paths["customers"],
            ["customer_id", "created_at", "cdnow_full_set_id"],
            ([customer, day.isoformat(), full_id] for customer, (day, full_id) in sorted(first_seen.items())),
        )
        _write_csv(
            paths["orders"],
            ["customer_id", "order_id", "ordered_at", "amount", "currency", "quantity", "sku", "product_name", "category", "status"],
            (
                [customer, f"{customer}-{day:%Y%m%d}", day.isoformat(), f"{dollars:.2f}", "USD", cds, "CD", "CD", "Music", "completed"]
                for (customer, day), (cds, dollars) in sorted(days.items())
            ),
        )
        return {kind: _import(tenant, kind, path, report) for kind, path in paths.items()}


@transaction.atomic
def ensure_demo_tenant(slug: str, name: str, *, owner: Any) -> Tenant:
    """The tenant with ``slug`` (created if missing, left as it is otherwise), owned by ``owner``."""
    tenant = Tenant.objects.filter(slug=slug).first() or do_create_tenant(slug, name, currency="USD")
    do_add_member(tenant, owner, Role.OWNER)
    return tenant


def ensure_demo_user() -> Any:
    """The demo login, created with the published password if missing; an existing user is kept as it is."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = user_model.objects.create_user(DEMO_USERNAME, password=DEMO_PASSWORD)
    return user


def tenant_counts(tenant: Tenant) -> TenantCounts:
    with tenant_context(tenant):
        return TenantCounts(tenant.slug, tenant.name, Customer.objects.count(), Order.objects.count(), Review.objects.count())


def do_seed_demo(
    *,
    customers: int = DEFAULT_CUSTOMERS,
    seed: int = DEFAULT_SEED,
    end_date: dt.date | None = None,
    synthetic: bool = True,
    cdnow: bool = False,
    report: Reporter = _silent,
) -> SeedSummary:
    """Create (or refresh) the demo login and tenants. Safe to run again: the imports are
    upserts, so a second run with the same arguments changes nothing.

    Each import is all-or-nothing; a failed one raises :class:`DemoImportFailed` and
    leaves the imports before it in place."""
    user = ensure_demo_user()
    tenants = []
    if synthetic:
        end_date = end_date or today_utc()
        report(
            f"Generating the demo shop ({customers:,} customers, seed {seed}, {HISTORY_DAYS} days of history before {end_date})… ",
            ending="",
        )
        shop = generate_shop(customers=customers, seed=seed, end_date=end_date)
        report(f"done ({len(shop.orders):,} orders, {len(shop.reviews):,} reviews)")
        tenant = ensure_demo_tenant(DEMO_SLUG, DEMO_NAME, owner=user)
        load_shop(tenant, shop, report=report)
        tenants.append(tenant)
    if cdnow:
        report("Loading the CDNOW sample…")
        tenant = ensure_demo_tenant(CDNOW_SLUG, CDNOW_NAME, owner=user)
        load_cdnow(tenant, report=report)
        tenants.append(tenant)
    return SeedSummary(DEMO_USERNAME, DEMO_PASSWORD, [tenant_counts(t) for t in tenants])
