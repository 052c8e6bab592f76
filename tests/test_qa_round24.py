"""Session 25: a customer who orders in pairs usually orders every two months, not every two days."""

from __future__ import annotations

import datetime as dt

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_rows
from customers.services.queries import customer_timeline
from modeling.explain import describe
from modeling.features import features_as_of, load_history
from modeling.lifecycle import Thresholds, stages_as_of
from modeling.models import Stage

pytestmark = pytest.mark.django_db


def _orders(tenant, customer: str, *days: str) -> None:
    rows = [{"customer_id": customer, "order_id": f"{customer}-{i}", "ordered_at": day, "amount": "40"} for i, day in enumerate(days)]
    assert import_rows(tenant, "orders", rows).ok


def test_a_customer_who_orders_in_pairs_usually_orders_every_two_months(tenant_a) -> None:
    # An order and an add-on two days later, every two months; and a steady monthly buyer
    # with one long break, whose usual gap stays a month.
    _orders(tenant_a, "pairs", "2024-01-01", "2024-01-03", "2024-03-01", "2024-03-03", "2024-05-01", "2024-05-03")
    _orders(tenant_a, "steady", "2024-01-05", "2024-02-04", "2024-03-05", "2024-04-04", "2024-05-04")
    as_of = dt.date(2024, 5, 13)  # ten days after the last pair
    history = load_history(tenant_a, ceiling=as_of)
    features = features_as_of(history, as_of)
    with tenant_context(tenant_a):
        pairs, steady = (Customer.objects.get(external_id=e) for e in ("pairs", "steady"))

    assert round(features.at[pairs.pk, "gap_median"]) == 60 and round(features.at[steady.pk, "gap_median"]) == 30
    assert describe("gap_median", features.loc[pairs.pk], []) == "usually orders every 60 days"
    assert customer_timeline(tenant_a, pairs)["median_gap_days"] == 60  # the customer page says the same
    # Ten days after a pair is not "overdue" (it was: 10 days vs. their usual 2).
    stages = stages_as_of(history, as_of, Thresholds(), features=features)
    assert stages.at[pairs.pk, "stage"] != Stage.AT_RISK and "overdue" not in stages.at[pairs.pk, "reason"]


def test_an_order_ends_an_at_risk_period_on_its_day_in_the_stage_history(tenant_a) -> None:
    """At risk at one month end, buying again through the next month: the next period began
    with the first order after the snapshot, not the last one (At risk until the 27th of a
    month with orders on the 1st, 9th and 13th)."""
    from modeling.insights import previous_stages, save_stages

    days = [f"2024-0{m}-{d:02d}" for m in (1, 2) for d in (1, 6, 11, 16, 21, 26)] + ["2024-04-01", "2024-04-09", "2024-04-13", "2024-04-27"]
    _orders(tenant_a, "regular", *days)
    with tenant_context(tenant_a):
        regular = Customer.objects.get(external_id="regular").pk

    def stages_on(as_of):
        history = load_history(tenant_a, ceiling=as_of)
        stages = stages_as_of(history, as_of, Thresholds(), previous=previous_stages(tenant_a, as_of))
        save_stages(tenant_a, as_of, stages)
        return stages.loc[regular]

    assert stages_on(dt.date(2024, 3, 31))["stage"] == Stage.AT_RISK
    april = stages_on(dt.date(2024, 4, 30))
    assert april["stage"] in (Stage.ACTIVE, Stage.LOYAL) and april["since"] == dt.date(2024, 4, 1)
    assert "-" not in april["entry_reason"]  # no "last order -26 days before"


def test_the_customer_page_says_when_they_declined_the_next_actions_channel(tenant_a, client, alice) -> None:
    from modeling.models import CustomerInsight

    assert import_rows(tenant_a, "customers", [{"customer_id": "no", "accepts_email_marketing": "no"}, {"customer_id": "yes", "accepts_email_marketing": "yes"}]).ok
    client.force_login(alice)
    pages = {}
    with tenant_context(tenant_a):
        for customer in Customer.objects.all():
            CustomerInsight.objects.create(customer=customer, as_of=dt.date(2024, 5, 1), stage="at_risk", stage_since=dt.date(2024, 4, 1),
                                           action="win_back", action_channel="email")
            pages[customer.external_id] = client.get(f"/customers/{customer.pk}/").content.decode()
    assert 'data-testid="declined-channel"' in pages["no"] and "declined Email marketing" in pages["no"]
    assert 'data-testid="declined-channel"' not in pages["yes"]


def test_the_verdict_names_revenue_where_its_interval_says_otherwise_than_conversions() -> None:
    from campaigns.services import GroupOutcome, compare_groups

    # 20 of 80 treated bought (USD 200 each), 3 of 20 held out (USD 100 each): conversion's
    # interval spans zero, revenue per member's does not.
    report = compare_groups(GroupOutcome(80, 20, 4000.0, 800000.0), GroupOutcome(20, 3, 300.0, 30000.0), currency="USD")
    assert not report["significant"] and report["revenue_uplift_ci"][0] > 0
    assert report["verdict"].startswith("Not significant yet: the difference is +10.0 percentage points")
    assert "Revenue per member, though, moved by USD +35.00, and its 95% interval (" in report["verdict"] and "is clear of zero." in report["verdict"]
    # Where both agree, nothing is added.
    agree = compare_groups(GroupOutcome(500, 60, 3600.0, 216000.0), GroupOutcome(500, 40, 2400.0, 144000.0), currency="USD")
    assert "Revenue per member" not in agree["verdict"]


def test_the_campaign_list_counts_a_drafts_audience_now(tenant_a, client, alice) -> None:
    from campaigns.models import Action, Campaign
    from tests.test_qa_round5 import insights

    insights(tenant_a, 7)
    with tenant_context(tenant_a):
        Campaign.objects.create(name="Back soon", action=Action.WIN_BACK)
    client.force_login(alice)
    page = client.get("/campaigns/").content.decode()
    assert '<td class="num" data-label="Audience">7 <small class="muted"' in page and ">now</small>" in page and ">at launch<" not in page


def test_a_stage_move_goes_forward_in_time(tenant_a, client, alice) -> None:
    client.force_login(alice)
    ok = client.get("/lifecycle/moves/", {"start": "2025-11-30", "end": "2025-12-31", "from": "lapsed", "to": "active"})
    backwards = client.get("/lifecycle/moves/", {"start": "2025-12-31", "end": "2025-11-30", "from": "lapsed", "to": "active"})
    assert (ok.status_code, backwards.status_code) == (200, 404)


@pytest.mark.parametrize("url, name", [
    ("/api/v1/orders/", "ordered_at__gte"), ("/api/v1/orders/", "updated_at__lt"), ("/api/v1/customers/", "updated_at__gte"),
    ("/api/v1/customers/", "last_order_after"), ("/api/v1/reviews/", "created_at__gte"), ("/api/v1/products/", "updated_at__gte"),
])
@pytest.mark.parametrize("day", ["2023-02-29", "2026-11-31", "2026-13-01", "0000-01-01", "2026-12-32", "2023-02-29T10:00:00Z"])
def test_a_date_filter_off_the_calendar_is_a_400_naming_it(api_a, url, name, day) -> None:
    answer = api_a.get(url, {name: day})
    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == [name]
    if "T" not in day:
        assert answer.json() == {name: [f"'{day}' is not a date on the calendar."]}


def test_a_local_time_the_clocks_skipped_is_a_row_error(tenant_a) -> None:
    tenant_a.time_zone = "America/New_York"
    tenant_a.save()
    skipped = import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-03-10T02:30:00", "amount": "5"}])
    assert not skipped.ok and skipped.errors[0].column == "ordered_at"
    assert skipped.errors[0].message.startswith("2024-03-10 02:30 does not exist in America/New_York: the clocks went forward that night.")
    # The same hour with its offset, the hour after, and the day alone are taken.
    rows = [{"customer_id": "c1", "order_id": f"o{i}", "ordered_at": when, "amount": "5"}
            for i, when in enumerate(["2024-03-10T02:30:00-05:00", "2024-03-10T03:30:00", "2024-03-10"])]
    assert import_rows(tenant_a, "orders", rows).ok


def test_a_line_longer_than_the_limit_is_refused_before_it_is_read_whole(tenant_a, tmp_path) -> None:
    from customers.services.imports import MAX_LINE_CHARS, import_csv

    path = tmp_path / "long.csv"
    path.write_text("customer_id,name\nc1," + "a" * (MAX_LINE_CHARS + 10) + "\nc2,Bo\n")
    result = import_csv(tenant_a, "customers", str(path))
    assert not result.ok and [(e.row, e.message) for e in result.errors] == [(2, "a line is longer than 1,000,000 characters (a field may have 100,000)")]
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_deleting_a_customer_takes_them_out_of_their_segments_count(tenant_a) -> None:
    from modeling.models import CustomerInsight, Segment
    from tests.conftest import api_client_for

    with tenant_context(tenant_a):
        learned = Segment.objects.create(kind=Segment.Kind.LEARNED, key="s1", name="Regulars", size=2)
        rfm = Segment.objects.create(kind=Segment.Kind.RFM, key="champions", name="Champions", size=2)
        customers = [Customer.objects.create(external_id=f"c{i}") for i in range(2)]
        for customer in customers:
            CustomerInsight.objects.create(customer=customer, as_of=dt.date(2024, 5, 1), stage="active", stage_since=dt.date(2024, 4, 1),
                                           learned_segment=learned, rfm_segment=rfm)
    assert api_client_for(tenant_a, "admin").delete(f"/api/v1/customers/{customers[0].pk}/").status_code == 204
    with tenant_context(tenant_a):
        assert [s.size for s in Segment.objects.filter(pk__in=[learned.pk, rfm.pk]).order_by("pk")] == [1, 1]


def test_orders_products_and_reviews_are_found_by_their_own_ids(shop_a_data, api_a) -> None:
    orders = api_a.get("/api/v1/orders/", {"order_id": "o2"}).json()["results"]
    assert [o["external_id"] for o in orders] == ["o2"]
    assert api_a.get("/api/v1/orders/", {"order_id": "O2"}).json()["count"] == 0  # exactly, as the ids are kept
    sku = api_a.get("/api/v1/products/").json()["results"][0]["sku"]
    assert [p["sku"] for p in api_a.get("/api/v1/products/", {"sku": sku}).json()["results"]] == [sku]
    review = api_a.get("/api/v1/reviews/").json()["results"][0]["external_id"]
    assert [r["external_id"] for r in api_a.get("/api/v1/reviews/", {"review_id": review}).json()["results"]] == [review]


def test_a_sync_walk_ordered_by_updated_at_and_id_continues_by_position_and_never_back(shop_a_data, api_a) -> None:
    first = api_a.get("/api/v1/customers/", {"ordering": "updated_at,id", "page_size": 1}).json()
    assert "after=" in first["next"] and "page=" not in first["next"]
    second = api_a.get("/api/v1/customers/", {"ordering": "updated_at", "page_size": 1, "page": 2}).json()
    assert second["previous"] is None and "after=" in (second["next"] or "after=")
    walked = api_a.get(first["next"]).json()
    assert walked["results"] and walked["results"][0]["id"] != first["results"][0]["id"]


def test_only_an_owner_makes_an_invite_link_for_an_owner(tenant_a, alice, bob, client) -> None:
    from clmsite.models import Membership, Role
    from clmsite.services import do_invite_member

    Membership.objects.filter(user=bob, tenant=tenant_a).update(role=Role.ADMIN)
    pending_owner, _ = do_invite_member(tenant_a, "newowner", Role.OWNER)
    pending_viewer, _ = do_invite_member(tenant_a, "newviewer", Role.VIEWER)
    client.force_login(bob)  # an admin
    refused = client.post(f"/settings/team/{pending_owner.pk}/invite/", follow=True).content.decode()
    assert "Only an owner can make, change or remove an owner." in refused and 'id="invite-url"' not in refused
    assert 'id="invite-url"' in client.post(f"/settings/team/{pending_viewer.pk}/invite/", follow=True).content.decode()
    client.force_login(alice)  # an owner
    assert 'id="invite-url"' in client.post(f"/settings/team/{pending_owner.pk}/invite/", follow=True).content.decode()


def test_an_owner_who_has_not_set_a_password_yet_does_not_let_the_last_owner_leave(tenant_a, alice, client) -> None:
    from clmsite.models import Membership, Role
    from clmsite.services import do_invite_member

    do_invite_member(tenant_a, "pendingowner", Role.OWNER)  # a new login: in the team at once, no password until the link is used
    client.force_login(alice)
    mine = Membership.objects.get(user=alice, tenant=tenant_a)
    left = client.post(f"/settings/team/{mine.pk}/remove/", follow=True).content.decode()
    assert "alice is the shop&#x27;s only owner who can sign in" in left
    assert Membership.objects.filter(pk=mine.pk).exists()


def test_pages_give_the_scorings_horizon_not_a_setting_changed_since(tenant_a, client, alice) -> None:
    from modeling.insights import scoring_horizon
    from modeling.models import Prediction

    assert import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-04-01", "amount": "10"}]).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
        Prediction.objects.create(customer=customer, as_of=dt.date(2024, 5, 1), horizon_days=90, purchase_probability=0.4, churn_probability=0.6,
                                  expected_orders=0.5, predicted_value=20, value_tier="low")
    tenant_a.horizon_days = 30  # changed in Settings after the scoring
    tenant_a.save()
    assert scoring_horizon(tenant_a, dt.date(2024, 5, 1)) == 90 and scoring_horizon(tenant_a, None) == 30
    client.force_login(alice)
    assert "next 30 days" not in client.get("/playbook/").content.decode()


PASTED = """customer_id,order_id,ordered_at,amount,sku
c1,o1,2024-03-01,10.00,s1
c1,o1,2024-03-01,15.00,s2
c2,o2,2024-03-02,20.00,s1
c3,o3,2024-03-03,5.00,s3
c3,o3,2024-03-03,5.00,s3
c1,o1,2024-03-01,10.00,s1
c1,o1,2024-03-01,15.00,s2
c2,o2,2024-03-02,20.00,s1
c3,o3,2024-03-03,5.00,s3
c3,o3,2024-03-03,5.00,s3
c2,o4,2024-03-04,7.00,s1
c2,o4,2024-03-04,8.00,s2
c2,o5,2024-03-05,1.00,s1
c2,o4,2024-03-04,9.00,s3
"""


@pytest.mark.parametrize("dry_run", [False, True])
def test_orders_pasted_twice_are_read_once_and_lines_apart_stay_lines(tenant_a, tmp_path, dry_run) -> None:
    from customers.models import Order
    from customers.services.imports import import_csv

    path = tmp_path / "pasted.csv"
    path.write_text(PASTED)
    result = import_csv(tenant_a, "orders", str(path), dry_run=dry_run)
    assert result.ok and result.created == 5
    assert "3 orders came again further down the file with the same lines (5 rows, as two overlapping exports pasted together make): each was read once." in result.message
    assert result.details["repeated_lines"] == 1  # o3's second line, once
    if dry_run:
        return
    with tenant_context(tenant_a):
        totals = dict(Order.objects.values_list("external_id", "amount"))
    # o1 and o2 once; o4's third line, apart from the other two and not a copy, is still its line.
    assert {k: float(v) for k, v in totals.items()} == {"o1": 25.0, "o2": 20.0, "o3": 10.0, "o4": 24.0, "o5": 1.0}
    again = import_csv(tenant_a, "orders", str(path))
    assert again.ok and again.unchanged == 5 and again.created == again.updated == 0


def test_changing_the_time_zone_of_a_shop_with_orders_says_how_its_times_were_read(shop_a_data, alice, client) -> None:
    client.force_login(alice)
    form = {"name": "Shop A", "currency": "USD", "time_zone": "America/New_York", "horizon_days": 90, "high_tier_percent": 20, "low_tier_percent": 50,
            "retrain_weekday": 6, "retrain_hour": 2, "score_hour": 4}
    said = [str(m) for m in client.post("/settings/", form, follow=True).context["messages"]]
    assert said[1].startswith("Times that files or API rows gave without a UTC offset were read in UTC when they were imported and stay as read: "
                              "import those files again to read them in America/New_York")
    currency = [str(m) for m in client.post("/settings/", {**form, "currency": "EUR"}, follow=True).context["messages"]]
    assert currency == ["Settings saved. Money shows in the new currency now; the actions' reasons and offers and the segments' descriptions name it "
                        "from the next scoring."]


def test_a_consent_is_one_word_in_exports() -> None:
    from campaigns.services import consent_answer

    answers = [consent_answer(Customer(attributes={"accepts_email_marketing": said}), "email") for said in ("No", "no", "FALSE", "Yes", "y", "", "maybe")]
    assert answers == ["no", "no", "no", "yes", "yes", "", "maybe"]
    assert consent_answer(Customer(attributes={"accepts_email_marketing": "no"}), "phone") == ""  # a call asks none


def test_a_lockout_says_how_long_in_words(client, alice) -> None:
    from clmsite.templatetags.clm import iso_duration

    assert [iso_duration(v) for v in ("PT15M", "PT1H30M", "P1DT2H", "PT0.5S", "", "soon")] == ["15 minutes", "1 hour 30 minutes", "1 day 2 hours", "0.5 seconds", "", "soon"]
    for _ in range(6):
        refused = client.post("/login/", {"username": "alice", "password": "wrong-password"})
    page = refused.content.decode()
    assert refused.status_code == 429 and "is paused for 15 minutes." in page and "PT15M" not in page


def test_a_playbook_rule_takes_at_most_a_century_of_days(tenant_a, client, alice) -> None:
    client.force_login(alice)
    form = {"position": 5, "name": "Long gone", "enabled": "on", "action": "win_back", "channel": "email", "days_since_min": "99999999999"}
    page = client.post("/playbook/new/", form).content.decode()
    assert "At most 36,500 days (a century)." in page
    assert client.post("/playbook/new/", {**form, "days_since_min": "400"}).status_code == 302


def test_an_analyst_sees_cancel_on_a_scoring_and_not_on_a_training(tenant_a, bob, client) -> None:
    from clmsite.models import Membership, Role
    from modeling.models import Job

    Membership.objects.filter(user=bob, tenant=tenant_a).update(role=Role.ANALYST)
    with tenant_context(tenant_a):
        scoring = Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.QUEUED)
        training = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.QUEUED)
    client.force_login(bob)
    page = client.get("/models/").content.decode()
    assert f"/jobs/{scoring.pk}/cancel/" in page and f"/jobs/{training.pk}/cancel/" not in page


def test_score_now_names_a_date_off_the_calendar(tenant_a, alice, client) -> None:
    client.force_login(alice)
    said = [str(m) for m in client.post("/models/score/", {"as_of": "2026-02-30"}, follow=True).context["messages"]]
    assert said == ["'2026-02-30' is not a date on the calendar."]


def test_a_spreadsheets_date_number_is_named_with_the_date_it_stands_for() -> None:
    from customers.services.parsing import FieldError, parse_datetime

    with pytest.raises(FieldError, match=r"it looks like a spreadsheet's date number \(46353.58 is 2026-11-27 13:55\)"):
        parse_datetime("46353.58")
    with pytest.raises(FieldError) as plain:
        parse_datetime("12345")
    assert "date number" not in str(plain.value)


def test_the_team_page_says_who_changed_the_settings_a_rule_and_cancelled_a_job(tenant_a, alice, client) -> None:
    from clmsite.models import AccessEvent
    from modeling.models import Job

    client.force_login(alice)
    form = {"name": "Shop A", "currency": "EUR", "time_zone": "UTC", "horizon_days": 60, "high_tier_percent": 20, "low_tier_percent": 50,
            "retrain_weekday": 6, "retrain_hour": 2, "score_hour": 4}
    assert client.post("/settings/", form).status_code == 302
    assert client.post("/playbook/new/", {"position": 5, "name": "Long gone", "enabled": "on", "action": "win_back", "channel": "email",
                                          "days_since_min": "400"}).status_code == 302
    with tenant_context(tenant_a):
        job = Job.objects.create(kind=Job.Kind.SCORE, state=Job.State.QUEUED)
    client.post(f"/jobs/{job.pk}/cancel/", {"next": "/models/"})
    with tenant_context(tenant_a):
        events = {e.event: e.detail for e in AccessEvent.objects.filter(user=alice)}
    assert "Currency: USD → EUR" in events["settings_changed"] and "90 → 60" in events["settings_changed"]
    assert events["rule_saved"].startswith("“Long gone”: 400 days or more since the last order → Win-back")
    assert events["job_cancelled"] == f"Scoring #{job.pk}"
    page = client.get("/settings/team/").content.decode()
    assert "Changed the settings" in page and "Saved a playbook rule" in page and "Cancelled a job" in page


def test_a_new_invite_link_ends_the_older_ones(tenant_a, alice, client) -> None:
    from django.test import Client

    from clmsite.services import do_invite_member, do_make_invite_link, invite_path

    dana, _ = do_invite_member(tenant_a, "dana", "viewer")
    first = invite_path(dana.user)
    _, second = do_make_invite_link(tenant_a, dana.pk, acting_role="owner")
    assert b"This link no longer works" in Client().get(first, follow=True).content
    assert Client().get(second).status_code == 302  # the newest works
    client.force_login(alice)
    said = client.post(f"/settings/team/{dana.pk}/invite/", follow=True).content.decode()
    assert "Links made before it no longer work." in said
