"""QA round 6: whole numbers are written plainly, and a sentiment model's sample is reviews."""

from __future__ import annotations

import pytest

from clmsite.templatetags.clm import metric_label
from customers.services.imports import import_csv
from customers.services.parsing import FieldError, parse_positive_int
from tests.conftest import write_csv


@pytest.mark.parametrize(("raw", "value"), [("3", 3), (" 7 ", 7), ("3.0", 3), ("+2", 2)])
def test_a_whole_number_may_carry_a_spreadsheets_trailing_zero(raw, value) -> None:
    assert parse_positive_int(raw) == value


@pytest.mark.parametrize(("raw", "message"), [
    ("1e1", "'1e1' is in scientific notation; write a plain whole number"),
    ("2.5", "'2.5' is not a whole number"), ("1_0", "'1_0' is not a whole number"), ("٣", "'٣' is not a whole number"),
    ("0", "must be between 1 and 1,000,000"), ("-1", "must be between 1 and 1,000,000"),
])
def test_anything_but_a_plain_whole_number_is_refused_with_its_reason(raw, message) -> None:
    with pytest.raises(FieldError, match=f"^{message}$"):
        parse_positive_int(raw)


@pytest.mark.django_db
def test_a_rating_or_quantity_in_scientific_notation_is_a_row_error(tenant_a, tmp_path) -> None:
    orders = import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", "customer_id,order_id,ordered_at,amount,quantity\nc1,o1,2024-01-01,3,1e1\n"))
    reviews = import_csv(tenant_a, "reviews", write_csv(tmp_path / "r.csv", "customer_id,review_id,created_at,text,rating\nc1,r1,2024-01-01,Fine,5e0\n"))
    assert [(e.row, e.column) for e in orders.errors] == [(2, "quantity")]
    assert [(e.row, e.column, e.message) for e in reviews.errors] == [(2, "rating", "'5e0' is not a rating from 1 to 5")]


def test_the_sentiment_models_sample_is_counted_in_reviews() -> None:
    assert metric_label("n", "sentiment") == "Reviews"
    assert metric_label("n", "purchase") == metric_label("n") == "Customers"
