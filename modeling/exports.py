"""CSV exports of predictions and review sentiment (the CLI and the UI share them)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from django.http import StreamingHttpResponse

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


class _Echo:
    """A file-like object whose write returns the line, for streaming csv.writer rows."""

    def write(self, value: str) -> str:
        return value


def csv_download(tenant: Tenant, filename: str, header: list[str], items: Any, row: Callable[[Any], Iterable[object]]) -> StreamingHttpResponse:
    """A page's CSV download: ``row(item)`` for every item of the queryset ``items``, read in
    chunks while the response streams (after the view returned, so the tenant context is set
    again here), behind a byte-order mark for spreadsheets, every cell formula-safe."""
    def lines() -> Iterator[str]:
        writer = csv.writer(_Echo())
        yield EXCEL_BOM + writer.writerow(header)
        with tenant_context(tenant):
            for item in items.iterator(chunk_size=2000):
                yield writer.writerow([spreadsheet_safe(value) for value in row(item)])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


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
