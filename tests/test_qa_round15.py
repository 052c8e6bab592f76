"""Round 15: a data scientist's review of how the serving models are chosen and shown."""

from __future__ import annotations

import numpy as np
import pytest

from clmsite.tenancy import tenant_context
from modeling import metrics
from modeling.models import ModelVersion
from modeling.training import better, champion_for


def _shop_quarter(seed: int = 7, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Most customers buy nothing in a quarter: each customer's true rate, and what they did."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.4, 0.6, n)
    return rate, rng.poisson(rate).astype(float)


def test_a_forecast_of_nothing_for_everyone_wins_on_mae_but_never_on_deviance() -> None:
    rate, orders = _shop_quarter()
    zero = metrics.count_metrics(orders, np.zeros_like(rate), prefix="orders_")
    model = metrics.count_metrics(orders, rate, prefix="orders_")

    assert zero["orders_mae"] < model["orders_mae"]  # why MAE cannot choose the champion
    assert model["orders_deviance"] < zero["orders_deviance"]
    assert not better("orders", zero, model) and better("orders", model, zero)
    revenue = orders * 40.0
    zero_revenue = metrics.count_metrics(revenue, np.zeros_like(rate), prefix="revenue_")
    model_revenue = metrics.count_metrics(revenue, rate * 40.0, prefix="revenue_")
    assert zero_revenue["revenue_mae"] < model_revenue["revenue_mae"] and better("revenue", model_revenue, zero_revenue)


def test_the_deviance_prefers_the_true_rate_to_a_biased_one() -> None:
    rate, orders = _shop_quarter(seed=11)
    true = metrics.count_metrics(orders, rate, prefix="orders_")["orders_deviance"]

    assert all(true < metrics.count_metrics(orders, rate * k, prefix="orders_")["orders_deviance"] for k in (0.5, 0.8, 1.25, 2.0))


def test_a_challenger_displaces_bgnbd_on_orders_only_by_the_margin_of_deviance() -> None:
    bgnbd = {"orders_deviance": 0.800, "orders_mae": 0.40}
    close = {"orders_deviance": 0.790, "orders_mae": 0.20}  # 1.25% better: noise, whatever its MAE
    clear = {"orders_deviance": 0.700, "orders_mae": 0.45}  # 12.5% better, though its MAE is worse
    pick = lambda *candidates: champion_for("orders", list(candidates), family=lambda c: c[0], metrics=lambda c: c[1])[0]  # noqa: E731

    assert pick(("bgnbd", bgnbd), ("tabular", close)) == "bgnbd"
    assert pick(("bgnbd", bgnbd), ("tabular", clear)) == "tabular"


def test_versions_saved_before_the_deviance_are_compared_by_mae() -> None:
    assert better("orders", {"orders_mae": 0.3}, {"orders_mae": 0.4, "orders_deviance": 0.9})
    assert not better("revenue", {"revenue_mae": 14.0}, {"revenue_mae": 12.5})


@pytest.mark.django_db
def test_the_version_page_shows_the_deviance_first_and_not_as_money(tenant_a, client, alice) -> None:
    from clmsite.templatetags.clm import _headline

    scores = {"revenue_deviance": 3.2109, "revenue_mae": 12.5, "revenue_total_error_pct": 0.51}
    assert _headline("revenue", scores, "USD") == "deviance 3.211 · MAE USD 12.50 · total error 0.51%"
    with tenant_context(tenant_a):
        version = ModelVersion.objects.create(target="revenue", family="tabular", as_of="2024-03-01", metrics=scores,
                                              baseline_metrics={"bgnbd": {"revenue_deviance": 3.5, "revenue_mae": 11.0, "revenue_total_error_pct": -2.5}})
    client.force_login(alice)
    page = client.get(f"/models/{version.pk}/").content.decode()

    assert "<td>Revenue deviance (Tweedie)</td><td class=\"num\">3.211</td><td class=\"num\">3.500</td>" in page
    assert "Deviance</dt>" in page  # the glossary says what it is


def test_an_auc_lead_within_the_tie_goes_to_the_better_calibrated_chance() -> None:
    bgnbd = {"auc": 0.7343, "log_loss": 0.370}
    sharper = {"auc": 0.7364, "log_loss": 0.395}  # 0.002 ahead in ranking, worse probabilities
    pick = lambda *candidates: champion_for("purchase", list(candidates), family=lambda c: c[0], metrics=lambda c: c[1])[0]  # noqa: E731

    assert pick(("bgnbd", bgnbd), ("transformer", sharper)) == "bgnbd"
    assert pick(("bgnbd", bgnbd), ("transformer", {**sharper, "log_loss": 0.360})) == "transformer"
    assert pick(("bgnbd", bgnbd), ("tabular", {"auc": 0.7500, "log_loss": 0.395})) == "tabular"  # a clear lead in ranking wins
    chain = [("bgnbd", {"auc": 0.800, "log_loss": 0.40}), ("tabular", {"auc": 0.804, "log_loss": 0.45}), ("transformer", {"auc": 0.808, "log_loss": 0.50})]
    assert {pick(*chain), pick(*chain[::-1]), pick(chain[1], chain[2], chain[0])} == {"tabular"}  # within 0.005 of the best, the lowest log loss, in any order


# --- An integrator's walk: amounts at the limit ---------------------------------------------

BIG = "99999999999.99"  # the largest amount a line may have


@pytest.mark.django_db
def test_an_order_whose_lines_add_up_past_the_limit_is_a_row_error_and_stores_nothing(tenant_a, api_a, tmp_path) -> None:
    from customers.models import Order
    from customers.services.imports import import_csv

    rows = [{"customer_id": "ok1", "order_id": "fine", "ordered_at": "2024-01-01", "amount": "5.00"}] + [
        {"customer_id": "big", "order_id": "huge", "ordered_at": "2024-01-02", "amount": BIG, "sku": f"s{i}"} for i in range(2)]
    response = api_a.post("/api/v1/orders/bulk/", rows, format="json")

    assert response.status_code == 400 and response.json()["ok"] is False
    assert response.json()["errors"] == [{"row": 2, "column": "amount", "message": "order_id huge: its 2 lines add up to 199,999,999,999.98, "
                                                                                   "more than an order may total (under 100,000,000,000)"}]
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_id,ordered_at,amount,sku\n" + "".join(f"{r['customer_id']},{r['order_id']},{r['ordered_at']},{r['amount']},{r.get('sku', '')}\n" for r in rows))
    result = import_csv(tenant_a, "orders", str(path))
    assert not result.ok and [(e.row, e.column) for e in result.errors] == [(3, "amount")]  # the file's row 3: its header is row 1
    with tenant_context(tenant_a):
        assert not Order.objects.exists()


@pytest.mark.django_db
def test_a_customer_of_many_orders_at_the_limit_keeps_importing(tenant_a, api_a) -> None:
    from customers.models import Customer

    rows = [{"customer_id": "whale", "order_id": f"w{i}", "ordered_at": f"2024-01-{i + 1:02d}", "amount": BIG} for i in range(12)]
    assert api_a.post("/api/v1/orders/bulk/", rows, format="json").status_code == 200
    more = api_a.post("/api/v1/orders/bulk/", [{"customer_id": "whale", "order_id": "w99", "ordered_at": "2024-02-01", "amount": "1.00"}], format="json")

    assert more.status_code == 200, more.json()
    with tenant_context(tenant_a):
        assert str(Customer.objects.get(external_id="whale").total_spent) == "1200000000000.88"  # 12 x the limit, and 1.00


# --- Campaigns: who may delete one, and a small sample said as such ---------------------------


@pytest.mark.django_db
def test_an_analyst_cannot_delete_a_campaign_an_admin_set_to_go_out(tenant_a, api_a, client, alice) -> None:
    from campaigns.models import Campaign
    from clmsite.models import Membership, Role
    from tests.conftest import api_client_for

    with tenant_context(tenant_a):
        scheduled = Campaign.objects.create(tenant=tenant_a, name="Webhooked", action="win_back", webhook_url="https://example.com/hook")
        draft = Campaign.objects.create(tenant=tenant_a, name="Plain draft", action="win_back")
    analyst = api_client_for(tenant_a, Role.ANALYST)

    refused = analyst.delete(f"/api/v1/campaigns/{scheduled.pk}/")
    assert refused.status_code == 403 and "Only an admin or owner can delete" in refused.json()["detail"]
    Membership.objects.filter(tenant=tenant_a, user=alice).update(role=Role.ANALYST)
    client.force_login(alice)
    assert 'data-testid="delete-campaign"' not in client.get(f"/campaigns/{scheduled.pk}/").content.decode()
    page = client.post(f"/campaigns/{scheduled.pk}/delete/", {"shop": tenant_a.pk}, follow=True).content.decode()
    assert "Only an admin or owner can delete" in page
    assert analyst.delete(f"/api/v1/campaigns/{draft.pk}/").status_code == 204
    assert api_a.delete(f"/api/v1/campaigns/{scheduled.pk}/").status_code == 204  # an admin may
    with tenant_context(tenant_a):
        assert not Campaign.objects.exists()


def test_a_report_before_any_order_says_the_sample_is_small() -> None:
    from campaigns import services

    report = services.compare_groups(services.GroupOutcome(40, 0, 0.0, 0.0), services.GroupOutcome(16, 0, 0.0, 0.0))
    assert report["no_orders_yet"] and report["small_sample"]
    assert not services.compare_groups(services.GroupOutcome(400, 40, 4000.0, 1e5), services.GroupOutcome(400, 30, 3000.0, 1e5))["small_sample"]


def test_an_overdue_customer_whose_recency_still_raises_the_chance_is_not_shown_an_overdue_rise() -> None:
    import pandas as pd

    from modeling.explain import explain_rows

    row = pd.DataFrame({"recency_days": [10.0], "gap_median": [6.0], "orders": [12.0], "order_days": [12.0]}, index=[7])
    raised = explain_rows(row, pd.DataFrame({"recency_days": [0.8], "orders": [0.5]}, index=[7]), [])[7]
    lowered = explain_rows(row, pd.DataFrame({"recency_days": [-0.8], "orders": [0.1]}, index=[7]), [])[7]

    assert raised[0] == {"text": "no order for 10 days, 1.7× their usual gap of 6 days: overdue for them, still recent next to the typical customer",
                         "effect": "+", "weight": 0.8}
    assert lowered[0]["text"] == "overdue: no order for 10 days, 1.7× their usual gap of 6 days" and lowered[0]["effect"] == "-"


# --- JSON types taken at their word ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field", "message"), [
    ('{"name": 1e999}', "name", "Holds a number too large to read (such as 1e999)."),
    ('{"name": true}', "name", "Must be a string or a number, not true/false."),
    ('{"name": {"first": "Ann"}}', "name", "Must be a string or a number, not a JSON object."),
    ('{"attributes": {"a": 1e999}}', "attributes", "Holds a number too large to read (such as 1e999)."),
    ('{"email": true}', "email", "Must be a string or a number, not true/false."),
])
def test_a_customer_patch_refuses_a_value_of_the_wrong_json_type(tenant_a, api_a, body, field, message) -> None:
    from customers.models import Customer

    with tenant_context(tenant_a):
        customer = Customer.objects.create(tenant=tenant_a, external_id="j1", name="Ann")
    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", data=body, content_type="application/json")

    assert (response.status_code, response.json()) == (400, {field: [message]})
    with tenant_context(tenant_a):
        assert Customer.objects.get(pk=customer.pk).name == "Ann"


@pytest.mark.django_db
def test_a_campaign_takes_a_name_as_text_and_a_switch_as_true_or_false(tenant_a, api_a) -> None:
    refused = api_a.post("/api/v1/campaigns/", data={"name": ["Spring"], "action": "win_back", "persuadable_only": "yes"}, format="json")

    assert refused.status_code == 400
    assert refused.json() == {"name": ["Must be a string or a number, not a JSON list."], "persuadable_only": ["Must be true or false, not a string."]}
    assert api_a.post("/api/v1/campaigns/", data={"name": 2026, "action": "win_back", "offer": 10}, format="json").json()["name"] == "2026"  # a number, as a bulk row takes it
    form = api_a.post("/api/v1/campaigns/", data={"name": "Form", "action": "win_back", "persuadable_only": "true"})  # form-encoded: all strings
    assert form.status_code == 201 and form.json()["persuadable_only"] is True


@pytest.mark.django_db
def test_an_imports_errors_are_not_paged_and_say_so(tenant_a, api_a, django_capture_on_commit_callbacks) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("bad.csv", b"customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,-5\n", content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        job = api_a.post("/api/v1/imports/", {"kind": "orders", "file": upload}).json()
    errors = api_a.get(f"/api/v1/imports/{job['id']}/errors/")

    assert errors.status_code == 200 and errors.json()["error_count"] == 1 and errors.json()["errors"][0]["row"] == 2
    paged = api_a.get(f"/api/v1/imports/{job['id']}/errors/?page=2")
    assert paged.status_code == 400 and "Unknown query parameter" in paged.json()["page"][0]
    schema = api_a.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert set(schema["ImportRowError"]["properties"]) == {"row", "column", "message"}


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["Token", "Basic"])
def test_a_key_sent_with_another_scheme_is_told_how_to_send_it(tenant_a, scheme) -> None:
    from rest_framework.test import APIClient

    from clmsite.models import Role
    from clmsite.services import do_create_api_key

    _, raw = do_create_api_key(tenant_a, role=Role.VIEWER)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {raw}")
    response = client.get("/api/v1/customers/")

    assert response.status_code == 401 and response.json()["detail"] == f"The API takes its key as 'Authorization: Bearer <key>'; this request's Authorization header is '{scheme} …'."
    assert response["WWW-Authenticate"] == "Bearer"
    proxied = APIClient()  # a proxy's own Basic login, which a browser sends everywhere: not ours to refuse
    proxied.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert proxied.get("/api/schema/").status_code == 200 and proxied.get("/api/docs/").status_code == 200
    assert proxied.get("/api/v1/customers/").json()["detail"] == "Authentication credentials were not provided."


@pytest.mark.django_db
def test_a_shop_with_nothing_to_learn_from_is_refused_training_up_front(tenant_a, api_a, client, alice) -> None:
    from django.core.management import CommandError, call_command

    from modeling.models import Job

    response = api_a.post("/api/v1/models/retrain/", {}, format="json")
    assert response.status_code == 409 and "no orders or reviews to learn from yet" in response.json()["detail"]
    client.force_login(alice)
    page = client.post("/models/retrain/", {"shop": tenant_a.pk}, follow=True).content.decode()
    assert "no orders or reviews to learn from yet" in page
    with pytest.raises(CommandError, match="no orders or reviews to learn from yet"):
        call_command("train", "--tenant", tenant_a.slug, "--as-of", "2024-06-01", "--sync")
    with tenant_context(tenant_a):
        assert not Job.objects.exists()


# --- Bulk keys: misspelt, the API's own answers, attributes as an object -------------------------


@pytest.mark.django_db
def test_a_misspelt_column_is_refused_in_a_bulk_request_and_a_file(tenant_a, api_a, tmp_path) -> None:
    from customers.models import Order
    from customers.services.imports import import_csv

    rows = [{"customer_id": "m1", "order_id": "m1", "ordered_at": "2024-01-01", "amount": "5", "staus": "refunded", "category_id": "77"}]
    response = api_a.post("/api/v1/orders/bulk/", rows, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [{"row": 1, "column": "staus", "message": "is not a column of orders: did you mean status?"}]
    path = tmp_path / "orders.csv"
    path.write_text("customer_id,order_id,ordered_at,ammount,category_id\nm1,m1,2024-01-01,5,77\n")
    result = import_csv(tenant_a, "orders", str(path))
    assert not result.ok and [(e.row, e.column, e.message) for e in result.errors] == [(1, "amount", "missing required column 'amount' ('ammount' looks like a misspelling of it)")]
    assert result.message.endswith("'ammount' looks like a misspelling of amount. Rename it, or leave it out.")
    path.write_text("customer_id,order_id,ordered_at,amount,Staus\nm1,m1,2024-01-01,5,refunded\n")
    result = import_csv(tenant_a, "orders", str(path))
    assert not result.ok and [(e.row, e.column, e.message) for e in result.errors] == [(1, "staus", "is not a column of orders: did you mean status?")]
    with tenant_context(tenant_a):
        assert not Order.objects.exists()
    del rows[0]["staus"]
    assert api_a.post("/api/v1/orders/bulk/", rows, format="json").json()["ignored_columns"] == ["category_id"]  # another column, ignored as before
    from customers.services.imports import SPECS, misspelt_columns

    others = ["email_2", "created_by", "email2", "country2", "names", "ordered_by", "reorder_id", "customer_id2", "ratings", "category_id"]
    assert misspelt_columns(SPECS["customers"], others) == {} and misspelt_columns(SPECS["orders"], others) == {}
    assert misspelt_columns(SPECS["customers"], ["emial", "cusomer_id", "contry"]) == {"emial": "email", "cusomer_id": "customer_id", "contry": "country"}


@pytest.mark.django_db
def test_a_customer_sent_back_as_the_api_answered_it_is_refused_by_key_and_attributes_spread(tenant_a, api_a) -> None:
    from customers.models import Customer

    refused = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "k1", "first_seen": "2024-01-01", "order_count": 3}], format="json")
    assert refused.status_code == 400
    assert {(e["column"], e["message"]) for e in refused.json()["errors"]} == {
        ("first_seen", "is how the API answers the first-seen date; send it as created_at (the answer's own created_at is when the row was loaded: leave that out)"),
        ("order_count", "is computed from the customer's orders; leave it out")}
    clash = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "k1", "attributes": {"email": "a@x.com"}}], format="json")
    assert clash.status_code == 400 and clash.json()["errors"][0]["message"].startswith("'email' in attributes is a column of the customer's own")
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()

    ok = api_a.post("/api/v1/customers/bulk/", [{"customer_id": "k1", "email": "a@x.com", "attributes": {"tier": "gold", "Loyalty Points": 12}}], format="json")
    assert ok.status_code == 200, ok.json()
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="k1").attributes == {"tier": "gold", "loyalty_points": "12"}


@pytest.mark.django_db
def test_an_offer_that_is_a_share_of_what_they_would_spend_is_in_whole_units(tenant_a) -> None:
    import pandas as pd

    from campaigns.playbook import ensure_default_playbook, recommend

    rules = ensure_default_playbook(tenant_a)
    row = {"stage": "lapsed", "stage_reason": "", "tier": "medium", "churn": 0.99, "value": 0.7, "if_ordering": 33.9, "usual": 0.9, "value_at_risk": 16.8, "days_since": 300,
           "recent_sentiment": None, "negative_review": "", "categories": [], "spent": 90.0, "spend_top": 0.5, "orders": 1}
    other = recommend(rules, row, pd.DataFrame(), "USD ")  # "Win-back for other lapsed customers": 10% of the spend, up to 20

    assert other["offer"] == 3 and other["detail"] == "offer up to USD 3.00 (10% of the USD 34 they would spend)"
    assert recommend(rules, {**row, "if_ordering": 500.0}, pd.DataFrame(), "USD ")["offer"] == 20  # the cap itself, as set
    assert recommend(rules, {**row, "if_ordering": 19.0}, pd.DataFrame(), "USD ")["offer"] is None  # 1.90: under a tenth of the cap


@pytest.mark.django_db
def test_a_list_takes_a_page_size_up_to_500_and_refuses_any_other(tenant_a, api_a) -> None:
    from customers.models import Customer

    with tenant_context(tenant_a):
        Customer.objects.bulk_create([Customer(tenant=tenant_a, external_id=f"p{i:03d}") for i in range(120)])
    page = api_a.get("/api/v1/customers/?page_size=100").json()

    assert (page["count"], len(page["results"])) == (120, 100) and "page_size=100" in page["next"]
    assert len(api_a.get("/api/v1/customers/").json()["results"]) == 50
    for bad in ("0", "501", "abc", "-5"):
        response = api_a.get(f"/api/v1/customers/?page_size={bad}")
        assert response.status_code == 400 and "Not a page size" in response.json()["page_size"][0]


@pytest.mark.django_db
def test_an_integrator_syncs_what_changed_since_its_last_read(tenant_a, api_a) -> None:
    import datetime as dt

    rows = [{"customer_id": f"s{i}", "order_id": f"s{i}", "ordered_at": "2024-01-01", "amount": "5"} for i in range(3)]
    assert api_a.post("/api/v1/orders/bulk/", rows, format="json").status_code == 200
    read = max(dt.datetime.fromisoformat(o["updated_at"]) for o in api_a.get("/api/v1/orders/").json()["results"])
    since = (read + dt.timedelta(microseconds=1)).isoformat()  # just after the last change the integrator has seen
    rows[1]["amount"] = "7"
    assert api_a.post("/api/v1/orders/bulk/", rows, format="json").json()["updated"] == 1

    changed = api_a.get("/api/v1/orders/", {"updated_at__gte": since, "ordering": "updated_at"}).json()
    assert [o["external_id"] for o in changed["results"]] == ["s1"] and dt.datetime.fromisoformat(changed["results"][0]["updated_at"]) > read
    assert api_a.get("/api/v1/orders/", {"updated_at__lt": since}).json()["count"] == 2
    assert [c["external_id"] for c in api_a.get("/api/v1/customers/", {"updated_at__gte": since}).json()["results"]] == ["s1"]  # its total changed
    for path in ("/api/v1/reviews/", "/api/v1/products/"):
        assert api_a.get(path, {"updated_at__gte": since, "ordering": "-updated_at"}).status_code == 200


@pytest.mark.django_db
def test_a_version_its_training_passed_over_says_so_before_it_is_made_to_serve(tenant_a, client, alice) -> None:
    from modeling.models import Job

    with tenant_context(tenant_a):
        job = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.SUCCEEDED)
        kept = ModelVersion.objects.create(target="orders", family="bgnbd", as_of="2024-03-01", job=job, metrics={"orders_deviance": 0.70, "orders_mae": 0.40}, is_champion=True)
        passed = ModelVersion.objects.create(target="orders", family="tabular", as_of="2024-03-01", job=job, metrics={"orders_deviance": 0.80, "orders_mae": 0.30})
    client.force_login(alice)

    page = client.get(f"/models/{passed.pk}/").content.decode()
    assert 'data-testid="chosen-over"' in page and "Its training chose the BG/NBD model over this one" in page and "deviance 0.700" in page
    assert 'data-testid="chosen-over"' not in client.get(f"/models/{kept.pk}/").content.decode()
    with tenant_context(tenant_a):  # a run that chose none of them for this target (its families could not serve it): nothing to say
        ModelVersion.objects.filter(pk=kept.pk).update(is_champion=False)
    assert 'data-testid="chosen-over"' not in client.get(f"/models/{passed.pk}/").content.decode()


@pytest.mark.django_db
def test_an_admin_rotates_a_campaigns_webhook_secret_and_nobody_else_can(tenant_a, tenant_b, api_a, client, alice) -> None:
    from campaigns.models import Campaign, CampaignAudit
    from clmsite.models import Role
    from tests.conftest import api_client_for

    with tenant_context(tenant_a):
        hooked = Campaign.objects.create(tenant=tenant_a, name="Hooked", action="win_back", webhook_url="https://example.com/hook", webhook_secret="old")
        plain = Campaign.objects.create(tenant=tenant_a, name="Plain", action="win_back")
    url = f"/api/v1/campaigns/{hooked.pk}/rotate-webhook-secret/"

    assert api_client_for(tenant_a, Role.ANALYST).post(url).status_code == 403
    assert api_client_for(tenant_b, Role.ADMIN).post(url).status_code == 404  # another shop's: as if missing
    rotated = api_a.post(url)
    assert rotated.status_code == 200 and rotated.json()["webhook_secret"] not in ("", "old") and len(rotated.json()["webhook_secret"]) == 48
    assert api_a.post(f"/api/v1/campaigns/{plain.pk}/rotate-webhook-secret/").status_code == 409
    client.force_login(alice)
    page = client.post(f"/campaigns/{hooked.pk}/rotate-webhook-secret/", {"shop": tenant_a.pk}, follow=True).content.decode()
    assert "A new signing secret" in page and 'data-testid="rotate-secret"' in page
    with tenant_context(tenant_a):
        secret = Campaign.objects.get(pk=hooked.pk).webhook_secret
        assert secret != rotated.json()["webhook_secret"] and secret not in page.split('data-testid="audit"')[1].split("</table>")[0]
        assert CampaignAudit.objects.filter(campaign=hooked, event="webhook_rekeyed").count() == 2


@pytest.mark.django_db
def test_a_rule_with_a_cap_of_nothing_or_a_share_under_one_unit_makes_no_offer_and_says_why(tenant_a) -> None:
    import pandas as pd

    from campaigns.models import Action, Channel, PlaybookRule
    from campaigns.playbook import recommend

    row = {"stage": "lapsed", "stage_reason": "", "tier": "low", "churn": 0.9, "value": 0.8, "if_ordering": 8.0, "usual": 0.9, "value_at_risk": 7.0, "days_since": 300,
           "recent_sentiment": None, "negative_review": "", "categories": [], "spent": 50.0, "spend_top": 0.5, "orders": 1}
    flat = PlaybookRule(tenant=tenant_a, name="Nothing off", action=Action.WIN_BACK, channel=Channel.EMAIL, offer_cap=0)
    small = PlaybookRule(tenant=tenant_a, name="Small share", action=Action.WIN_BACK, channel=Channel.EMAIL, offer_pct=0.10, offer_cap=5)

    assert recommend([flat], row, pd.DataFrame(), "USD ")["detail"] == "no offer: the rule's cap is nothing"
    assert recommend([small], row, pd.DataFrame(), "USD ")["detail"] == "no offer: 10% of the USD 8 they would spend is USD 0.80, less than a whole unit"
    assert recommend([small], {**row, "if_ordering": 30.0}, pd.DataFrame(), "USD ")["offer"] == 3


@pytest.mark.django_db
def test_a_missing_id_is_a_404_before_anything_about_the_body(tenant_a, api_a) -> None:
    for method, path in (("delete", "/api/v1/segments/999999/"), ("delete", "/api/v1/campaigns/999999/"), ("post", "/api/v1/campaigns/999999/launch/"),
                         ("post", "/api/v1/models/999999/promote/"), ("post", "/api/v1/jobs/999999/cancel/")):
        response = getattr(api_a, method)(path, data={"why": "a body"}, format="json")
        assert response.status_code == 404, (path, response.json())
