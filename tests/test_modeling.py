"""Training, scoring and the registry on a small generated shop (tabular and BG/NBD;
the transformer family has its own tests in test_encoder.py)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Min

from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer, Review
from customers.services.demo import generate_shop, load_shop
from customers.services.imports import import_csv, import_rows
from modeling import registry
from modeling.models import Job, ModelVersion, Prediction
from modeling.scoring import NoActiveModel, score_customers
from modeling.training import train_models
from tests.conftest import api_client_for, write_csv

pytestmark = pytest.mark.django_db
END = dt.date(2025, 6, 30)


def load_demo(tenant, *, customers: int, seed: int, reviews: bool = True):
    results = load_shop(tenant, generate_shop(customers=customers, seed=seed, end_date=END))
    assert all(r.ok for r in results.values()), results
    if not reviews:
        with tenant_context(tenant):
            Review.objects.all().delete()
    return tenant


def scored_demo(tenant, settings, tmp_path, *, customers: int, seed: int, insights_months: int | None = None):
    """A small demo shop in ``tenant`` with boosted-tree models trained and scored as of END
    (n-gram sentiment); with ``insights_months``, stages, segments and actions too."""
    from modeling.insights import refresh_insights
    from modeling.scoring import score_customers

    settings.MODEL_DIR = tmp_path / "models"
    load_demo(tenant, customers=customers, seed=seed)
    tenant.settings = {"sentiment_candidates": ["ngram"]}
    tenant.save()
    train_models(tenant, END, 60, family="tabular")
    score_customers(tenant, END)
    if insights_months is not None:
        refresh_insights(tenant, END, backfill_months=insights_months)
    return tenant


@pytest.fixture
def shop(tenant_a):
    """A small synthetic shop (the demo generator, 400 customers) in tenant A."""
    return load_demo(tenant_a, customers=400, seed=3)


@pytest.fixture
def trained(shop, settings, tmp_path):
    settings.MODEL_DIR = tmp_path / "models"
    # The transformer sentiment candidate has its own tests (test_sentiment.py).
    shop.settings = {"sentiment_candidates": ["ngram"]}
    shop.save()
    report = train_models(shop, END, 60, family="tabular")
    return shop, report


def predictions(tenant, as_of):
    with tenant_context(tenant):
        return {p.customer_id: (p.purchase_probability, p.expected_orders, p.predicted_value) for p in Prediction.objects.filter(as_of=as_of)}


def test_training_registers_candidates_next_to_baselines_and_promotes_champions(trained):
    tenant, report = trained

    assert {"bgnbd", "tabular"} <= set(report.trained)
    assert set(report.champions) >= {"purchase", "orders", "revenue"}
    active = registry.active_versions(tenant)
    purchase = active["purchase"]
    assert purchase.metrics["auc"] > 0.6
    assert "persistence" in purchase.baseline_metrics
    with tenant_context(tenant):  # every version beside every rival of its run, the baseline family's too (JSONB keeps no key order)
        for version in ModelVersion.objects.filter(target__in=("purchase", "orders", "revenue")):
            assert set(version.baseline_metrics) == {"persistence", "bgnbd", "tabular"} - {version.family}
    assert {w["label_end"] <= purchase.validation_window["cutoff"] for w in purchase.training_windows} == {True}
    assert purchase.validation_window["label_end"] == END.isoformat()
    assert purchase.charts["calibration"] and purchase.charts["gain"]
    assert len(purchase.artifact_sha256) == 64 and purchase.data_fingerprint
    with tenant_context(tenant):
        assert ModelVersion.objects.filter(state="active").count() == len(active)


def test_future_orders_cannot_change_a_prediction_as_of_an_earlier_date(trained, tmp_path):
    tenant, _ = trained
    score_customers(tenant, END)
    before = predictions(tenant, END)

    # Orders and a review after the as-of date, for customers who already exist.
    with tenant_context(tenant):
        some = list(Prediction.objects.filter(as_of=END).select_related("customer")[:5])
    rows = [{"customer_id": p.customer.external_id, "order_id": f"future-{i}", "ordered_at": "2025-08-01", "amount": "999.00"} for i, p in enumerate(some)]
    assert import_rows(tenant, "orders", rows).ok
    reviews = [
        {"customer_id": p.customer.external_id, "review_id": f"future-{i}", "created_at": "2025-08-02", "text": "Awful, never again", "rating": "1"}
        for i, p in enumerate(some)
    ]
    assert import_rows(tenant, "reviews", reviews).ok
    score_customers(tenant, END)

    assert predictions(tenant, END) == before


def test_future_data_cannot_change_what_training_as_of_an_earlier_date_learns(trained):
    tenant, report = trained
    with tenant_context(tenant):
        first = {v.target: v for v in ModelVersion.objects.filter(state="active")}
        ids = list(Customer.objects.filter(order_count__gt=0).values_list("external_id", flat=True)[:20])
    # Orders and reviews after the as-of date, for customers who already bought before it.
    rows = [{"customer_id": c, "order_id": f"future-{i}", "ordered_at": "2025-07-15", "amount": "500.00"} for i, c in enumerate(ids)]
    assert import_rows(tenant, "orders", rows).ok
    reviews = [{"customer_id": c, "review_id": f"future-{i}", "created_at": "2025-07-16", "text": "Broke at once", "rating": "1"} for i, c in enumerate(ids)]
    assert import_rows(tenant, "reviews", reviews).ok

    train_models(tenant, END, 60, family="tabular")

    with tenant_context(tenant):
        again = {v.target: v for v in ModelVersion.objects.filter(state="active")}
    assert set(again) == set(first) and all(again[t].pk != first[t].pk for t in first)
    for target, version in first.items():
        # The same data seen (the fingerprint hashes every order and review the training read),
        # so the same validation scores.
        assert again[target].data_fingerprint == version.data_fingerprint, target
        assert again[target].metrics == version.metrics, target


def test_scoring_writes_every_customer_with_tiers_and_explanations(trained):
    tenant, _ = trained
    report = score_customers(tenant, END)

    with tenant_context(tenant):
        rows = list(Prediction.objects.filter(as_of=END))
        customers = tenant_a_customers = len(rows)
    assert report.scored == customers == tenant_a_customers
    assert {p.value_tier for p in rows} == {"high", "medium", "low"}
    for p in rows:
        assert 0.0 <= p.purchase_probability <= 1.0
        assert abs(p.purchase_probability + p.churn_probability - 1.0) < 1e-6
        assert p.predicted_value >= Decimal("0")
    # Expected orders are never below the chance of one order (the trees learn them apart).
    assert all(p.expected_orders >= p.purchase_probability - 1e-4 for p in rows)
    buyers = [p for p in rows if p.explanation and p.explanation[0]["text"] != "no purchase yet"]
    assert buyers and all(1 <= len(p.explanation) <= 3 for p in buyers)
    # The value has factors of its own (the revenue booster's attributions): the most valuable
    # buyer's strongest one raises it, the least valuable's lowers it, and the size of their
    # orders is named more often than among the purchase factors.
    assert all(1 <= len(p.value_explanation) <= 3 for p in buyers)
    ranked = sorted(buyers, key=lambda p: p.predicted_value)
    assert ranked[-1].value_explanation[0]["effect"] == "+" and ranked[0].value_explanation[0]["effect"] == "-"
    basket = {key: sum(f["text"].startswith(("average order of", "last order of")) for p in buyers for f in getattr(p, key)) for key in ("explanation", "value_explanation")}
    assert basket["value_explanation"] > 1.15 * basket["explanation"], basket
    prospect = next(p for p in rows if p.explanation[0]["text"] == "no purchase yet")
    assert prospect.value_explanation[0]["text"].startswith(f"a first order here is typically {tenant.currency} ")


def test_promotion_and_rollback(trained, settings):
    tenant, _ = trained
    first = registry.active_versions(tenant)["purchase"]
    second_report = train_models(tenant, END, 60, family="tabular")
    second = registry.active_versions(tenant)["purchase"]
    assert second.pk == second_report.champions["purchase"] != first.pk

    restored = registry.do_rollback_model(tenant, "purchase")

    assert restored.pk == first.pk
    with tenant_context(tenant):
        assert ModelVersion.objects.get(pk=second.pk).state == "archived"
        assert ModelVersion.objects.filter(target="purchase", state="active").count() == 1


def test_a_training_cancelled_after_its_sentiment_step_changes_nothing_that_serves(trained, caplog):
    """The cancel lands once the new sentiment model is trained and the customer models are
    training: nothing of the run is promoted and the stored reviews keep their scores."""
    from modeling import jobs

    tenant, _ = trained
    before = {target: v.pk for target, v in registry.active_versions(tenant).items()}
    with tenant_context(tenant):
        scores = dict(Review.objects.values_list("pk", "sentiment_score"))
        job = Job.objects.create(tenant=tenant, kind=Job.Kind.TRAIN, state=Job.State.RUNNING)
    reporter = jobs.JobReporter(job)

    def progress(fraction: float, message: str = "") -> None:
        if fraction > 0.3:  # customer models are training
            with tenant_context(tenant):
                Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        reporter(fraction, message)

    progress.checkpoint = reporter.checkpoint  # type: ignore[attr-defined]
    with pytest.raises(jobs.JobCancelled):
        train_models(tenant, END, 60, family="tabular", job_id=job.pk, progress=progress)
    # The cancel stops the run where it lands: no family is logged as failed, none trains after it.
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]
    assert {target: v.pk for target, v in registry.active_versions(tenant).items()} == before
    assert "sentiment" in before
    with tenant_context(tenant):
        assert dict(Review.objects.values_list("pk", "sentiment_score")) == scores
        assert ModelVersion.objects.filter(job_id=job.pk, target="sentiment").exists()  # it was trained, not promoted


def test_tampered_or_pickled_artifacts_are_refused(trained, tmp_path):
    tenant, _ = trained
    version = registry.active_versions(tenant)["purchase"]
    directory = registry.Path(version.artifact_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    (directory / "model.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(registry.ArtifactError, match="pickle"):
        registry.verify_artifact(directory, version.artifact_sha256)
    (directory / "model.pkl").unlink()
    assert not marker.exists()

    target = next(directory.glob("lightgbm_*.txt"))
    target.write_text(target.read_text() + "\n# tampered\n")
    with pytest.raises(registry.ArtifactError, match="altered"):
        registry.verify_artifact(directory, version.artifact_sha256)


def test_scoring_without_models_says_so(shop):
    with pytest.raises(NoActiveModel, match="Train models first"):
        score_customers(shop, END)


def test_reviews_only_tenant_trains_sentiment_and_skips_customer_models(tenant_b, tmp_path, settings):
    settings.MODEL_DIR = tmp_path / "models"
    texts = ["Great fit, love it", "Terrible quality, broke fast", "It is okay I guess", "Fantastic, fast delivery", "Awful service, never again"]
    ratings = [5, 1, 3, 5, 1]
    body = "customer_id,review_id,created_at,text,rating\n" + "".join(
        f'c{i % 7},r{i},2025-01-{1 + i % 28:02d},"{texts[i % 5]} #{i}",{ratings[i % 5]}\n' for i in range(60)
    )
    assert import_csv(tenant_b, "reviews", write_csv(tmp_path / "r.csv", body)).ok
    tenant_b.settings = {"sentiment_candidates": ["ngram"]}
    tenant_b.save()

    report = train_models(tenant_b, END, 60, family="tabular")

    assert any(s.startswith("customer models: no orders") for s in report.skipped)
    assert "sentiment" in report.champions
    with tenant_context(tenant_b):
        assert not Review.objects.filter(sentiment="").exists()


def test_orders_only_tenant_skips_sentiment(tenant_b, tmp_path, settings):
    settings.MODEL_DIR = tmp_path / "models"
    load_demo(tenant_b, customers=300, seed=5, reviews=False)
    report = train_models(tenant_b, END, 60, family="tabular")
    assert any(s.startswith("sentiment: no reviews") for s in report.skipped)
    assert {"purchase", "orders", "revenue"} <= set(report.champions)


def test_cli_contract(trained, tmp_path, capsys):
    tenant, _ = trained
    call_command("score", "--tenant", tenant.slug, "--as-of", END.isoformat(), "--sync")
    out = tmp_path / "predictions.csv"
    call_command("export_predictions", "--tenant", tenant.slug, "--out", str(out))
    header, *rows = out.read_text().splitlines()
    assert header == "customer_id,purchase_probability,churn_probability,expected_orders,predicted_value,value_tier,lifecycle_stage,segment,recommended_action"
    with tenant_context(tenant):
        assert len(rows) == Prediction.objects.filter(as_of=END).count()
    reviews = tmp_path / "reviews.csv"
    call_command("export_reviews", "--tenant", tenant.slug, "--out", str(reviews))
    review_header, first, *_ = reviews.read_text().splitlines()
    assert review_header == "review_id,sentiment,sentiment_score"
    assert first.split(",")[1] in {"positive", "neutral", "negative"}


def test_sync_training_and_scoring_run_as_jobs_the_pages_list(trained, capsys, settings):
    """``--sync`` runs here, but as a job: listed with its result, claiming the shop (one
    training at a time, as a worker's), so the Models page and the API show what ran."""
    tenant, _ = trained
    settings.CELERY_TASK_ALWAYS_EAGER = False  # as with a broker: --sync is what keeps it here

    call_command("train", "--tenant", tenant.slug, "--as-of", END.isoformat(), "--family", "bgnbd", "--sentiment-candidates", "ngram", "--sync")
    call_command("score", "--tenant", tenant.slug, "--as-of", END.isoformat(), "--sync")

    out = capsys.readouterr().out
    with tenant_context(tenant):
        train_job, score_job = Job.objects.filter(kind__in=[Job.Kind.TRAIN, Job.Kind.SCORE]).order_by("created_at")
        scored = Prediction.objects.filter(as_of=END).count()
    assert (train_job.kind, train_job.state, train_job.progress) == (Job.Kind.TRAIN, Job.State.SUCCEEDED, 1.0)
    assert train_job.params["sentiment_candidates"] == ["ngram"] and train_job.result["trained"]
    assert (score_job.kind, score_job.state, score_job.result["scored"]) == (Job.Kind.SCORE, Job.State.SUCCEEDED, scored)
    assert f"Training job {train_job.pk}: Trained" in out and f"Scoring job {score_job.pk}: Scored {scored}" in out
    assert re.search(r"serving purchase: .+ v\d+ \(id \d+ in the API\)", out)  # as the Models page names it (session 24: "model version 16" for its v3)
    # A training the command starts while another is queued is refused, and creates no job.
    with tenant_context(tenant):
        queued = Job.objects.create(kind=Job.Kind.TRAIN, params={"as_of": END.isoformat()})
    with pytest.raises(CommandError, match=rf"already queued or running for this shop \(job {queued.pk}: its progress is at /api/v1/jobs/{queued.pk}/"):
        call_command("train", "--tenant", tenant.slug, "--as-of", END.isoformat(), "--family", "bgnbd", "--sync")
    with tenant_context(tenant):
        assert Job.objects.filter(kind=Job.Kind.TRAIN).count() == 2


def test_only_admins_retrain_and_one_training_at_a_time(trained, client, alice, bob, django_capture_on_commit_callbacks):
    tenant, _ = trained
    viewer = api_client_for(tenant, Role.ANALYST)
    assert viewer.post("/api/v1/models/retrain", {}, format="json").status_code == 403
    with tenant_context(tenant):
        Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.RUNNING)
    admin = api_client_for(tenant, Role.ADMIN)
    conflict = admin.post("/api/v1/models/retrain", {}, format="json")
    assert conflict.status_code == 409
    client.force_login(bob)
    assert client.post("/models/retrain/").status_code == 404
    with tenant_context(tenant):
        assert Job.objects.filter(kind=Job.Kind.TRAIN).count() == 1


def test_a_retrain_job_trains_then_queues_scoring(trained, django_capture_on_commit_callbacks):
    from modeling.services import do_start_training

    tenant, _ = trained
    with django_capture_on_commit_callbacks(execute=True):  # tasks run in-process in tests
        job = do_start_training(tenant, as_of=END, horizon_days=60, family="bgnbd")
    with tenant_context(tenant):
        job.refresh_from_db()
        scoring = Job.objects.filter(kind=Job.Kind.SCORE).get()
        assert (job.state, job.progress) == (Job.State.SUCCEEDED, 1.0)
        assert job.result["champions"] and job.message.startswith("Trained")
        assert (scoring.state, scoring.params["as_of"]) == (Job.State.SUCCEEDED, END.isoformat())
        assert Prediction.objects.filter(as_of=END).exists()


def test_the_api_retrain_can_choose_the_sentiment_candidates_for_one_run(trained, django_capture_on_commit_callbacks):
    """As the CLI's --sentiment-candidates: ["ngram"] skips fine-tuning the transformer this
    time, without changing the shop's setting."""
    tenant, _ = trained
    tenant.settings = {"sentiment_candidates": ["transformer"]}  # what this run must not follow
    tenant.save()
    admin = api_client_for(tenant, Role.ADMIN)
    assert admin.post("/api/v1/models/retrain/", {"sentiment_candidates": ["bert"]}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin.post("/api/v1/models/retrain/", {"as_of": END.isoformat(), "family": "bgnbd", "sentiment_candidates": ["ngram"]}, format="json")
    assert answer.status_code == 202
    with tenant_context(tenant):
        job = Job.objects.get(pk=answer.json()["id"])
        assert job.state == Job.State.SUCCEEDED and job.params["sentiment_candidates"] == ["ngram"]
        trained_now = set(ModelVersion.objects.filter(job=job, target="sentiment").values_list("family", flat=True))
    assert trained_now == {"ngram"}
    tenant.refresh_from_db()
    assert tenant.settings == {"sentiment_candidates": ["transformer"]}


def test_model_pages_render(trained, client, alice):
    tenant, _ = trained
    client.force_login(alice)
    page = client.get("/models/")
    assert page.status_code == 200 and b"Serving now" in page.content
    version = registry.active_versions(tenant)["purchase"]
    detail = client.get(f"/models/{version.pk}/")
    assert detail.status_code == 200 and b"calibration-chart" in detail.content
    with tenant_context(tenant):
        boosted = ModelVersion.objects.exclude(feature_importance=[]).first()
    chart = client.get(f"/models/{boosted.pk}/").context["importance_data"]
    assert chart and all("_" not in label for label, _ in chart)  # what each input means, not its column name
    sentiment = client.get(f"/models/{registry.active_versions(tenant)['sentiment'].pk}/").content.decode()
    assert "negative 0." in sentiment and "{&#x27;" not in sentiment  # per-class scores as text, not a dict
    assert "horizon 0 days" not in sentiment and "rated reviews held out at random" in sentiment


def test_score_now_on_the_models_page_scores_the_date_given(trained, client, alice, bob, django_capture_on_commit_callbacks):
    tenant, _ = trained
    client.force_login(alice)
    page = client.get("/models/").content.decode()
    assert 'data-testid="score-now"' in page and "No customer has been scored yet." in page
    for bad, says in (("9999-12-31", "is in the future"), ("31/12/2024", "YYYY-MM-DD"), ("1990-01-01", "before the shop's first order")):
        shown = client.post("/models/score/", {"as_of": bad}, follow=True).content.decode()
        assert says in shown.replace("&#x27;", "'"), bad
    with tenant_context(tenant):
        assert not Job.objects.filter(kind=Job.Kind.SCORE).exists()
    with django_capture_on_commit_callbacks(execute=True):  # tasks run in-process in tests
        done = client.post("/models/score/", {"as_of": END.isoformat()}, follow=True).content.decode()
    assert f"Scoring as of {END.isoformat()}" in done
    with tenant_context(tenant):
        job = Job.objects.get(kind=Job.Kind.SCORE)
        assert job.state == Job.State.SUCCEEDED and job.created_by == alice
        assert Prediction.objects.filter(as_of=END).count() == Customer.objects.count()
    assert "Customers were last scored as of 2025-06-30." in client.get("/models/").content.decode()
    client.force_login(bob)  # a viewer: neither the button nor the action exists
    assert 'data-testid="score-now"' not in client.get("/models/").content.decode()
    assert client.post("/models/score/", {"as_of": END.isoformat()}).status_code == 404


def test_beat_plans_weekly_training_and_nightly_scoring(trained, django_capture_on_commit_callbacks):
    from modeling.services import plan_scheduled_jobs

    tenant, _ = trained
    sunday_2am = dt.datetime(2026, 11, 29, 2, 0, tzinfo=dt.UTC)
    with tenant_context(tenant):
        Job.objects.filter(kind=Job.Kind.TRAIN).delete()
    with django_capture_on_commit_callbacks(execute=False):
        first = plan_scheduled_jobs(now=sunday_2am)
        again = plan_scheduled_jobs(now=sunday_2am)
        nightly = plan_scheduled_jobs(now=sunday_2am.replace(hour=4))
    assert [j.kind for j in first] == ["train"] and again == []
    with tenant_context(tenant):
        Job.objects.filter(kind=Job.Kind.TRAIN).update(state=Job.State.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        nightly = plan_scheduled_jobs(now=sunday_2am.replace(hour=4))
    assert [j.kind for j in nightly] == ["score"]


def test_beat_keeps_the_hours_of_the_shops_clock(trained, django_capture_on_commit_callbacks):
    """Scoring at 04:00 means 04:00 where the shop is: 19:00 UTC the day before in Tokyo."""
    from modeling.services import plan_scheduled_jobs

    tenant, _ = trained
    tenant.time_zone = "Asia/Tokyo"
    tenant.save()
    with tenant_context(tenant):
        Job.objects.filter(kind=Job.Kind.TRAIN).update(state=Job.State.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        at_four_utc = plan_scheduled_jobs(now=dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC))  # 13:00 in Tokyo
        at_four_tokyo = plan_scheduled_jobs(now=dt.datetime(2026, 11, 25, 19, 0, tzinfo=dt.UTC))
    assert at_four_utc == []
    assert [j.kind for j in at_four_tokyo] == ["score"]


def test_beat_does_not_rescore_a_stopped_shop_until_something_changes(trained, django_capture_on_commit_callbacks):
    """The shop's data ends in 2025: every night would score the same date on the same rows."""
    from modeling.services import plan_scheduled_jobs

    tenant, _ = trained
    night = dt.datetime(2030, 1, 7, 4, 0, tzinfo=dt.UTC)  # beat's clock, past the real days the jobs are created on

    def plan(day: int, *, run: bool = False) -> list[str]:
        """Beat's pass on the night; the first scoring runs (it must not change its own
        inputs), the later ones are only marked done."""
        with django_capture_on_commit_callbacks(execute=run):
            planned = plan_scheduled_jobs(now=night + dt.timedelta(days=day))
        with tenant_context(tenant):
            if not run:
                Job.objects.filter(pk__in=[j.pk for j in planned]).update(state=Job.State.SUCCEEDED)
            return [Job.objects.get(pk=j.pk).kind for j in planned]

    assert plan(0, run=True) == ["score"]
    assert plan(1) == []  # the same date, the same rows, models and settings
    tenant.settings = {**tenant.settings, "value_tier_quantiles": {"high": 0.9, "medium": 0.6}}
    tenant.save()
    assert plan(2) == ["score"]  # "tiers from the next scoring", as the settings page promises
    with tenant_context(tenant):
        customer = Customer.objects.order_by("pk").first()
        Review.objects.create(customer=customer, external_id="late-review", text="Still waiting for a reply", created_at=dt.datetime(2025, 6, 29, tzinfo=dt.UTC))
    assert plan(3) == ["score"]
    assert plan(4) == []


def scoring_job(tenant, as_of, capture):
    """Run a scoring job as the worker would (its chunks in order) and return it, finished."""
    from modeling.services import do_start_scoring

    with capture(execute=True):
        job = do_start_scoring(tenant, as_of=as_of)
    with tenant_context(tenant):
        job.refresh_from_db()
    return job


def test_scoring_job_runs_in_chunks_and_reports_progress(trained, settings, django_capture_on_commit_callbacks, monkeypatch):
    from modeling import scoring

    tenant, _ = trained
    monkeypatch.setattr(scoring, "CHUNK_SIZE", 150)
    job = scoring_job(tenant, END, django_capture_on_commit_callbacks)
    with tenant_context(tenant):
        customers = tenant_customers = Prediction.objects.filter(as_of=END).count()
        tiers = set(Prediction.objects.filter(as_of=END).values_list("value_tier", flat=True))
    assert (job.state, job.progress, job.steps_done) == (Job.State.SUCCEEDED, 1.0, job.steps_total)
    assert job.steps_total == -(-tenant_customers // 150) >= 2
    assert job.result["scored"] == customers
    assert tiers == {"high", "medium", "low"}


def test_a_scoring_job_as_of_a_past_date_leaves_out_customers_who_came_later(trained, django_capture_on_commit_callbacks, monkeypatch):
    """The job scores in chunks of every customer id; a chunk's customers who signed up or
    first bought after the date did not exist then and get no prediction for it."""
    from modeling import scoring

    tenant, _ = trained
    import_rows(tenant, "customers", [{"customer_id": "late-joiner", "created_at": "2025-07-05"}])
    import_rows(tenant, "orders", [{"customer_id": "late-buyer", "order_id": "late-1", "ordered_at": "2025-07-06", "amount": "20"}])
    monkeypatch.setattr(scoring, "CHUNK_SIZE", 150)
    job = scoring_job(tenant, END, django_capture_on_commit_callbacks)
    with tenant_context(tenant):
        scored = set(Prediction.objects.filter(as_of=END).values_list("customer__external_id", flat=True))
    assert job.state == Job.State.SUCCEEDED and job.result["scored"] == len(scored)
    assert scored and not scored & {"late-joiner", "late-buyer"}
    assert score_customers(tenant, END).scored == len(scored)  # as the one-pass scoring does


def test_customers_tied_at_a_tier_quantile_stay_in_the_tier_below(trained):
    """Thousands of sign-ups share one "no order yet" value: they must not rank as high value
    above buyers worth more."""
    from modeling.scoring import assign_value_tiers

    tenant, _ = trained
    score_customers(tenant, END)
    with tenant_context(tenant):
        dated = Prediction.objects.filter(as_of=END)
        buyers = dated.count()
        Prediction.objects.bulk_create([
            Prediction(tenant=tenant, customer=customer, as_of=END, horizon_days=90, purchase_probability=0.05, churn_probability=0.95,
                       expected_orders=0.05, predicted_value=Decimal("2.19"), explanation=[], model_versions={})
            for customer in Customer.objects.bulk_create([Customer(tenant=tenant, external_id=f"signup-{i}") for i in range(4 * buyers)])
        ])
        Prediction.objects.filter(as_of=END, predicted_value__lte=Decimal("2.19")).exclude(customer__external_id__startswith="signup-").update(predicted_value=Decimal("2.20"))
        assign_value_tiers(tenant, END)
        tiers = dict(Prediction.objects.filter(as_of=END, customer__external_id__startswith="signup-").values_list("value_tier").annotate(n=Count("id")))
        high_floor = Prediction.objects.filter(as_of=END, value_tier="high").aggregate(low=Min("predicted_value"))["low"]
    assert tiers == {"low": 4 * buyers}
    assert high_floor > Decimal("2.19")


def test_a_second_scoring_of_the_same_date_joins_the_one_queued(trained, django_capture_on_commit_callbacks):
    from modeling.services import do_start_scoring

    tenant, _ = trained
    with django_capture_on_commit_callbacks(execute=False):
        first = do_start_scoring(tenant, as_of=END)
        again = do_start_scoring(tenant, as_of=END)
        other_day = do_start_scoring(tenant, as_of=END - dt.timedelta(days=1))
    assert again.pk == first.pk and other_day.pk != first.pk
    with tenant_context(tenant):
        assert Job.objects.filter(kind=Job.Kind.SCORE, state=Job.State.QUEUED, params__as_of=END.isoformat()).count() == 1
    # Over the API too: the same job answers, so an integrator's retry does not score twice.
    answer = api_client_for(tenant).post("/api/v1/jobs/score/", {"as_of": END.isoformat()}, format="json")
    assert answer.status_code == 202 and answer.json()["id"] == first.pk
    # One that runs already began with the models then serving: a training's scoring queues its own.
    with tenant_context(tenant):
        Job.objects.filter(pk=first.pk).update(state=Job.State.RUNNING)
    with django_capture_on_commit_callbacks(execute=False):
        assert do_start_scoring(tenant, as_of=END).pk == first.pk
        after_training = do_start_scoring(tenant, as_of=END, new_models=True)
        assert after_training.pk != first.pk and do_start_scoring(tenant, as_of=END, new_models=True).pk == after_training.pk
    with tenant_context(tenant):
        Job.objects.filter(kind=Job.Kind.SCORE).update(state=Job.State.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        assert do_start_scoring(tenant, as_of=END).pk not in (first.pk, after_training.pk)  # finished ones do not hold the next


def test_a_scoring_that_fails_or_is_cancelled_midway_leaves_the_last_complete_date_serving(trained, settings, django_capture_on_commit_callbacks, monkeypatch):
    from modeling import scoring
    from modeling.exports import latest_predictions
    from modeling.jobs import do_request_cancel

    tenant, _ = trained
    monkeypatch.setattr(scoring, "CHUNK_SIZE", 150)
    assert scoring_job(tenant, END, django_capture_on_commit_callbacks).state == Job.State.SUCCEEDED
    with tenant_context(tenant):
        customers = Customer.objects.count()
        before = dict(Prediction.objects.filter(as_of=END).values_list("customer_id", "created_at"))
    assert len(before) == customers
    real_score = scoring.score_customers
    calls = []

    def second_chunk_fails(*args, **kwargs):  # a fault injected into the real scoring
        calls.append(kwargs["customer_ids"])
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(scoring, "score_customers", second_chunk_fails)
    later = END + dt.timedelta(days=7)
    failed = scoring_job(tenant, later, django_capture_on_commit_callbacks)
    with tenant_context(tenant):
        assert not Prediction.objects.filter(as_of=later).exists()  # the first chunk's rows were taken back
    assert failed.state == Job.State.FAILED and failed.finished_at is not None
    assert failed.message.startswith(f"Scoring failed on batch 2 of {failed.steps_total}: disk full; the 150 predictions")
    assert len(calls) == 2  # the chunks after the failure did nothing
    assert {p.as_of for p in latest_predictions(tenant)} == {END}
    listed = api_client_for(tenant).get("/api/v1/predictions/").json()
    assert listed["count"] == customers and {r["as_of"] for r in listed["results"]} == {END.isoformat()}

    # Re-scoring a complete date that fails keeps one prediction per customer: the new ones
    # for the chunk that finished, the earlier ones for the rest.
    calls.clear()
    rescore = scoring_job(tenant, END, django_capture_on_commit_callbacks)
    with tenant_context(tenant):
        after = dict(Prediction.objects.filter(as_of=END).values_list("customer_id", "created_at"))
    assert rescore.state == Job.State.FAILED and "taken back" not in rescore.message
    assert after.keys() == before.keys()
    assert sum(after[c] != before[c] for c in after) == len(calls[0]) == 150
    assert rescore.message.endswith("the 150 customers scored before it keep their new predictions for "
                                    f"{END}, the others the last complete scoring's; stages, segments and actions are that scoring's until the next one.")
    with tenant_context(tenant):  # the tiers ranked again over the mix: a higher value is never in a lower tier
        rank = {"low": 0, "medium": 1, "high": 2}
        tiers = sorted((float(v), rank[t]) for v, t in Prediction.objects.filter(as_of=END).values_list("predicted_value", "value_tier"))
    assert [t for _, t in tiers] == sorted(t for _, t in tiers) and tiers[-1][1] == 2

    # A cancel asked while the first chunk runs stops the job before the second one.
    def cancel_during_first_chunk(*args, **kwargs):
        calls.append(kwargs["customer_ids"])
        report = real_score(*args, **kwargs)
        with tenant_context(tenant):
            do_request_cancel(tenant, Job.objects.get(kind=Job.Kind.SCORE, state=Job.State.RUNNING).pk)
        return report

    calls.clear()
    monkeypatch.setattr(scoring, "score_customers", cancel_during_first_chunk)
    cancelled = scoring_job(tenant, later, django_capture_on_commit_callbacks)
    with tenant_context(tenant):
        assert not Prediction.objects.filter(as_of=later).exists()
    assert cancelled.state == Job.State.CANCELLED and len(calls) == 1


def test_a_cancel_once_every_customer_is_scored_comes_too_late_and_the_pages_stay_consistent(trained, django_capture_on_commit_callbacks, monkeypatch):
    from modeling import insights
    from modeling.jobs import do_request_cancel
    from modeling.models import CustomerInsight

    tenant, _ = trained
    real_refresh = insights.refresh_insights

    def cancel_during_insights(*args, **kwargs):  # the merchant presses Cancel while stages are computed
        with tenant_context(tenant):
            do_request_cancel(tenant, Job.objects.get(kind=Job.Kind.SCORE, state=Job.State.RUNNING).pk)
        return real_refresh(*args, **kwargs)

    monkeypatch.setattr(insights, "refresh_insights", cancel_during_insights)
    later = END + dt.timedelta(days=3)
    job = scoring_job(tenant, later, django_capture_on_commit_callbacks)
    assert job.state == Job.State.SUCCEEDED and job.message.endswith("(The cancel came after every customer was scored.)")
    with tenant_context(tenant):
        customers = Customer.objects.count()
        assert Prediction.objects.filter(as_of=later).count() == customers
        assert CustomerInsight.objects.filter(as_of=later).count() == customers  # every page reads the same date


def test_a_customer_newer_than_the_latest_scoring_is_told_apart_from_a_shop_without_models(trained, client, alice):
    tenant, _ = trained
    client.force_login(alice)
    assert import_rows(tenant, "customers", [{"customer_id": "newcomer"}]).ok
    with tenant_context(tenant):
        newcomer = Customer.objects.get(external_id="newcomer")
    assert "No prediction yet" in client.get(f"/customers/{newcomer.pk}/").content.decode()  # nothing scored yet
    score_customers(tenant, END)
    assert import_rows(tenant, "customers", [{"customer_id": "later"}]).ok
    with tenant_context(tenant):
        later = Customer.objects.get(external_id="later")
    page = client.get(f"/customers/{later.pk}/").content.decode()
    assert "Not scored yet: this customer was loaded after the latest scoring" in page and "No prediction yet" not in page
