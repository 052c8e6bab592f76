"""Defects found by the fifth QA round on the Models pages and in the model's words about a
customer, each pinned by a test."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_rows
from modeling.models import CustomerInsight, Job, ModelVersion, Stage
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db



def _orders(tenant, *days: str, customer: str = "c1") -> None:
    rows = [{"customer_id": customer, "order_id": f"{customer}-{i}", "ordered_at": day, "amount": "10"} for i, day in enumerate(days)]
    assert import_rows(tenant, "orders", rows).ok


def _serving(tenant, target: str = "purchase", family: str = "tabular") -> ModelVersion:
    with tenant_context(tenant):
        return ModelVersion.objects.create(target=target, family=family, as_of="1998-06-30", state=ModelVersion.State.ACTIVE,
                                           activated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


# --- 1. The default as-of date of a shop whose data ended long ago --------------------------


def test_a_shop_whose_orders_ended_long_ago_defaults_to_the_day_after_its_last_order_or_its_last_scoring(tenant_a, tenant_b) -> None:
    from modeling.services import default_as_of

    _orders(tenant_a, "1998-01-02", "1998-06-30")
    _orders(tenant_b, (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=30)).isoformat())

    assert default_as_of(tenant_a) == dt.date(1998, 7, 1)
    assert default_as_of(tenant_b) == dt.datetime.now(dt.UTC).date()  # a live shop: today, as before
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
        CustomerInsight.objects.create(tenant=tenant_a, customer=customer, as_of=dt.date(1998, 6, 30), stage=Stage.ACTIVE, stage_since=dt.date(1998, 6, 30))
    assert default_as_of(tenant_a) == dt.date(1998, 6, 30)  # the latest scoring covers the last order


def test_the_models_page_offers_the_shops_default_and_warns_about_a_date_long_after_the_last_order(tenant_a, client, alice) -> None:
    _orders(tenant_a, "1998-01-02", "1998-06-30")
    for target in ("purchase", "orders", "revenue"):
        _serving(tenant_a, target)
    client.force_login(alice)

    page = client.get("/models/").content.decode()
    assert 'name="as_of" value="1998-07-01"' in page and f'value="{dt.datetime.now(dt.UTC).date().isoformat()}"' not in page
    assert 'data-last-order="1998-06-30" data-stale-after="365" data-confirm-as-of' in page  # the page asks first
    assert "<b>Retrain now</b> trains on the data up to 1998-07-01." in page

    usual = client.post("/models/score/", {"as_of": "1998-07-01"}, follow=True).content.decode()
    assert "Scoring as of 1998-07-01" in usual and "Your last order is on 1998-06-30" not in usual
    far = client.post("/models/score/", {"as_of": "2026-12-01"}, follow=True).content.decode()
    assert "Scoring as of 2026-12-01" in far
    assert ("Your last order is on 1998-06-30: scoring as of 2026-12-01, 10,381 days later, counts every customer as lapsed. "
            "Score as of 1998-07-01 to see them as your data last saw them.") in far


def test_the_retrain_button_the_api_and_the_beat_start_from_the_same_default(tenant_a, client, alice, django_capture_on_commit_callbacks) -> None:
    from modeling.services import do_start_scoring

    _orders(tenant_a, "1998-01-02", "1998-06-30")
    for target in ("purchase", "orders", "revenue"):
        _serving(tenant_a, target)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):  # queued, not run
        done = client.post("/models/retrain/", follow=True).content.decode()
        api = api_client_for(tenant_a, Role.ADMIN)
        scored = api.post("/api/v1/jobs/score/", {}, format="json").json()
        nightly = do_start_scoring(tenant_a)
    assert "Training as of 1998-07-01 started" in done
    with tenant_context(tenant_a):
        assert Job.objects.get(kind=Job.Kind.TRAIN).params["as_of"] == "1998-07-01"
    assert scored["params"]["as_of"] == "1998-07-01" and nightly.pk == scored["id"]  # the beat's run joins the API's


# --- 2. Each target's version shows its own charts and importance ---------------------------


def test_each_target_stores_its_own_validation_charts() -> None:
    from modeling.training import charts

    labels = pd.DataFrame({"purchased": [0, 1, 1, 0] * 5, "orders": [0, 2, 1, 0] * 5, "revenue": [0.0, 50.0, 20.0, 0.0] * 5})
    predictions = pd.DataFrame({"purchase_probability": np.linspace(0.1, 0.9, 20), "expected_orders": np.linspace(0, 2, 20),
                                "expected_revenue": np.linspace(0, 40, 20)})

    assert set(charts(predictions, labels, "purchase")) == {"calibration", "gain"}
    deciles = charts(predictions, labels, "orders")["deciles"]
    assert list(charts(predictions, labels, "revenue")) == ["deciles"]
    assert [d["decile"] for d in deciles] == list(range(1, 11)) and {d["n"] for d in deciles} == {2}
    assert deciles[0] == {"decile": 1, "n": 2, "predicted": round(float(np.linspace(0, 2, 20)[:2].mean()), 4), "actual": 1.0}


def test_a_count_targets_version_page_never_shows_the_purchase_models_charts_or_importance(tenant_a, client, alice, api_a) -> None:
    purchase_charts = {"calibration": [{"predicted": 0.2, "observed": 0.25}], "gain": [{"population": 0.5, "gain": 0.7}]}
    importance = [["recency_days", 0.4], ["orders", 0.2]]
    with tenant_context(tenant_a):
        purchase = ModelVersion.objects.create(target="purchase", family="tabular", as_of="2024-03-01", charts=purchase_charts, feature_importance=importance)
        # Trained before each target kept its own: the purchase model's charts and importance.
        old = ModelVersion.objects.create(target="orders", family="tabular", as_of="2024-03-01", charts=purchase_charts, feature_importance=importance)
        new = ModelVersion.objects.create(target="revenue", family="tabular", as_of="2024-03-01",
                                          charts={"deciles": [{"decile": 1, "n": 5, "predicted": 1.0, "actual": 2.0}]})
    client.force_login(alice)

    page = client.get(f"/models/{purchase.pk}/")
    assert b'id="calibration-chart"' in page.content and page.context["importance_data"] == [["days since the last order", 0.4], ["orders so far", 0.2]]
    page = client.get(f"/models/{old.pk}/")
    text = page.content.decode()
    assert page.context["charts_data"] == {} and page.context["importance_data"] == []
    assert 'id="calibration-chart"' not in text and 'id="importance-chart"' not in text and 'id="deciles-chart"' not in text
    assert "trained before expected orders kept charts of its own" in text
    assert "trained before expected orders kept a feature importance of its own" in text
    page = client.get(f"/models/{new.pk}/")
    assert b'id="deciles-chart"' in page.content and b'id="calibration-chart"' not in page.content
    # The API serves each version's own, as the pages do.
    assert {k: api_a.get(f"/api/v1/models/{old.pk}/").json()[k] for k in ("charts", "feature_importance")} == {"charts": {}, "feature_importance": []}
    assert api_a.get(f"/api/v1/models/{purchase.pk}/").json()["feature_importance"] == importance
    assert list(api_a.get(f"/api/v1/models/{new.pk}/").json()["charts"]) == ["deciles"]


def test_the_model_versions_list_reads_every_runs_purchase_importance_in_one_query(tenant_a, api_a) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    importance = [["recency_days", 0.4], ["orders", 0.2]]
    with tenant_context(tenant_a):
        for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"):
            job = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.SUCCEEDED)
            ModelVersion.objects.create(target="purchase", family="tabular", as_of=day, job=job, feature_importance=importance)
            # One run stored the purchase model's importance under its other targets, the others their own.
            own = importance if day == "2024-01-01" else [["orders", 0.9], ["recency_days", 0.1]]
            for target in ("orders", "revenue"):
                ModelVersion.objects.create(target=target, family="tabular", as_of=day, job=job, feature_importance=own)

    with CaptureQueriesContext(connection) as queries:
        body = api_a.get("/api/v1/models/").json()
    versions_read = [q["sql"] for q in queries.captured_queries if 'FROM "modeling_modelversion"' in q["sql"]]

    assert body["count"] == 12
    by_run = {(v["as_of"], v["target"]): v["feature_importance"] for v in body["results"]}
    assert by_run[("2024-01-01", "orders")] == [] and by_run[("2024-01-01", "revenue")] == []
    assert by_run[("2024-02-01", "orders")] == [["orders", 0.9], ["recency_days", 0.1]]
    assert all(by_run[(day, "purchase")] == importance for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"))
    # The count, the page, and one query for the eight versions that compare with their run's
    # purchase model (it was one query per version).
    assert len(versions_read) == 3, versions_read


def test_a_training_stores_each_targets_own_charts_and_importance(tenant_a, settings, tmp_path, client, alice) -> None:
    from modeling.training import train_models
    from tests.test_modeling import END, load_demo

    settings.MODEL_DIR = tmp_path / "models"
    load_demo(tenant_a, customers=300, seed=5, reviews=False)
    train_models(tenant_a, END, 60, family="tabular")

    with tenant_context(tenant_a):
        versions = {v.target: v for v in ModelVersion.objects.filter(family="tabular")}
    assert set(versions["purchase"].charts) == {"calibration", "gain"} and versions["purchase"].feature_importance
    for target in ("orders", "revenue"):
        assert list(versions[target].charts) == ["deciles"] and len(versions[target].charts["deciles"]) == 10
        own = versions[target].feature_importance  # its own booster's gains
        assert own and own != versions["purchase"].feature_importance and 0.95 <= sum(share for _, share in own) <= 1.0001  # the top 25 features' shares
        assert versions[target].own_feature_importance == own
        client.force_login(alice)
        assert b'id="importance-chart"' in client.get(f"/models/{versions[target].pk}/").content


# --- 3. The order rhythm in the same words as the Orders card and the stage ------------------


def test_the_profile_and_the_factors_round_the_median_gap_as_the_customer_page_does(tenant_a) -> None:
    from customers.services.queries import customer_timeline
    from modeling.explain import describe
    from modeling.features import features_as_of, load_history
    from modeling.profiles import customer_profiles

    # Gaps of 7.5, 7.6 and 7.9 days: a median of 7.6, "usually every 8 days".
    _orders(tenant_a, "2024-01-01T00:00:00Z", "2024-01-08T12:00:00Z", "2024-01-16T02:24:00Z", "2024-01-24T00:00:00Z")
    as_of = dt.date(2024, 1, 26)
    history = load_history(tenant_a, ceiling=as_of)
    features = features_as_of(history, as_of)
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")

    assert customer_timeline(tenant_a, customer)["median_gap_days"] == 8
    assert "usually every 8 days" in customer_profiles(history, as_of, features)[customer.pk]
    assert describe("gap_median", features.loc[customer.pk], []) == "usually orders every 8 days"
    assert describe("gap_mean", features.loc[customer.pk], []) == "on average 8 days between orders"  # the mean is not "usually"


def test_a_factor_says_overdue_exactly_when_the_stage_does() -> None:
    from modeling.explain import explain_rows
    from modeling.features import features_as_of, history_from_frames
    from modeling.lifecycle import Thresholds, stages_as_of

    as_of = dt.date(2024, 3, 31)
    # Every customer orders every 8 days, then stops 4 to 20 days before the as-of date.
    orders = pd.DataFrame([(c, pd.Timestamp(as_of) - pd.Timedelta(days=c + 8 * k), 10.0) for c in range(4, 21) for k in range(4)],
                          columns=["customer", "ordered_at", "amount"])
    history = history_from_frames(orders)
    features = features_as_of(history, as_of)
    stages = stages_as_of(history, as_of, Thresholds(), features=features)
    only_recency = pd.DataFrame({"recency_days": -1.0}, index=features.index)
    factors = {c: f[0]["text"] for c, f in explain_rows(features, only_recency, []).items()}

    for customer in features.index:
        days, text = int(np.floor(features.at[customer, "recency_days"])), factors[customer]
        assert text.startswith("overdue:") == (stages.at[customer, "stage"] == Stage.AT_RISK), (days, text, stages.at[customer, "reason"])
        assert ("within" in text) == (days <= 8), (days, text)
    assert factors[15] == "overdue: no order for 15 days, 2.0× their usual gap of 8 days" and stages.at[15, "reason"] == "overdue: 15 days vs. their usual 8"
    assert factors[10] == "last order 10 days ago, a little past their usual 8-day rhythm" and stages.at[10, "stage"] == Stage.ACTIVE
    assert factors[8] == "last order 8 days ago, within their usual 8-day rhythm"
    # A shop whose own overdue factor is 1.2 (the lifecycle threshold overridden): overdue after 10 days.
    assert explain_rows(features.loc[[11]], only_recency.loc[[11]], [], overdue_factor=1.2)[11][0]["text"].startswith("overdue: no order for 11 days")


# --- 4. Money in the shop's currency ---------------------------------------------------------


def test_factors_and_the_profile_write_money_in_the_shops_currency() -> None:
    from modeling.explain import explain_rows
    from modeling.features import features_as_of, history_from_frames
    from modeling.profiles import customer_profiles

    history = history_from_frames(pd.DataFrame({"customer": [1, 1, 1], "ordered_at": ["2024-01-01", "2024-02-10", "2024-03-01"], "amount": [100.0, 80.0, 60.0]}))
    as_of = dt.date(2024, 3, 31)
    features = features_as_of(history, as_of)
    weights = pd.DataFrame({"total_spent": 1.0, "avg_order_value": 0.5, "spent_90d": 0.25}, index=features.index)

    factors = [f["text"] for f in explain_rows(features, weights, [], currency="EUR")[1]]
    assert factors == ["spent EUR 240 in total", "average order of EUR 80", "spent EUR 140 in the last 90 days"]
    profile = customer_profiles(history, as_of, features, currency="EUR")[1]
    assert "Spent EUR 240 (avg EUR 80)." in profile and "$" not in profile
    assert customer_profiles(history, as_of, features, currency="EUR").equals(customer_profiles(history, as_of, features, currency="EUR"))
    # A caller that does not pass the shop's currency gets the text it always had (cached embeddings stay valid).
    assert "Spent $240 (avg $80)." in customer_profiles(history, as_of, features)[1]


# --- 5. Roll back only where there is something to roll back to -------------------------------


def test_roll_back_shows_only_with_an_earlier_version_and_names_the_target_by_its_label(tenant_a, client, alice) -> None:
    sentiment = _serving(tenant_a, "sentiment", "ngram")
    purchase = _serving(tenant_a, "purchase")
    with tenant_context(tenant_a):
        ModelVersion.objects.create(target="purchase", family="bgnbd", as_of="1998-06-30", state=ModelVersion.State.ARCHIVED,
                                    activated_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    client.force_login(alice)

    page = client.get("/models/").content.decode()
    assert page.count('data-testid="roll-back"') == 1 and 'action="/models/rollback/purchase/"' in page
    assert "Serve the previous purchase probability model again instead of this one?" in page
    refused = client.post("/models/rollback/sentiment/", follow=True).content.decode()
    assert "There is no earlier review sentiment model to roll back to." in refused
    with tenant_context(tenant_a):
        assert ModelVersion.objects.get(target="sentiment", state=ModelVersion.State.ACTIVE).pk == sentiment.pk
        assert ModelVersion.objects.get(target="purchase", state=ModelVersion.State.ACTIVE).pk == purchase.pk


# --- 6. The sentiment version's table fits its card -------------------------------------------

SENTIMENT_METRICS = {"n": 2000, "macro_f1": 0.7123, "accuracy": 0.8456, "f1": {"negative": 0.6512, "neutral": 0.4123, "positive": 0.9321},
                     "label_counts": {"negative": 1234, "neutral": 567, "positive": 8901}}
SENTIMENT_BASELINES = {"majority_class": {"label": "positive", "macro_f1": 0.31, "accuracy": 0.74, "f1": {"negative": 0.0, "neutral": 0.0, "positive": 0.8512}},
                       "transformer": {"macro_f1": 0.7012, "accuracy": 0.8312, "f1": {"negative": 0.6312, "neutral": 0.4012, "positive": 0.9212}}}


def _sentiment_version(tenant) -> ModelVersion:
    with tenant_context(tenant):
        return ModelVersion.objects.create(target="sentiment", family="ngram", as_of="2024-03-01", horizon_days=0, metrics=SENTIMENT_METRICS,
                                           baseline_metrics=SENTIMENT_BASELINES, validation_window={"train": 8000, "valid": 2000, "seed": 0})


def test_per_class_scores_are_one_class_a_line(tenant_a, client, alice) -> None:
    version = _sentiment_version(tenant_a)
    client.force_login(alice)
    page = client.get(f"/models/{version.pk}/").content.decode()
    for cell in ("negative 0.6512", "neutral 0.4123", "positive 0.9321", "negative 0.0", "positive 0.8512"):
        assert f"{cell} · " not in page and (f"{cell}<br>" in page or f"{cell}</td>" in page), cell


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (installed by .ci/run)")
def test_the_sentiment_metrics_table_shows_every_column_at_1366_pixels(live_server, tenant_a, alice, monkeypatch) -> None:
    from playwright.sync_api import sync_playwright

    version = _sentiment_version(tenant_a)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", "alice-pass-123")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.goto(f"{live_server.url}/models/{version.pk}/")
        wrap = page.evaluate("() => { const w = document.querySelector('[data-testid=metrics-table]').closest('.table-wrap'); return [w.scrollWidth, w.clientWidth]; }")
        browser.close()
    assert wrap[0] <= wrap[1]  # nothing scrolled out of sight, the Majority class column included


# --- 7. A percentage with its unit after the number ---------------------------------------------


def test_a_percentage_reads_with_its_unit_after_the_number(tenant_a, client, alice) -> None:
    from clmsite.templatetags.clm import _headline, metric_number

    assert _headline("orders", {"orders_mae": 1234.5678, "orders_total_error_pct": 0.51}) == "MAE 1,234.57 · total error 0.51%"
    assert (metric_number(-3.2, "revenue_total_error_pct"), metric_number(0.8185, "auc"), metric_number(0.8185)) == ("-3.2%", "0.8185", "0.8185")
    with tenant_context(tenant_a):
        version = ModelVersion.objects.create(target="revenue", family="tabular", as_of="2024-03-01", metrics={"revenue_mae": 12.5, "revenue_total_error_pct": 0.51},
                                              baseline_metrics={"persistence": {"revenue_mae": 14.0, "revenue_total_error_pct": -2.5}})
    client.force_login(alice)
    page = client.get(f"/models/{version.pk}/").content.decode()
    assert "<td>Revenue, total error</td><td class=\"num\">0.51%</td><td class=\"num\">-2.5%</td>" in page and "total error %" not in page
