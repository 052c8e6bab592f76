"""Merchant pages for customer data. Thin: each calls a query or service and renders."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_POST

from clmsite.models import Role
from clmsite.templatetags.clm import words
from clmsite.tenancy import shop_zone
from clmsite.views import tenant_required
from customers.services import queries
from customers.services.import_jobs import CHECK_KEPT_HOURS, checked_file, do_import_checked, do_start_import
from customers.services.imports import KINDS, SPECS
from modeling.exports import csv_download
from modeling.models import Job, Prediction, Stage


@tenant_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    from clmsite.datacache import cached
    from modeling.insights import dashboard_overview
    from modeling.sentiment import MIN_RATED_REVIEWS

    tenant = request.tenant  # type: ignore[attr-defined]
    # Aggregates over every order and stage snapshot: computed once per data version.
    stats = cached(tenant.pk, "dashboard-stats", lambda: queries.dashboard_stats(tenant))
    overview = cached(tenant.pk, "dashboard-overview", lambda: dashboard_overview(tenant))
    recent_imports = Job.objects.filter(kind=Job.Kind.IMPORT)[:5]
    return render(
        request,
        "dashboard.html",
        {"stats": stats, "monthly_data": stats["monthly"], "recent_imports": recent_imports, "overview": overview,
         "overview_data": overview["chart"], "can_retrain": request.membership.can(Role.ADMIN),  # type: ignore[attr-defined]
         "can_score": request.membership.can(Role.ANALYST),  # type: ignore[attr-defined]  # as modeling.views.score_now
         "imported_since_scoring": overview["has_insights"] and imported_since_scoring(), "min_rated_reviews": MIN_RATED_REVIEWS},
    )


def imported_since_scoring() -> bool:
    """Whether an import finished after the latest scoring did: the stages, predictions and
    actions on the page are then older than the data, and the page says so."""
    def last(*kinds: str) -> Any:
        # A check (params carry dry_run only then) wrote nothing.
        return (Job.objects.filter(kind__in=kinds, state=Job.State.SUCCEEDED).exclude(finished_at=None).exclude(params__has_key="dry_run")
                .order_by("-finished_at").values_list("finished_at", flat=True).first())

    imported = last(Job.Kind.IMPORT)
    scored = last(Job.Kind.SCORE)
    return imported is not None and (scored is None or imported > scored)


# Codes for a program and labels for a person, as the priorities file gives them.
CUSTOMER_CSV_COLUMNS = ["customer_id", "name", "email", "country", "orders", "total_spent", "last_order_at", "stage", "stage_label", "value_tier", "value_tier_label"]
STAGE_LABELS, TIER_LABELS = dict(Stage.choices), dict(Prediction.Tier.choices)


def _customer_row(zone: Any) -> Any:
    """A customer as the list's CSV writes it. The last order's time is on the shop's clock, with
    its offset (2026-12-06T23:45:00-08:00): the day the list shows, and still one instant."""
    def row(c: Any) -> list[object]:
        insight = getattr(c, "insight", None)
        stage, tier = (insight.stage, insight.value_tier) if insight else ("", "")
        last = c.last_order_at.astimezone(zone or dt.UTC).isoformat() if c.last_order_at else ""
        return [c.external_id, c.name, c.email, c.country, c.order_count, c.total_spent, last, stage, STAGE_LABELS.get(stage, ""), tier, TIER_LABELS.get(tier, "")]
    return row


@tenant_required()
def customer_list(request: HttpRequest) -> HttpResponse:
    def text(name: str, limit: int) -> str:
        return request.GET.get(name, "").replace("\x00", "").strip()[:limit]  # PostgreSQL text cannot hold NUL

    query, country = text("q", 100), text("country", 64)
    sort = request.GET.get("sort", "-spent")
    # A filter or sort the list does not know (an edited or old link) is left out, and said so.
    choices = {"stage": Stage.values, "tier": Prediction.Tier.values, "sort": queries.CUSTOMER_SORTS}
    given = {name: request.GET.get(name, "") for name in choices}
    stage, tier = (given[name] if given[name] in choices[name] else "" for name in ("stage", "tier"))
    unknown = [f"{name} '{value[:40]}'" for name, value in given.items() if value and value not in choices[name]]
    if unknown:
        messages.info(request, f"Not a choice of this list, so left out: {', '.join(unknown)}.")
    tenant = request.tenant  # type: ignore[attr-defined]
    customers = queries.search_customers(tenant, query=query, sort=sort, stage=stage, tier=tier, country=country)
    if request.GET.get("format") == "csv":  # the list as filtered and sorted, every page
        return csv_download(tenant, "customers.csv", CUSTOMER_CSV_COLUMNS, customers, _customer_row(shop_zone(tenant)))
    paginator = Paginator(customers, 25)
    filtered = bool(query or stage or tier or country)
    if not filtered:  # counting every customer is the page's costliest query: once per data version
        from clmsite.datacache import cached

        paginator.count = cached(tenant.pk, "customer-count", customers.count)  # type: ignore[misc]
    page = paginator.get_page(request.GET.get("page"))
    kept = urlencode({k: v for k, v in (("q", query), ("stage", stage), ("tier", tier), ("country", country)) if v})
    base = f"?{kept}&sort=" if kept else "?sort="
    return render(request, "customers/list.html", {
        "page": page, "q": query, "sort": sort, "base": base, "stage": stage, "tier": tier, "country": country, "filtered": filtered,
        "stages": Stage.choices, "tiers": Prediction.Tier.choices,
    })


@tenant_required()
def customer_detail(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = queries.get_customer(request.tenant, customer_id)  # type: ignore[attr-defined]
    timeline = queries.customer_timeline(request.tenant, customer)  # type: ignore[attr-defined]
    insight = queries.customer_insight(request.tenant, customer)  # type: ignore[attr-defined]
    orders = queries.customer_orders_page(request.tenant, customer, request.GET.get("orders_page"))  # type: ignore[attr-defined]
    # The order chart's time axis runs on to the date the customer was scored as of: the silence since the last order shows.
    scored = insight["prediction"].as_of if insight.get("prediction") else insight.get("latest_scoring")
    chart = {"orders": timeline["chart"], "until": scored.isoformat() if scored else None}
    return render(
        request,
        "customers/detail.html",
        {"customer": customer, "timeline": timeline, "insight": insight, "chart_data": chart, "orders": orders},
    )


@tenant_required()
def imports(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.membership.can(Role.ANALYST):  # type: ignore[attr-defined]
            raise Http404("Not found")
        kind = request.POST.get("kind", "")
        upload = request.FILES.get("file")
        if kind not in KINDS:
            messages.error(request, "Choose what the file contains.")
        elif upload is None:
            messages.error(request, "Choose a CSV file to upload.")
        else:
            # "Check only" is a second submit button: the same job, writing nothing.
            job = do_start_import(request.tenant, kind, upload, upload.name, acting_user=request.user, dry_run="dry_run" in request.POST)  # type: ignore[attr-defined]
            return redirect("import_detail", job_id=job.pk)
    jobs = Job.objects.filter(kind=Job.Kind.IMPORT).select_related("created_by")[:50]
    # The kind chosen stays chosen: the one just posted (a file was missing), the one asked for
    # (?kind=, the links from an import's page), or the latest import's; the form started at
    # Customers after every upload, a trap for the next file of orders.
    latest = jobs[0].params.get("kind") if jobs else None
    selected = next((kind for kind in (request.POST.get("kind"), request.GET.get("kind"), latest) if kind in KINDS), KINDS[0])
    # A small file of each kind (static/samples/): imported in this order, they import cleanly.
    formats = [
        {"kind": kind, "required": spec.required, "optional": [c.name for c in spec.columns if not c.required], "sample": static(f"samples/{kind}.csv")}
        for kind, spec in SPECS.items()
    ]
    return render(request, "imports/list.html", {"jobs": jobs, "kinds": KINDS, "selected": selected, "formats": formats})


@tenant_required()
def import_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = Job.objects.filter(kind=Job.Kind.IMPORT, pk=job_id).first()
    if job is None:
        raise Http404("Not found")
    from modeling.insights import latest_scoring_date

    check = job.is_check
    changed = job.state == Job.State.SUCCEEDED and not check and bool((job.result or {}).get("created") or (job.result or {}).get("updated"))
    # A result's details by name, "lines" aside (shown with the rows); a check's in the conditional.
    details = [(CHECK_DETAIL_LABELS.get(name, words(name)) if check else words(name), value)
               for name, value in (job.result or {}).get("details", {}).items() if name != "lines"]
    return render(request, "imports/detail.html", {
        "job": job, "details": details, "scored_as_of": latest_scoring_date(request.tenant) if changed else None,  # type: ignore[attr-defined]
        "importable": check and checked_file(job) is not None and request.membership.can(Role.ANALYST),  # type: ignore[attr-defined]
    })


@require_POST
@tenant_required(Role.ANALYST)
def import_checked(request: HttpRequest, job_id: int) -> HttpResponse:
    """Import the file a passed check read, without choosing it again."""
    check = Job.objects.filter(kind=Job.Kind.IMPORT, pk=job_id).first()
    if check is None:
        raise Http404("Not found")
    job = do_import_checked(request.tenant, check, acting_user=request.user)  # type: ignore[attr-defined]
    if job is None:
        messages.error(request, f"The checked file is no longer kept (a check keeps it for {CHECK_KEPT_HOURS} hours, until it is imported): upload it again.")
        return redirect("import_detail", job_id=check.pk)
    return redirect("import_detail", job_id=job.pk)


CHECK_DETAIL_LABELS = {"new_customers": "Customers it would create", "new_products": "Products it would create", "order_lines_written": "Order lines it would write"}
