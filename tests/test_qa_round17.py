"""Session 17's follow-ups: small things an integrator or a merchant met."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_an_unencoded_plus_in_a_date_time_filter_says_so(api_a) -> None:
    # requests and curl send a literal + as is; the server reads it as a space.
    answer = api_a.get("/api/v1/orders/?updated_at__gte=2024-05-01T09:30:00+02:00")
    assert answer.status_code == 400
    message = answer.json()["updated_at__gte"][0]
    assert "a + in a URL's query reads as a space" in message and "%2B" in message
    assert api_a.get("/api/v1/orders/?updated_at__gte=2024-05-01T09:30:00%2B02:00").status_code == 200
    plain = api_a.get("/api/v1/orders/?updated_at__gte=yesterday").json()["updated_at__gte"][0]
    assert plain.startswith("Enter a date or date-time in ISO 8601")  # any other bad value: the usual message
    odd = api_a.get("/api/v1/orders/", {"updated_at__gte": "%d-01 02:00"})  # a % of the value's own is not a format
    assert odd.status_code == 400 and odd.json()["updated_at__gte"][0].startswith("'%d-01 02:00' is not a date-time")
