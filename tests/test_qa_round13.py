"""Round 13, a new merchant's first day on a tiny shop: what its training, segments and
settings must say (the reviews' fixes are in test_sentiment.py, the team's in test_team.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command

from clmsite.tenancy import tenant_context
from customers.services.imports import import_csv
from modeling.models import Job, ModelVersion

pytestmark = pytest.mark.django_db

TINY_ORDERS = "customer_id,order_id,ordered_at,amount\n" + "".join(
    f"c{c},o{c}-{n},2024-{1 + (c + 3 * n) % 9:02d}-{1 + c:02d},{10 + c}.00\n" for c in range(6) for n in range(1 + c % 3)
)


def test_a_tiny_shops_training_fails_saying_it_has_too_little_history(tenant_a, tmp_path, settings) -> None:
    settings.MODEL_DIR = tmp_path / "models"
    assert import_csv(tenant_a, "orders", str(_write(tmp_path, TINY_ORDERS))).ok
    with pytest.raises(CommandError, match="too little history to learn from: the training windows hold"):
        call_command("train", "--tenant", tenant_a.slug, "--as-of", "2024-12-31", "--family", "tabular", "--sync")
    with tenant_context(tenant_a):
        job = Job.objects.get(kind=Job.Kind.TRAIN)
        assert not ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).exists()
    assert job.state == Job.State.FAILED and "at least 40 needed" in job.message and "Traceback" not in job.message


def test_too_few_buyers_to_cluster_get_no_learned_segment_and_are_not_called_prospects(tenant_a, tmp_path, client, alice) -> None:
    from modeling.insights import refresh_insights
    from modeling.models import CustomerInsight

    assert import_csv(tenant_a, "orders", str(_write(tmp_path, TINY_ORDERS))).ok
    assert import_csv(tenant_a, "customers", str(_write(tmp_path, "customer_id,created_at\nprospect1,2024-06-01\n", "c.csv"))).ok
    refresh_insights(tenant_a, dt.date(2024, 12, 31))
    with tenant_context(tenant_a):
        segments = {i.customer.external_id: i.learned_segment.name if i.learned_segment else None for i in CustomerInsight.objects.select_related("customer", "learned_segment")}
    assert segments.pop("prospect1") == "Prospects (no order yet)"
    assert set(segments.values()) == {None}
    client.force_login(alice)
    assert b"once at least 10 customers have ordered" in client.get("/segments/").content


def test_a_currency_change_shows_on_the_dashboard_at_once(tenant_a, tmp_path, client, alice, django_capture_on_commit_callbacks) -> None:
    in_dollars = TINY_ORDERS.replace("amount\n", "amount,currency\n").replace(".00\n", ".00,USD\n")
    assert import_csv(tenant_a, "orders", str(_write(tmp_path, in_dollars))).ok
    client.force_login(alice)
    assert b"USD" in client.get("/").content  # the cached overview now holds USD
    form = client.get("/settings/").context["form"]
    data = {**{name: form[name].value() for name in form.fields}, "currency": "EUR"}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/settings/", data).status_code == 302
    page = client.get("/").content
    assert b"EUR" in page and b"in USD at face value" in page  # the imported orders are in USD, and the page says so


def _write(tmp_path, body: str, name: str = "orders.csv"):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_predictions_put_together_from_different_families_agree(tenant_a, tmp_path) -> None:
    """E[orders] = P(buy) x E[orders | buy]: no "0% to buy" beside "1.6 orders expected" and
    a High-tier value (chance from BG/NBD, orders from the transformer, value from the trees)."""
    import pandas as pd

    from modeling.families.base import coherent_predictions, orders_ceiling
    from modeling.features import features_as_of, load_history

    assert import_csv(tenant_a, "orders", str(_write(tmp_path, TINY_ORDERS))).ok
    as_of = dt.date(2024, 12, 31)
    history = load_history(tenant_a, ceiling=as_of)
    features = features_as_of(history, as_of)
    mixed = pd.DataFrame({"purchase_probability": 0.001, "expected_orders": 1.6, "expected_revenue": 44.0}, index=features.index)
    fixed = coherent_predictions(mixed, history, as_of, features, 90)
    ceiling = orders_ceiling(features, 90)
    assert (ceiling >= 1).all()
    assert (fixed["expected_orders"] <= 0.001 * ceiling + 1e-12).all() and (fixed["expected_orders"] >= 0.001).all()
    assert (fixed["expected_revenue"] < 1).all()
    sure = coherent_predictions(mixed.assign(purchase_probability=0.9, expected_orders=0.2), history, as_of, features, 90)
    assert (sure["expected_orders"] == 0.9).all()  # at least the chance of one order


def test_the_monthly_chart_keeps_the_months_without_orders() -> None:
    from customers.services.queries import every_month

    rows = [{"month": "2024-04", "orders": 1}, {"month": "2024-07", "orders": 2}]
    assert every_month(rows, {"orders": 0}) == [
        {"month": "2024-04", "orders": 1}, {"month": "2024-05", "orders": 0}, {"month": "2024-06", "orders": 0}, {"month": "2024-07", "orders": 2}]
    assert every_month([], {"orders": 0}) == []
    # On to the latest scoring's month: a shop whose sales stopped shows the empty months
    assert [row["month"] for row in every_month(rows, {"orders": 0}, until="2024-09")][-2:] == ["2024-08", "2024-09"]
    assert len(every_month(rows, {"orders": 0}, until="2024-01")) == 4


def test_the_dashboard_says_when_data_came_after_the_latest_scoring(tenant_a, client, alice) -> None:
    from django.utils import timezone

    from modeling.models import CustomerInsight

    with tenant_context(tenant_a):
        from customers.models import Customer

        customer = Customer.objects.create(external_id="c1")
        CustomerInsight.objects.create(customer=customer, as_of="2024-12-31", stage="new", stage_since="2024-12-01")
        scored = Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.SUCCEEDED, finished_at=timezone.now() - dt.timedelta(hours=2))
    client.force_login(alice)
    assert b'data-testid="stale-note"' not in client.get("/").content
    with tenant_context(tenant_a):
        Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.SUCCEEDED, finished_at=timezone.now() - dt.timedelta(hours=1))
    assert b"Data was imported after the latest scoring" in client.get("/").content
    with tenant_context(tenant_a):
        Job.objects.filter(pk=scored.pk).update(finished_at=timezone.now())
    assert b'data-testid="stale-note"' not in client.get("/").content


def test_the_lifecycle_moves_default_to_the_last_quarter(tenant_a, client, alice) -> None:
    from customers.models import Customer
    from modeling.models import StageSnapshot

    with tenant_context(tenant_a):
        customer = Customer.objects.create(external_id="c1")
        for day in ("2024-01-31", "2024-06-30", "2024-09-30", "2024-12-31"):
            StageSnapshot.objects.create(customer=customer, as_of=day, stage="active", since="2024-01-01", reason="active")
    client.force_login(alice)
    page = client.get("/lifecycle/")
    assert (page.context["start"], page.context["end"]) == (dt.date(2024, 9, 30), dt.date(2024, 12, 31))
    assert client.get("/lifecycle/?start=2024-01-31").context["start"] == dt.date(2024, 1, 31)


def test_a_shop_with_reviews_but_no_sentiment_model_is_told_why(tenant_a, tmp_path, client, alice) -> None:
    body = "customer_id,review_id,created_at,text,rating\n" + "".join(f"c{i},r{i},2024-03-0{1 + i},Lovely tea,5\n" for i in range(3))
    assert import_csv(tenant_a, "reviews", str(_write(tmp_path, body, "reviews.csv"))).ok
    from customers.models import Customer
    from modeling.models import CustomerInsight

    with tenant_context(tenant_a):  # a scored shop: the dashboard's sections show
        CustomerInsight.objects.create(customer=Customer.objects.get(external_id="c0"), as_of="2024-12-31", stage="new", stage_since="2024-12-01")
    client.force_login(alice)
    note = client.get("/").content.split(b'data-testid="no-sentiment">')[1].split(b"</p>")[0]
    assert note.startswith(b"3 reviews imported, none scored yet") and b"at least 30 with text" in note


def test_retraining_a_shop_nothing_serves_yet_says_what_works_meanwhile(tenant_a, client, alice) -> None:
    from customers.models import Customer, Order

    with tenant_context(tenant_a):  # something to learn from (a shop with nothing is refused up front)
        Order.objects.create(customer=Customer.objects.create(external_id="r1"), external_id="o1", ordered_at="2024-01-02T00:00:00Z", amount=5)
    client.force_login(alice)
    page = client.post("/models/retrain/", follow=True).content
    assert b"No model serves yet: once this training validates one, a scoring follows by itself" in page
    assert b"keep serving until" not in page


def test_a_campaign_preview_names_an_old_scoring(tenant_a) -> None:
    from campaigns import services
    from campaigns.models import Campaign
    from customers.models import Customer
    from modeling.models import CustomerInsight

    with tenant_context(tenant_a):
        customer = Customer.objects.create(external_id="c1")
        insight = CustomerInsight.objects.create(customer=customer, as_of=dt.date.today() - dt.timedelta(days=40), stage="at_risk",
                                                 stage_since="2024-01-01", action="win_back")
        campaign = Campaign.objects.create(tenant=tenant_a, name="Back", action="win_back")
    assert "The audience comes from the scoring of" in services.preview(campaign)["note"] and "40 days ago" in services.preview(campaign)["note"]
    with tenant_context(tenant_a):
        CustomerInsight.objects.filter(pk=insight.pk).update(as_of=dt.date.today())
    assert "The audience comes from the scoring" not in services.preview(campaign)["note"]


def test_when_bgnbd_serves_the_chance_the_trees_own_is_kept_beside_their_factors(tenant_a, settings, tmp_path, client, alice) -> None:
    from modeling.models import Prediction
    from modeling.scoring import score_customers
    from modeling.training import train_models
    from tests.test_modeling import END, load_demo

    settings.MODEL_DIR = tmp_path / "models"
    load_demo(tenant_a, customers=300, seed=5)
    tenant_a.settings = {"sentiment_candidates": ["ngram"]}
    tenant_a.save()
    from modeling import registry
    from modeling.models import ModelVersion

    train_models(tenant_a, END, 60, family="bgnbd,tabular")
    with tenant_context(tenant_a):  # BG/NBD's chance serves, the trees of its run give the factors
        bgnbd = ModelVersion.objects.get(target="purchase", family="bgnbd")
    registry.do_promote_model_version(tenant_a, bgnbd.pk)
    score_customers(tenant_a, END)
    with tenant_context(tenant_a):
        buyer = Prediction.objects.filter(as_of=END).exclude(explanation=[]).exclude(explainer_probability=None).order_by("-purchase_probability").first()
    assert buyer is not None and 0.0 <= buyer.explainer_probability <= 1.0
    client.force_login(alice)
    note = client.get(f"/customers/{buyer.customer_id}/").content.decode().split('data-testid="factors-by"')[1].split("</p>")[0]
    assert "The chance above comes from the serving model (BG/NBD)" in note and "likely to buy" in note
