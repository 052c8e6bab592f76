"""Read-side queries for customer pages and the dashboard. Every query runs inside the
current tenant's scope (the default managers), and fetch-by-id takes the tenant first."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pandas as pd
from django.core.paginator import Paginator
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, Sum
from django.db.models.functions import TruncMonth
from django.http import Http404
from django.utils import timezone

from clmsite.models import Tenant
from clmsite.tenancy import shop_day, shop_midnight, shop_today, tenant_context
from customers.models import Customer, Order, OrderItem, Product, Review
from customers.services import parsing

CUSTOMER_SORTS = {
    "external_id": "external_id",
    "-external_id": "-external_id",
    "spent": "total_spent",
    "-spent": "-total_spent",
    "orders": "order_count",
    "-orders": "-order_count",
    "last_order": "last_order_at",
    "-last_order": "-last_order_at",
    "name": "name",
    "-name": "-name",
    "value": "insight__predicted_value",  # the latest scoring's predicted value (the tier's source)
    "-value": "-insight__predicted_value",
}


def get_customer(tenant: Tenant, customer_id: int) -> Customer:
    """The tenant's customer with this id; a foreign id is as missing as a made-up one."""
    with tenant_context(tenant):
        customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise Http404("No such customer")
    return customer


LIST_COLUMNS = ("id", "external_id", "email", "name", "country", "order_count", "total_spent", "last_order_at")


def month_in_progress(month: dt.date) -> bool:
    """Whether ``month`` (any day of it) is the month under way (UTC): a chart marks it, as its
    few days read as a collapse of sales, or a swing of sentiment."""
    return month.strftime("%Y-%m") == timezone.now().strftime("%Y-%m")


def ordered_as(query: str) -> Q:
    """The customers with an order numbered ``query``: an order number finds its customer
    ("#1611", or "1611" for Shopify's "#1611"), as a support request quotes it."""
    numbers = {query.strip(), f"#{query.strip().lstrip('#')}"}
    return Q(Exists(Order.objects.filter(customer_id=OuterRef("pk"), external_id__in=numbers)))


def search_customers(tenant: Tenant, *, query: str = "", sort: str = "-spent", stage: str = "", tier: str = "", country: str = "") -> Any:
    """The customer list's rows: only the columns it shows (not the attributes JSON), with
    each customer's stage and value tier as of the latest scoring, filtered by them."""
    with tenant_context(tenant):
        customers = Customer.objects.select_related("insight").only(*LIST_COLUMNS, "insight__stage", "insight__value_tier")
        if query:
            # Accents and case aside: "muller" finds Müller (clmsite.lookups).
            matches = Q(external_id__icontains=query) | Q(email__uicontains=query) | Q(name__uicontains=query)
            last, comma, first = query.partition(",")
            if comma and last.strip() and first.strip():  # "Davis, Chloe" (or "Davis, C"), as a spreadsheet lists names, finds Chloe Davis
                matches |= Q(name__uicontains=last.strip()) & Q(name__uicontains=first.strip())
            matches |= ordered_as(query)
            customers = customers.filter(matches)
        if stage:
            customers = customers.filter(insight__stage=stage)
        if tier:
            customers = customers.filter(insight__value_tier=tier)
        if country:
            customers = customers.filter(parsing.country_matches("country", country))
        order = CUSTOMER_SORTS.get(sort, "-total_spent")
        field = order.lstrip("-")
        descending = order.startswith("-")
        if "__" in field or Customer._meta.get_field(field).null:
            # Customers who never ordered sort last either way.
            expression = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
            return customers.order_by(expression, "-pk" if descending else "pk")
        # Same direction for the tie-break, so that an index on (tenant, field, id) serves
        # the page by a plain (backward) scan instead of sorting every customer.
        return customers.order_by(order, "-pk" if descending else "pk")


def dashboard_stats(tenant: Tenant) -> dict[str, Any]:
    with tenant_context(tenant):
        totals = Customer.objects.aggregate(
            customers=Count("id"),
            buyers=Count("id", filter=Q(order_count__gt=0)),
            repeat=Count("id", filter=Q(order_count__gt=1)),
            revenue=Sum("total_spent"),
            orders=Sum("order_count"),
            reviews=Sum("review_count"),
        )
        monthly = list(
            Order.objects.exclude(status__in=Order.NOT_REVENUE).annotate(month=TruncMonth("ordered_at"))
            .values("month")
            .annotate(revenue=Sum("amount"), orders=Count("id"), buyers=Count("customer", distinct=True))
            .order_by("month")
        )
        products = Product.objects.count()
        not_sales = Order.objects.filter(status__in=Order.NOT_REVENUE).count()  # listed, not counted: said beside the count
        # Revenue adds every order's amount at face value: the page says which other currencies are in it.
        other_currencies = list(Order.objects.exclude(status__in=Order.NOT_REVENUE).exclude(currency__in=["", tenant.currency])
                                .order_by("currency").values_list("currency", flat=True).distinct()[:10])
        last_order = Order.objects.order_by("-ordered_at").values_list("ordered_at", flat=True).first()
        rated = Review.objects.filter(rating__isnull=False).aggregate(n=Count("id"), low=Count("id", filter=Q(rating__lte=2)))
    # SQLite keeps money as floats; round the sums back to cents.
    revenue = Decimal(totals["revenue"] or 0).quantize(Decimal("0.01"))
    orders = totals["orders"] or 0
    return {
        "customers": totals["customers"],
        "buyers": totals["buyers"],
        "repeat_rate": (totals["repeat"] / totals["buyers"]) if totals["buyers"] else 0.0,
        "revenue": revenue,
        "orders": orders,
        "not_sales": not_sales,
        "average_order_value": (revenue / orders) if orders else Decimal(0),
        "reviews": totals["reviews"] or 0,
        "negative_review_share": (rated["low"] / rated["n"]) if rated["n"] else 0.0,
        "products": products,
        "other_currencies": other_currencies,
        "last_order_at": last_order,
        # The month in progress is marked: its few days' sales would read as a collapse.
        "monthly": every_month([
            {"month": row["month"].strftime("%Y-%m"), "revenue": float(row["revenue"] or 0), "orders": row["orders"], "buyers": row["buyers"],
             "partial": month_in_progress(row["month"])}
            for row in monthly
            if isinstance(row["month"], dt.datetime | dt.date)
        ], {"revenue": 0.0, "orders": 0, "buyers": 0, "partial": False}, until=_latest_scoring_month(tenant)),
    }


def _latest_scoring_month(tenant: Tenant) -> str | None:
    from modeling.insights import latest_scoring_date

    scored = latest_scoring_date(tenant)
    return scored.strftime("%Y-%m") if scored else None


def every_month(rows: list[dict[str, Any]], empty: dict[str, Any], *, until: str | None = None) -> list[dict[str, Any]]:
    """``rows`` (one per "YYYY-MM" month, ascending) with the months between them that had
    none filled with ``empty``, and on to ``until`` (the latest scoring's month) when that is
    later: a chart that skipped them would draw April next to July, and a shop whose sales
    stopped would not look it."""
    if not rows:
        return rows
    by_month = {row["month"]: row for row in rows}
    last = max(rows[-1]["month"], until or "")
    months = pd.period_range(rows[0]["month"], last, freq="M").strftime("%Y-%m")
    def blank(month: str) -> dict[str, Any]:
        row = {"month": month, **empty}
        if "partial" in row:  # the month under way may have no order yet
            row["partial"] = month_in_progress(dt.date.fromisoformat(f"{month}-01"))
        return row

    return [by_month.get(month) or blank(month) for month in months]


ORDERS_PER_PAGE = 25


def order_lines() -> Prefetch:
    """An order's lines with their products, in one query (a join): a prefetch of the products
    on their own asks for them by id, which on SQLite becomes one OR per product, and an order
    of 1,000 different products passed SQLite's expression depth (a 500 on the API)."""
    return Prefetch("items", queryset=OrderItem.objects.select_related("product"))


def customer_orders_page(tenant: Tenant, customer: Customer, number: Any) -> Any:
    """One page of the customer's orders table, newest first, with their lines and products:
    every order can be read on the page, however many there are."""
    with tenant_context(tenant):
        page = Paginator(customer.orders.prefetch_related(order_lines()).order_by("-ordered_at", "-pk"), ORDERS_PER_PAGE).get_page(number)
        page.object_list = list(page.object_list)  # evaluated here, inside the tenant's scope
    return page


def customer_timeline(tenant: Tenant, customer: Customer) -> dict[str, Any]:
    with tenant_context(tenant):
        orders = list(customer.orders.prefetch_related(order_lines()).order_by("-ordered_at")[:200])
        reviews = list(customer.reviews.select_related("product").order_by("-created_at")[:100])
    from modeling.features import order_days, usual_gaps
    from modeling.review_insight import aspect_labels

    aspects = aspect_labels()
    for review in reviews:
        review.aspect_label = aspects.get(review.aspect, "")
    # The customer's rhythm as the models read it (modeling.features.usual_gaps): the median gap
    # between purchase occasions, days with a sale (orders on one day are one purchase), so
    # that the page, the factors and the profile say the same number.
    sales = [order for order in orders if order.status not in Order.NOT_REVENUE]
    usual = usual_gaps(order_days(pd.DataFrame({"customer": 0, "ordered_at": pd.to_datetime([shop_day(o.ordered_at, tenant) for o in sales])})))
    categories: dict[str, int] = {}
    for order in sales:  # what they bought: a cancelled, refunded, failed or voided order was not a purchase
        for item in order.items.all():
            if item.product and item.product.category:
                categories[item.product.category] = categories.get(item.product.category, 0) + item.quantity
    return {
        "orders": orders,
        "reviews": reviews,
        "median_gap_days": max(1, round(usual[0])) if len(usual) else None,
        "top_categories": sorted(categories.items(), key=lambda kv: -kv[1])[:5],
        # Totals add amounts as they are: orders in another currency count at face value.
        "other_currencies": sorted({o.currency for o in sales if o.currency and o.currency != tenant.currency}),
        "chart": [{"date": timezone.localtime(o.ordered_at).date().isoformat(), "amount": float(o.amount)} for o in reversed(sales)],  # the page's time zone
    }


def customer_insight(tenant: Tenant, customer: Customer) -> dict[str, Any]:
    """The latest prediction with its factors, and the text profile the transformer reads
    as of the prediction's date (kept by the scoring)."""
    from campaigns.services import has_declined
    from modeling.features import features_as_of, load_history
    from modeling.insights import latest_scoring_date
    from modeling.models import CustomerInsight, Prediction
    from modeling.profiles import customer_profiles
    from modeling.scoring import tier_meaning

    with tenant_context(tenant):
        state = CustomerInsight.objects.filter(customer=customer).select_related("learned_segment", "rfm_segment").first()
        prediction = Prediction.objects.filter(customer=customer).order_by("-as_of").first()
        # No latest prediction means no predictions at all: nothing more to ask for.
        history_of_predictions = list(
            Prediction.objects.filter(customer=customer).order_by("as_of").values("as_of", "purchase_probability", "predicted_value")[:50]
        ) if prediction is not None else []
    if prediction is None:
        profile, as_of = "", None
    elif prediction.profile:
        profile, as_of = prediction.profile, prediction.as_of
    else:  # scored before profiles were kept: rebuild it as of the prediction's date
        as_of = prediction.as_of
        history = load_history(tenant, ceiling=as_of, customer_ids=[customer.pk])
        features = features_as_of(history, as_of)
        profile = customer_profiles(history, as_of, features).get(customer.pk, "") if len(features) else ""
    factors_by, factors_against = _factors_source(tenant, prediction)
    return {
        "prediction": prediction,
        "state": state,
        # The page shows the stage history inside the stage card, which needs the current
        # state; a customer the lifecycle refresh has not reached yet has neither.
        "stage_history": stage_changes(tenant, customer) if state is not None else [],
        "profile": profile or ("No orders yet, so there is nothing for the model to read." if prediction else
                               "The model's reading of this customer appears with the first scoring."),
        "profile_as_of": as_of,
        # For a customer without a prediction: whether the shop has been scored at all (then the
        # customer arrived after the latest scoring, and the next one includes them).
        "latest_scoring": None if prediction is not None else latest_scoring_date(tenant),
        "trend": [{"as_of": p["as_of"].isoformat(), "purchase_probability": p["purchase_probability"]} for p in history_of_predictions],
        "factors_by": factors_by,
        # How far the model the factors explain reads this customer from the serving one: a
        # 60-point gap called "a little differently" read as a contradiction.
        "explainer_gap": (abs(prediction.explainer_probability - prediction.purchase_probability)
                          if prediction is not None and prediction.explainer_probability is not None else None),
        "factors_against": factors_against,
        "value_factors_by": _value_source(tenant, prediction),
        "saved_segments": _saved_segments_of(tenant, state),
        "campaigns": (campaigns := _campaigns_of(tenant, customer)),
        # Held out as control by a running campaign: the suggested action waits until its window ends.
        "held_out_by": next((m.campaign for m in campaigns if m.group == "control" and m.campaign.state == "running"), None),
        # The next action's channel is one they declined: said beside it, as the priorities list does.
        "declined_channel": state is not None and bool(state.action_channel) and has_declined(customer, state.action_channel),
        "days_before_scoring": _days_before_scoring(tenant, customer, state.as_of if state is not None else None),
        # Whole days on the shop's calendar, as the stage's reason counts them ("last order 7 days ago", not "6 days, 16 hours").
        "days_since_last_order": (shop_today(tenant) - shop_day(customer.last_order_at, tenant)).days if customer.last_order_at else None,
        "orders_since_scoring": _orders_since(tenant, customer, state.as_of if state is not None else prediction.as_of if prediction is not None else None),
        # The customer's own row changed after the scoring wrote the state (an import refunded an
        # old order, say): the totals at the top are newer than the stage and prediction below.
        "changed_since_scoring": state is not None and customer.updated_at > state.updated_at,
        "spend_top_percent": _spend_top_percent(tenant, customer),
        "tier_meaning": tier_meaning(tenant, prediction.value_tier, prediction.as_of) if prediction is not None else "",
    }


# A customer whose lifetime spend is in this top share of buyers is named a big spender beside
# a predicted value tier that is not high (the tier looks ahead; the spend is behind them).
BIG_SPENDER_SHARE = 0.1


def _spend_top_percent(tenant: Tenant, customer: Customer) -> int | None:
    """The top percent of the shop's buyers this customer's lifetime spend is in (1 = top 1%),
    when it is within the top tenth; otherwise None."""
    if not customer.order_count:
        return None
    with tenant_context(tenant):
        buyers = Customer.objects.filter(order_count__gt=0)
        total, at_least = buyers.count(), buyers.filter(total_spent__gte=customer.total_spent).count()
    share = at_least / total if total else 1.0
    return max(1, math.ceil(100 * share)) if share <= BIG_SPENDER_SHARE else None


def _factors_source(tenant: Tenant, prediction: Any) -> tuple[str, float | None]:
    """Where the customer's factors come from: the family serving the purchase probability
    when it is not the one whose attributions give them (the boosted trees of its run,
    modeling.scoring.explainer_version), so the page says so rather than pass one model's
    reasons off as another's; and the typical customer's chance the factors are measured
    against, the trees' base value (None for versions trained before it was recorded)."""
    from clmsite.templatetags.clm import family_label
    from modeling.models import ModelVersion
    from modeling.scoring import explainer_version

    if prediction is None or not prediction.explanation or not (prediction.model_versions or {}).get("purchase"):
        return "", None
    with tenant_context(tenant):
        purchase = ModelVersion.objects.filter(pk=prediction.model_versions["purchase"]).first()
    if purchase is None:
        return "", None
    trees = explainer_version(purchase)
    typical = (trees.hyperparameters or {}).get("typical_purchase_probability") if trees is not None else None
    return (family_label(purchase.family) if purchase.family != "tabular" else ""), typical


def _value_source(tenant: Tenant, prediction: Any) -> str:
    """The family serving the predicted value when it is not the boosted trees, whose
    attributions give its factors: the page says so, as for the chance (``_factors_source``)."""
    from clmsite.templatetags.clm import family_label
    from modeling.models import ModelVersion

    if prediction is None or not prediction.value_explanation or not (prediction.model_versions or {}).get("revenue"):
        return ""
    with tenant_context(tenant):
        family = ModelVersion.objects.filter(pk=prediction.model_versions["revenue"]).values_list("family", flat=True).first()
    return family_label(family) if family not in (None, "tabular") else ""


def _saved_segments_of(tenant: Tenant, state: Any) -> list[Any]:
    """The merchant's saved segments this customer is in now (they are live filters)."""
    from modeling.insights import segment_members
    from modeling.models import Segment

    if state is None:
        return []
    with tenant_context(tenant):
        return [segment for segment in Segment.objects.filter(kind=Segment.Kind.SAVED).order_by("name")
                if segment_members(segment).filter(pk=state.pk).exists()]


def _campaigns_of(tenant: Tenant, customer: Customer) -> list[Any]:
    """The launched campaigns this customer is in, newest first, with the group."""
    from campaigns.models import CampaignMember

    with tenant_context(tenant):
        return list(CampaignMember.objects.filter(customer=customer).select_related("campaign").order_by("-campaign__launched_at")[:20])


def _orders_since(tenant: Tenant, customer: Customer, as_of: dt.date | None) -> int:
    """Orders placed after the scoring date: the stage, prediction and action shown are as of
    that date and count them only at the next scoring."""
    if as_of is None or customer.last_order_at is None or shop_day(customer.last_order_at, tenant) <= as_of:
        return 0
    start = shop_midnight(as_of + dt.timedelta(days=1), tenant)
    with tenant_context(tenant):
        return customer.orders.filter(ordered_at__gte=start).count()


HISTORICAL_SCORING_DAYS = 30


def _days_before_scoring(tenant: Tenant, customer: Customer, as_of: dt.date | None) -> int | None:
    """For a shop scored at a past date (a historical data set such as CDNOW), how long
    before that date the last order was: the recency the stage and the predictions read,
    where "29 years ago" would say nothing. None for a shop scored lately."""
    recent = shop_today(tenant) - dt.timedelta(days=HISTORICAL_SCORING_DAYS)
    last = shop_day(customer.last_order_at, tenant) if customer.last_order_at is not None else None
    if as_of is None or last is None or as_of >= recent or last > as_of:
        return None
    return (as_of - last).days


def stage_changes(tenant: Tenant, customer: Customer) -> list[dict[str, Any]]:
    """The customer's stage history: each snapshot whose stage differs from the one before,
    newest first, with the date the stage began and the reason. Snapshots are a month apart,
    so a stage that began and ended between two of them is added from the orders (``inferred``):
    "New" from a first order in the month of the first snapshot, and "Lapsed" before a return
    the snapshots saw only as "Reactivated" ("Active, At risk, Reactivated" skipped the lapse
    that "came back after 66 days away" speaks of)."""
    from modeling.models import Stage, StageSnapshot

    labels = dict(Stage.choices)
    with tenant_context(tenant):
        snapshots = list(StageSnapshot.objects.filter(customer=customer).order_by("as_of").values("as_of", "stage", "since", "reason"))
    changes: list[dict[str, Any]] = []
    for snapshot in snapshots:
        if not changes or changes[-1]["stage"] != snapshot["stage"]:
            changes.append({**snapshot, "label": labels.get(snapshot["stage"], snapshot["stage"])})
    first_order = shop_day(customer.first_order_at, tenant) if customer.first_order_at else None
    if (changes and first_order is not None and changes[0]["stage"] not in (Stage.NEW, Stage.PROSPECT)
            and first_order < changes[0]["since"] and (changes[0]["as_of"] - first_order).days <= 31):
        changes.insert(0, {"as_of": None, "stage": Stage.NEW.value, "since": first_order, "label": labels[Stage.NEW],
                           "reason": "first order that day (between two monthly snapshots)", "inferred": True})
    for index in range(len(changes) - 1, 0, -1):
        returned = changes[index]
        if returned["stage"] == Stage.REACTIVATED and changes[index - 1]["stage"] != Stage.LAPSED:
            with tenant_context(tenant):
                before = (Order.objects.filter(customer=customer, ordered_at__lt=shop_midnight(returned["since"], tenant))
                          .exclude(status__in=Order.NOT_REVENUE).order_by("-ordered_at").values_list("ordered_at", flat=True).first())
            after = f" after the order of {shop_day(before, tenant).isoformat()}" if before is not None else ""
            changes.insert(index, {"as_of": None, "stage": Stage.LAPSED.value, "since": None, "label": labels[Stage.LAPSED], "inferred": True,
                                   "reason": f"away long enough to count as lapsed{after}, between two monthly snapshots"})
    return changes[::-1]
