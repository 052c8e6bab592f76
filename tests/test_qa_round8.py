"""Merchant QA walk, round 8: campaigns do not reach into each other's groups, their charts
and pages say what they measure and whom they target."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Action, Campaign, CampaignMember
from clmsite.tenancy import tenant_context
from customers.models import Order
from tests.test_qa_round5 import insights

pytestmark = pytest.mark.django_db


def test_a_new_campaign_leaves_out_customers_a_running_campaign_holds(tenant_a) -> None:
    insights(tenant_a, 40)
    with tenant_context(tenant_a):
        first = Campaign.objects.create(name="First", action=Action.WIN_BACK, control_share=0.25)
    services.do_launch_campaign(tenant_a, first.pk)
    with tenant_context(tenant_a):
        held = dict(CampaignMember.objects.filter(campaign=first).values_list("customer_id", "group"))
        control = {c for c, group in held.items() if group == CampaignMember.Group.CONTROL}
        assert len(held) == 40 and len(control) == 10
        # By default a second campaign over the same customers has nobody left, and says why.
        second = Campaign.objects.create(name="Second", action=Action.WIN_BACK)
    preview = services.preview(second)
    assert preview["size"] == 0 and preview["left_out_running"] == 40
    assert preview["note"].startswith("40 customers are left out: in a running campaign already.")
    with pytest.raises(services.CampaignStateError, match="all in running campaigns already"):
        services.do_launch_campaign(tenant_a, second.pk)
    # Allowing the overlap reaches the first campaign's treated customers, never its control group.
    with tenant_context(tenant_a):
        Campaign.objects.filter(pk=second.pk).update(skip_running=False)
        second.refresh_from_db()
    assert services.preview(second)["left_out_running"] == 10
    services.do_launch_campaign(tenant_a, second.pk)
    with tenant_context(tenant_a):
        reached = set(CampaignMember.objects.filter(campaign=second).values_list("customer_id", flat=True))
        second.refresh_from_db()
    assert len(reached) == 30 and not reached & control
    assert second.value_at_risk == 30 * 50  # from the members launched to


def test_a_suggestion_whose_customers_are_all_in_running_campaigns_offers_no_draft(tenant_a, client, alice) -> None:
    insights(tenant_a, 12)
    client.force_login(alice)
    first, created = services.do_draft_from_suggestion(tenant_a, Action.WIN_BACK)
    assert created and first.name.startswith("Win-back · ")
    services.do_launch_campaign(tenant_a, first.pk)
    page = client.get("/campaigns/").content.decode()
    assert "none of the 12 can be reached: 12 in a running campaign already" in page and f'action="/campaigns/suggest/{Action.WIN_BACK}/"' not in page
    with pytest.raises(services.CampaignStateError, match="None of the 12 customers with this action can be reached: 12 in a running campaign already"):
        services.do_draft_from_suggestion(tenant_a, Action.WIN_BACK)
    # Once it ends, a new draft of the same day gets its own name.
    with tenant_context(tenant_a):
        Campaign.objects.filter(pk=first.pk).update(state=Campaign.State.COMPLETED)
    again, created = services.do_draft_from_suggestion(tenant_a, Action.WIN_BACK)
    assert created and again.name == f"{first.name} (2)"


def test_the_campaign_page_names_its_audience_rule(tenant_a, client, alice) -> None:
    insights(tenant_a, 4)
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Big spenders", action=Action.WIN_BACK, filters={"stages": ["at_risk"], "orders_min": 3})
    client.force_login(alice)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Audience: every scored customer · stage is one of: <strong>At risk</strong> · orders at least: <strong>3</strong>" in page
    assert "customers in other running campaigns left out" in page


def test_the_last_point_of_the_conversion_curve_counts_every_order_up_to_now(tenant_a) -> None:
    insights(tenant_a, 10)
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Fresh", action=Action.WIN_BACK, control_share=0.2)
    services.do_launch_campaign(tenant_a, campaign.pk)
    with tenant_context(tenant_a):
        campaign.refresh_from_db()
        buyer = CampaignMember.objects.filter(campaign=campaign, group=CampaignMember.Group.TREATMENT).first().customer
        Order.objects.create(customer=buyer, external_id="O1", ordered_at=campaign.launched_at + dt.timedelta(minutes=2), amount=10)
    # Five minutes after launch: a rounded day (0.0) would put the cutoff at the launch itself.
    report = services.outcomes(campaign, now=campaign.launched_at + dt.timedelta(minutes=5))
    last = report["cumulative"][-1]
    assert last["end"] and last["treatment"] == pytest.approx(1 / 8) and last["day"] > 0


def test_a_campaign_without_control_and_without_orders_draws_no_empty_charts(tenant_a, client, alice) -> None:
    insights(tenant_a, 5)
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Thank-you", action=Action.WIN_BACK, control_share=0)
    services.do_launch_campaign(tenant_a, campaign.pk)
    client.force_login(alice)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "no control group" in page and 'id="cumulative-chart"' not in page


def test_without_a_broker_the_campaign_pages_launch_a_due_scheduled_campaign(tenant_a, client, alice, settings) -> None:
    insights(tenant_a, 6)
    client.force_login(alice)
    when = timezone.now() + dt.timedelta(minutes=10)
    response = client.post("/campaigns/new/", {"name": "Timed", "action": "win_back", "channel": "email", "control_share": 20, "attribution_days": 30,
                                               "scheduled_for": when.strftime("%Y-%m-%dT%H:%M"), "skip_running": "on"})
    assert response.status_code == 302
    with tenant_context(tenant_a):
        campaign = Campaign.objects.get(name="Timed")
        assert campaign.audit.get().detail == f"by hand; launch scheduled for {when:%Y-%m-%d %H:%M} UTC"
        Campaign.objects.filter(pk=campaign.pk).update(scheduled_for=timezone.now() - dt.timedelta(minutes=1))
    # With a broker, beat launches it: the page says it is due.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    assert "due: the scheduler launches it within 15 minutes" in client.get(f"/campaigns/{campaign.pk}/").content.decode()
    # Without one (the embedded default), opening the campaign pages launches it.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    client.get("/campaigns/")
    with tenant_context(tenant_a):
        campaign.refresh_from_db()
    assert campaign.state == Campaign.State.RUNNING and campaign.audience_size == 6


def test_the_customer_page_names_saved_segments_campaigns_review_tone_and_orders_since_the_scoring(tenant_a, client, alice) -> None:
    from customers.models import Customer, Review
    from modeling.models import Segment

    insights(tenant_a, 4)  # scored as of 2025-06-30
    with tenant_context(tenant_a):
        Segment.objects.create(kind=Segment.Kind.SAVED, key="active", name="Active ones", filters={"stages": ["active"]})
        Segment.objects.create(kind=Segment.Kind.SAVED, key="lapsed", name="Lapsed ones", filters={"stages": ["lapsed"]})
        campaign = Campaign.objects.create(name="Nudge", action=Action.WIN_BACK, control_share=0)
    services.do_launch_campaign(tenant_a, campaign.pk)
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="C0")
        Order.objects.create(customer=customer, external_id="late", ordered_at=dt.datetime(2025, 7, 2, tzinfo=dt.UTC), amount=5)
        Customer.objects.filter(pk=customer.pk).update(last_order_at=dt.datetime(2025, 7, 2, tzinfo=dt.UTC))
        Review.objects.create(customer=customer, external_id="R1", rating=5, text="Lovely", created_at=dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
                              sentiment="positive", sentiment_score=0.9)
    client.force_login(alice)
    page = client.get(f"/customers/{customer.pk}/").content.decode()
    assert "Active ones" in page and "Lapsed ones" not in page
    assert f'href="/campaigns/{campaign.pk}/">Nudge</a> <span class="muted">(treated, running)' in page
    assert 'data-testid="review-sentiment">Positive' in page
    assert "1 order since the scoring date (2025-06-30): the stage, prediction and next action below are as of that date and take it in" in page


def test_model_versions_are_numbered_per_shop_and_named_as_the_pages_name_them(tenant_a, tenant_b, client, alice) -> None:
    from modeling.models import ModelVersion
    from modeling.views import _named

    for tenant in (tenant_a, tenant_b, tenant_a):
        with tenant_context(tenant):
            ModelVersion.objects.create(target="purchase", family="tabular", as_of="2024-03-01", is_champion=True)
    with tenant_context(tenant_a):
        numbers = list(ModelVersion.objects.order_by("pk").values_list("number", flat=True))
        latest = ModelVersion.objects.order_by("-pk").first()
    with tenant_context(tenant_b):
        assert list(ModelVersion.objects.values_list("number", flat=True)) == [1]
    assert numbers == [1, 2] and _named(latest) == "Boosted trees v2"
    client.force_login(alice)
    page = client.get("/models/").content.decode()
    assert ">v2</a>" in page and f">v{latest.pk}</a>" not in page and "best of its run" in page


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hook", "https://localhost/hook", "http://[::1]/hook", "http://10.0.0.5/hook", "http://shop.localhost/hook"])
def test_a_webhook_to_a_private_address_is_refused_when_the_campaign_is_saved(tenant_a, client, alice, api_a, settings, url) -> None:
    settings.CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    client.force_login(alice)
    form = {"name": "Hooked", "action": "win_back", "channel": "email", "control_share": 10, "attribution_days": 30, "webhook_url": url}
    page = client.post("/campaigns/new/", form)
    assert page.status_code == 200 and "webhooks go to public internet addresses only" in page.content.decode()
    response = api_a.post("/api/v1/campaigns/", {"name": "Hooked", "action": "win_back", "webhook_url": url}, format="json")
    assert response.status_code == 400 and "public internet addresses only" in response.json()["webhook_url"][0]
    # An operator who allows private networks (a webhook inside the shop's own network) can save it.
    settings.CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert api_a.post("/api/v1/campaigns/", {"name": "Hooked", "action": "win_back", "webhook_url": url}, format="json").status_code == 201
    assert services.webhook_url_problem("https://hooks.example.com/clm") is None


def _predictions(tenant, as_of: str, customers: list) -> None:
    from modeling.models import Prediction

    with tenant_context(tenant):
        for customer in customers:
            Prediction.objects.create(customer=customer, as_of=as_of, horizon_days=90, purchase_probability=0.4, churn_probability=0.6,
                                      expected_orders=0.5, predicted_value=12, value_tier="low")


def test_a_scoring_reaped_halfway_takes_back_what_it_wrote_for_a_new_date(tenant_a) -> None:
    from customers.models import Customer
    from modeling.jobs import reap_stale_jobs
    from modeling.models import Job, Prediction

    long_ago = timezone.now() - dt.timedelta(hours=1)
    with tenant_context(tenant_a):
        customers = [Customer.objects.create(external_id=f"C{i}") for i in range(3)]
        job = Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.RUNNING, params={"as_of": "2025-07-01"}, started_at=long_ago, heartbeat_at=long_ago)
    _predictions(tenant_a, "2025-06-01", customers)  # an earlier, completed date
    _predictions(tenant_a, "2025-07-01", customers[:2])  # the batches done before its worker died
    assert reap_stale_jobs() == 1
    with tenant_context(tenant_a):
        job.refresh_from_db()
        assert job.state == Job.State.FAILED and job.message.endswith("The 2 predictions it had written for 2025-07-01 were taken back.")
        assert not Prediction.objects.filter(as_of="2025-07-01").exists() and Prediction.objects.filter(as_of="2025-06-01").count() == 3


def test_score_sync_refuses_a_date_a_scoring_job_is_already_running(tenant_a) -> None:
    from django.core.management import CommandError, call_command

    from customers.models import Customer, Order
    from modeling.models import Job

    with tenant_context(tenant_a):
        customer = Customer.objects.create(external_id="C1")
        Order.objects.create(customer=customer, external_id="O1", ordered_at=dt.datetime(2025, 6, 1, tzinfo=dt.UTC), amount=10)
        job = Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.RUNNING, params={"as_of": "2025-06-30"}, heartbeat_at=timezone.now())
    with pytest.raises(CommandError, match=f"A scoring of 2025-06-30 is already running \\(job {job.pk}\\)"):
        call_command("score", "--tenant", tenant_a.slug, "--as-of", "2025-06-30", "--sync")


def test_rollbacks_walk_back_through_the_history_and_a_cancelled_trainings_model_cannot_serve(tenant_a, api_a, tmp_path) -> None:
    from modeling import registry
    from modeling.models import Job, ModelVersion

    def version(job=None) -> ModelVersion:
        directory = tmp_path / f"v{len(list(tmp_path.iterdir()))}"
        directory.mkdir()
        (directory / "model.json").write_text("{}")
        with tenant_context(tenant_a):
            return ModelVersion.objects.create(target="purchase", family="tabular", as_of="2024-03-01", job=job,
                                               artifact_path=str(directory), artifact_sha256=registry.write_manifest(directory))

    with tenant_context(tenant_a):
        first, second, third = version(), version(), version()
    for v in (first, second, third):
        registry.do_promote_model_version(tenant_a, v.pk)
    assert registry.do_rollback_model(tenant_a, "purchase").pk == second.pk
    assert registry.do_rollback_model(tenant_a, "purchase").pk == first.pk  # not back to the third
    with pytest.raises(ValueError, match="no earlier"):
        registry.do_rollback_model(tenant_a, "purchase")
    # Promoting a rolled-back version by hand makes it part of the history again.
    registry.do_promote_model_version(tenant_a, third.pk)
    serving_since = registry.get_model_version(tenant_a, third.pk).activated_at
    registry.do_promote_model_version(tenant_a, third.pk)  # the active one again: nothing changes
    assert serving_since is not None and registry.get_model_version(tenant_a, third.pk).activated_at == serving_since
    assert registry.do_rollback_model(tenant_a, "purchase").pk == first.pk
    with tenant_context(tenant_a):
        job = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.CANCELLED)
    stray = version(job)
    response = api_a.post(f"/api/v1/models/{stray.pk}/promote/")  # an admin's key
    assert response.status_code == 409 and "was cancelled, so it cannot serve" in response.json()["detail"]


def test_an_unreachable_webhook_stops_after_the_first_batch_and_the_report_says_how_delivery_went(tenant_a, api_a, settings) -> None:
    import socket

    from campaigns import webhooks

    settings.CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    insights(tenant_a, 7)
    with tenant_context(tenant_a):
        campaign = Campaign.objects.create(name="Hooked", action=Action.WIN_BACK, control_share=0.1, webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret="s")
    services.do_launch_campaign(tenant_a, campaign.pk)
    sleeps: list[float] = []
    result = webhooks.deliver(campaign, batch_size=2, sleep=sleeps.append)  # 6 treated: 3 batches
    assert result["delivered"] == 0 and "later batches were not sent" in result["error"]
    assert len(sleeps) == webhooks.MAX_ATTEMPTS - 1  # the first batch's retries only
    report = api_a.get(f"/api/v1/campaigns/{campaign.pk}/report/").json()
    assert report["webhook"]["batches"] == 3 and report["webhook"]["delivered"] == 0 and report["webhook"]["attempts"] == webhooks.MAX_ATTEMPTS
    assert report["webhook"]["last_error"] and report["webhook"]["last_attempt_at"].endswith("Z")


def test_an_overdue_customer_the_model_still_expects_keeps_their_stage_and_says_they_are_overdue() -> None:
    import pandas as pd

    from modeling import lifecycle
    from modeling.models import Stage
    from tests.test_lifecycle import AS_OF, _history

    rows = [(c, str(AS_OF - dt.timedelta(days=d)), 50.0) for c in range(100, 130) for d in (10, 40, 70, 100)]
    rows += [(4, str(AS_OF - dt.timedelta(days=d)), 60.0) for d in (15, 23, 31, 39)]  # every 8 days, silent for 15
    rows += [(5, str(AS_OF - dt.timedelta(days=d)), 60.0) for d in (45, 55, 65, 75)]  # every 10 days, silent for 45
    history = _history(rows)
    predictions = pd.DataFrame({"purchase_probability": {4: 0.99, 5: 0.2}, "value_tier": {4: "medium", 5: "medium"}})
    stages = lifecycle.stages_as_of(history, AS_OF, lifecycle.derive_thresholds(history, AS_OF), predictions=predictions)
    # At risk beside "99% likely to buy" read as a contradiction: the stage stays, with the overdue said.
    assert stages.at[4, "stage"] == Stage.LOYAL  # 240 spent, in the top fifth of the shop's buyers (the others spent 200)
    assert stages.at[4, "reason"] == "loyal: 4 orders, lifetime spend in the shop's top 20% of buyers; overdue (15 days vs. their usual 8) but still 99% likely to buy"
    assert (stages.at[5, "stage"], stages.at[5, "reason"]) == (Stage.AT_RISK, "overdue: 45 days vs. their usual 10")


def test_a_stage_historys_reason_speaks_of_the_day_the_period_began_not_of_today() -> None:
    from modeling import lifecycle
    from tests.test_lifecycle import AS_OF, _history

    rows = [(c, str(AS_OF - dt.timedelta(days=d)), 50.0) for c in range(100, 130) for d in (10, 40, 70, 100)]
    rows += [(1, "2025-06-20", 80.0)]
    history = _history(rows)
    stages = lifecycle.stages_as_of(history, AS_OF, lifecycle.derive_thresholds(history, AS_OF))
    assert stages.at[1, "reason"].startswith("new: first order 10 days ago")
    assert stages.at[1, "entry_reason"].startswith("new: first order that day")


def test_model_metrics_show_shares_in_percent_money_to_the_cent_and_categories_by_rank() -> None:
    from clmsite.templatetags.clm import metric_number
    from modeling.explain import feature_label

    assert metric_number(0.1753, "positive_rate") == "17.5%" and metric_number(0.2, "mean_predicted") == "20.0%"
    assert (metric_number(96.3857, "revenue_mae"), metric_number(126.142, "revenue_rmse"), metric_number(4, "revenue_mae")) == ("96.39", "126.14", "4.00")
    assert metric_number(0.4123, "orders_mae") == "0.4123" and metric_number(1849.0, "n") == "1,849"
    assert feature_label("category_0_share") == "share of spend on the shop's biggest category"
    assert feature_label("category_6_share") == "share of spend on the shop's 7th-biggest category"
    assert feature_label("category_1_share") == "share of spend on the shop's 2nd-biggest category"


def test_an_import_that_changed_rows_says_the_predictions_take_them_in_at_the_next_scoring(tenant_a, client, alice) -> None:
    from modeling.models import Job

    insights(tenant_a, 2)  # scored as of 2025-06-30
    with tenant_context(tenant_a):
        changed = Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.SUCCEEDED, params={"filename": "a.csv", "kind": "orders"},
                                     result={"rows": 1, "created": 1, "updated": 0, "unchanged": 0})
        same = Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.SUCCEEDED, params={"filename": "a.csv", "kind": "orders"},
                                  result={"rows": 1, "created": 0, "updated": 0, "unchanged": 1})
    client.force_login(alice)
    page = client.get(f"/imports/{changed.pk}/").content.decode()
    assert "are as of the last scoring (2025-06-30) and take these rows in at the next one" in page
    assert 'data-testid="rescore-note"' not in client.get(f"/imports/{same.pk}/").content.decode()


def test_a_task_handed_back_while_its_dead_workers_lease_is_fresh_asks_again_later(tenant_a, settings) -> None:
    from modeling import jobs
    from modeling.models import Job

    class Again(Exception):
        pass

    class Task:  # the two things of a Celery task the helper uses
        asked: list[int] = []

        def retry(self, countdown: int) -> Exception:
            self.asked.append(countdown)
            return Again()

    settings.CELERY_TASK_ALWAYS_EAGER, settings.JOB_LEASE_SECONDS = False, 60
    with tenant_context(tenant_a):
        running = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.RUNNING, heartbeat_at=timezone.now())
        done = Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.SUCCEEDED)
    assert jobs.claim_job(tenant_a, running.pk) is None  # the lease is fresh
    with pytest.raises(Again):
        jobs.retry_if_held_elsewhere(Task(), tenant_a, running.pk)
    assert Task.asked == [65]
    jobs.retry_if_held_elsewhere(Task(), tenant_a, done.pk)  # finished: nothing to take over
    settings.CELERY_TASK_ALWAYS_EAGER = True
    jobs.retry_if_held_elsewhere(Task(), tenant_a, running.pk)  # no broker: no redelivery to wait for
    assert Task.asked == [65]


def test_the_campaign_preview_says_which_filter_it_left_out_as_invalid(tenant_a, client, alice) -> None:
    insights(tenant_a, 3)
    client.force_login(alice)
    preview = client.get("/campaigns/preview/", {"action": "win_back", "churn_min": "150", "skip_running": "on"}).json()
    assert preview["size"] == 3 and preview["partial"] is True  # the page writes "3 customers without the refused filters"
    assert preview["note"].startswith("Not counted until corrected: Churn risk at least (%): Ensure this value is less than or equal to 100.")
    valid = client.get("/campaigns/preview/", {"action": "win_back", "churn_min": "40", "skip_running": "on"}).json()["note"]
    assert "Not counted" not in valid and "Too small to measure: 2 treated and 1 held out." in valid  # nothing left out


def test_factors_say_whose_they_are_when_another_family_serves_the_chance(tenant_a, client, alice) -> None:
    from customers.models import Customer
    from modeling.models import ModelVersion, Prediction

    insights(tenant_a, 1)
    factors = [{"text": "last order 3 days ago", "effect": "+", "weight": 0.4}]
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="C0")
        transformer = ModelVersion.objects.create(target="purchase", family="transformer", as_of="2025-06-30")
        trees = ModelVersion.objects.create(target="purchase", family="tabular", as_of="2025-06-30")
        prediction = Prediction.objects.create(customer=customer, as_of="2025-06-30", horizon_days=90, purchase_probability=0.02, churn_probability=0.98,
                                               expected_orders=0.1, predicted_value=5, value_tier="low", explanation=factors,
                                               model_versions={"purchase": transformer.pk})
    client.force_login(alice)
    page = client.get(f"/customers/{customer.pk}/").content.decode()
    assert "The chance above comes from the serving model (Transformer). These factors explain a second model, trained on the same data to give reasons" in page
    with tenant_context(tenant_a):
        Prediction.objects.filter(pk=prediction.pk).update(model_versions={"purchase": trees.pk})
    assert 'data-testid="factors-by"' not in client.get(f"/customers/{customer.pk}/").content.decode()


def test_the_saved_segment_form_previews_its_size_live(tenant_a, client, alice) -> None:
    from modeling.models import CustomerInsight

    insights(tenant_a, 3)
    with tenant_context(tenant_a):
        CustomerInsight.objects.filter(customer__external_id="C0").update(stage="lapsed")
    client.force_login(alice)
    lapsed = client.get("/segments/preview/", {"stages": ["lapsed"]}).json()
    assert (lapsed["size"], lapsed["value_at_risk"], lapsed["note"], lapsed["partial"]) == (1, 50.0, "", False)
    refused = client.get("/segments/preview/", {"stages": ["lapsed"], "churn_min": "200"}).json()
    assert refused["size"] == 1 and refused["partial"] and refused["note"].startswith("Not counted until corrected: Churn risk at least (%):")
    assert 'data-preview="/segments/preview/"' in client.get("/segments/").content.decode()
