"""Web QA walk, round 7: a form sent after the session ended leads back to its page, not to a
bare 405; one day is "1 day"; an action filter with no customers says so."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
import pytest

from modeling.explain import describe

pytestmark = pytest.mark.django_db


def test_a_form_sent_after_the_session_ended_leads_back_to_its_page(client, alice, tenant_a) -> None:
    # Logged out (in another tab, or the session expired), the merchant presses a button.
    response = client.post("/tenant/switch/", {"tenant_id": tenant_a.pk}, HTTP_REFERER="http://testserver/customers/?q=ann")
    assert response.status_code == 302 and response["Location"] == f"/login/?next={quote('/customers/?q=ann', safe='/')}"
    page = client.get(response["Location"]).content.decode()
    assert "Your session ended, so nothing was saved or started" in page
    # Back from the login, the merchant lands on the page the form was on.
    logged_in = client.post(response["Location"], {"username": "alice", "password": "alice-pass-123"})
    assert logged_in.status_code == 302 and logged_in["Location"] == "/customers/?q=ann"
    # A page of the shop's posts the same way; another site's address is not followed.
    client.logout()
    away = client.post("/playbook/", {}, HTTP_REFERER="https://elsewhere.example/phish")
    assert away["Location"] == "/login/?next=/"
    # A plain page view is Django's redirect, as before.
    assert client.get("/customers/")["Location"] == "/login/?next=/customers/"


def test_one_day_is_written_in_the_singular() -> None:
    row = pd.Series({"recency_days": 1.2, "gap_median": 1.0, "order_days": 3, "tenure_days": 1.0, "days_since_review": 1.0})
    assert describe("recency_days", row, []) == "last order 1 day ago, within their usual 1-day rhythm"
    assert describe("tenure_days", row, []) == "first order 1 day ago"
    assert describe("days_since_review", row, []) == "last review 1 day ago"


def test_an_action_filter_with_no_customers_says_so(client, alice) -> None:
    client.force_login(alice)
    page = client.get("/priorities/?action=win_back").content.decode()
    assert "No customer has this action today." in page and "Nothing yet" not in page


def test_a_name_written_last_name_first_is_found(client, alice, tenant_a) -> None:
    from customers.services.imports import import_rows

    import_rows(tenant_a, "customers", [{"customer_id": "c9", "name": "Chloe Davis"}])
    client.force_login(alice)
    page = client.get("/customers/", {"q": "Davis, Chloe"}).content.decode()
    assert "c9" in page
    nothing = client.get("/customers/", {"q": "Nobody, Here"}).content.decode()
    assert "No customers match “Nobody, Here”." in nothing  # no filters are set, so none are blamed


def test_every_order_of_a_customer_can_be_read_on_its_page(client, alice, tenant_a) -> None:
    from clmsite.tenancy import tenant_context
    from customers.models import Customer
    from customers.services.imports import import_rows

    import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": f"o{n:02}", "ordered_at": f"2024-01-{n:02}", "amount": "5"} for n in range(1, 31)])
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    client.force_login(alice)
    first = client.get(f"/customers/{customer.pk}/").content.decode()
    assert "1–25 of 30, newest first" in first and "o30" in first and "o05" not in first and "orders_page=2" in first
    older = client.get(f"/customers/{customer.pk}/", {"orders_page": 2}).content.decode()
    assert "26–30 of 30" in older and "o01" in older and "o30" not in older


def test_the_models_page_explains_its_names_and_numbers(client, alice) -> None:
    client.force_login(alice)
    page = client.get("/models/").content.decode()
    assert 'data-testid="glossary"' in page and "0.5 is a coin toss" in page and "BG/NBD" in page


def test_a_lapsed_big_spender_gets_a_win_back_not_no_action(tenant_a) -> None:
    from campaigns.playbook import ensure_default_playbook, recommend

    rules = ensure_default_playbook(tenant_a)
    lapsed = {"stage": "lapsed", "stage_reason": "lapsed: 400 days since the last order", "tier": "low", "churn": 0.97, "value": 3.0,
              "if_ordering": 100.0, "usual": 0.9, "value_at_risk": 97.0, "days_since": 400, "recent_sentiment": None, "negative_review": "", "categories": []}
    big = recommend(rules, {**lapsed, "spent": 38987.0, "spend_top": 0.004}, pd.DataFrame(), "USD ")
    small = recommend(rules, {**lapsed, "spent": 40.0, "spend_top": 0.8}, pd.DataFrame(), "USD ")
    assert (big["action"], big["rule_name"]) == ("win_back", "Win-back for lapsed big spenders")
    assert "spent USD 38,987 in all, top 1% of buyers" in big["reason"] and big["offer"] is None
    assert small["action"] == "no_action"


def test_last_name_and_initial_finds_the_customer(client, alice, tenant_a) -> None:
    from customers.services.imports import import_rows

    import_rows(tenant_a, "customers", [{"customer_id": "c9", "name": "Felix Davis"}, {"customer_id": "c8", "name": "Ann Davis"}])
    client.force_login(alice)
    page = client.get("/customers/", {"q": "Davis, F"}).content.decode()
    assert "Felix Davis" in page and "Ann Davis" not in page  # by name: a random token in the page may hold "c8"
