"""CSV exports of predictions and review sentiment (the CLI and the UI share them)."""

from __future__ import annotations

import csv
import re
from typing import IO

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context

PREDICTION_COLUMNS = [
    "customer_id", "purchase_probability", "churn_probability", "expected_orders", "predicted_value", "value_tier",
    "lifecycle_stage", "segment", "recommended_action",
]


# The web downloads open in spreadsheets: without a byte-order mark, Excel reads UTF-8 in the
# system code page and shows "ZoÃ«" for "Zoë". (The importer reads the mark away again; the
# CLI's files, for programs, have none.)
EXCEL_BOM = "\ufeff"

PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def spreadsheet_safe(value: object) -> str:
    """Cells starting with = + - @ tab or CR are formulas to a spreadsheet: prefix a quote.

    Only a plain negative number ("-5", "-2.50", "-1e3") is left as it is. ``float()`` is no
    test for that: it ignores surrounding whitespace and accepts "-inf", "-nan" and "1_000",
    so "\t1" or "-1\n=cmd()" would pass. A cell starting with tab or CR is always escaped."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r" and not (text[0] == "-" and PLAIN_NUMBER.fullmatch(text)):
        return "'" + text
    return text


def latest_predictions(tenant: Tenant) -> list:
    from modeling.insights import latest_scoring_date
    from modeling.models import Prediction

    latest = latest_scoring_date(tenant)
    with tenant_context(tenant):
        if latest is None:
            return []
        return list(Prediction.objects.filter(as_of=latest).select_related("customer", "customer__insight__learned_segment").order_by("customer__external_id"))


def write_predictions_csv(tenant: Tenant, out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(PREDICTION_COLUMNS)
    rows = latest_predictions(tenant)
    for p in rows:
        insight = getattr(p.customer, "insight", None)  # stage, learned segment and action of the latest scoring
        writer.writerow([
            spreadsheet_safe(p.customer.external_id), f"{p.purchase_probability:.4f}", f"{p.churn_probability:.4f}", f"{p.expected_orders:.3f}",
            f"{p.predicted_value:.2f}", p.value_tier, insight.stage if insight else "",
            spreadsheet_safe(insight.learned_segment.name if insight and insight.learned_segment else ""),
            spreadsheet_safe(insight.action if insight else ""),
        ])
    return len(rows)


def write_reviews_csv(tenant: Tenant, out: IO[str]) -> int:
    from customers.models import Review

    writer = csv.writer(out)
    writer.writerow(["review_id", "sentiment", "sentiment_score"])
    count = 0
    with tenant_context(tenant):
        for external_id, sentiment, score in Review.objects.order_by("external_id").values_list("external_id", "sentiment", "sentiment_score").iterator():
            writer.writerow([spreadsheet_safe(external_id), sentiment, "" if score is None else f"{score:.4f}"])
            count += 1
    return count
