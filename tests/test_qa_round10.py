"""Merchant QA walk, round 10: a launched campaign keeps saying whom it was sent to after its
saved segment is edited or deleted."""

from __future__ import annotations

import pytest

from campaigns import services
from campaigns.models import Action, Campaign
from clmsite.tenancy import tenant_context
from modeling.insights import refresh_insights
from modeling.models import Segment
from tests.conftest import api_client_for
from tests.test_lifecycle import scored_shop  # noqa: F401 (fixture)
from tests.test_modeling import END

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(scored_shop):  # noqa: F811
    refresh_insights(scored_shop, END, backfill_months=0)
    return scored_shop


def test_a_launched_campaign_describes_its_segment_as_at_launch_after_the_segment_is_deleted(shop, client, alice) -> None:
    with tenant_context(shop):
        segment = Segment.objects.create(tenant=shop, kind=Segment.Kind.SAVED, key="repeat-buyers", name="Repeat buyers", filters={"orders_min": 2})
        campaign = Campaign.objects.create(tenant=shop, name="Thanks", action=Action.NURTURE, segment=segment, control_share=0.1)
    launched = services.do_launch_campaign(shop, campaign.pk)
    assert launched.audience_size > 0
    client.force_login(alice)

    # When the segment is edited, the page says so and still shows the rule it was sent with.
    with tenant_context(shop):
        Segment.objects.filter(pk=segment.pk).update(filters={"orders_min": 5})
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "segment “Repeat buyers” as at launch (" in page and ": <strong>2</strong>" in page and ", changed since" in page

    # When it is deleted (allowed once no draft uses it), the page and the API still name it.
    response = client.post(f"/segments/{segment.pk}/delete/")
    assert response.status_code == 302
    with tenant_context(shop):
        assert not Segment.objects.filter(pk=segment.pk).exists()
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "segment “Repeat buyers” as at launch (" in page and ", deleted since" in page and "every scored customer" not in page
    body = api_client_for(shop).get(f"/api/v1/campaigns/{campaign.pk}/").json()
    assert body["segment"] is None
    assert body["segment_at_launch"] == {"id": segment.pk, "name": "Repeat buyers", "kind": "saved", "filters": {"orders_min": 2}}


def test_a_draft_has_no_segment_at_launch(shop) -> None:
    with tenant_context(shop):
        segment = Segment.objects.create(tenant=shop, kind=Segment.Kind.SAVED, key="all", name="All", filters={"orders_min": 1})
        campaign = Campaign.objects.create(tenant=shop, name="Draft", action=Action.NURTURE, segment=segment)

    body = api_client_for(shop).get(f"/api/v1/campaigns/{campaign.pk}/").json()

    assert body["segment"] == segment.pk and body["segment_at_launch"] == {}


def test_an_order_soon_after_coming_back_keeps_the_customer_reactivated() -> None:
    """Back after a lapse on the 20th, again on the 27th: still reactivated, since the 20th (the
    stage looked only at the last gap, 7 days, and said active)."""
    import datetime as dt

    from modeling import lifecycle
    from modeling.models import Stage
    from tests.test_lifecycle import AS_OF, _history

    rows = [(c, str(AS_OF - dt.timedelta(days=d)), 50.0) for c in range(100, 130) for d in (10, 40, 70, 100)]
    rows += [(1, "2023-06-01", 80.0), (1, "2025-06-20", 90.0), (1, "2025-06-27", 40.0)]
    rows += [(2, "2023-06-01", 80.0), (2, "2025-06-27", 40.0)]  # came back once: as before
    history = _history(rows)
    thresholds = lifecycle.derive_thresholds(history, AS_OF)

    stages = lifecycle.stages_as_of(history, AS_OF, thresholds)

    assert stages.at[1, "stage"] == Stage.REACTIVATED and stages.at[1, "since"] == dt.date(2025, 6, 20)
    assert stages.at[1, "reason"] == "reactivated: came back 10 days ago after 750 days away"
    assert stages.at[2, "stage"] == Stage.REACTIVATED and stages.at[2, "reason"] == "reactivated: came back 3 days ago after 757 days away"
    # Past the window after the return, the customer is active from the day after it.
    later = AS_OF + dt.timedelta(days=thresholds.repurchase_window_days + 5)
    after = lifecycle.stages_as_of(history, later, lifecycle.derive_thresholds(history, later))
    assert after.at[1, "stage"] in {Stage.ACTIVE, Stage.AT_RISK, Stage.LOYAL}
    # No customer who ever came back: no returns at all is fine too.
    quiet = _history([(c, str(AS_OF - dt.timedelta(days=d)), 50.0) for c in range(100, 130) for d in (10, 40, 70)])
    assert set(lifecycle.stages_as_of(quiet, AS_OF, lifecycle.derive_thresholds(quiet, AS_OF))["stage"]) == {Stage.ACTIVE}


def test_churn_is_typed_in_percent_in_the_segment_and_campaign_forms_as_the_pages_show_it(tenant_a, client, alice) -> None:
    from tests.test_qa_round5 import insights

    insights(tenant_a, 4)  # churn 50% each
    client.force_login(alice)
    assert client.get("/segments/preview/", {"churn_min": "50"}).json()["size"] == 4
    assert client.get("/segments/preview/", {"churn_min": "60"}).json()["size"] == 0
    assert client.get("/campaigns/preview/", {"action": "win_back", "churn_min": "50", "skip_running": "on"}).json()["size"] == 4

    client.post("/segments/", {"name": "Half at risk", "churn_min": "50"})
    with tenant_context(tenant_a):
        segment = Segment.objects.get(kind=Segment.Kind.SAVED)
    assert segment.filters == {"churn_min": 0.5}  # stored as the API takes it
    page = client.get(f"/segments/{segment.pk}/").content.decode()
    assert "churn risk at least" in page and "50%" in page
    edit = client.get(f"/segments/{segment.pk}/edit/").content.decode()
    assert 'name="churn_min" value="50"' in edit


def test_the_customers_behind_a_transition_cell_are_counted_as_the_cell_counts_them(tenant_a, client, alice) -> None:
    import datetime as dt

    from customers.models import Customer
    from modeling.models import StageSnapshot

    start, end = dt.date(2025, 5, 31), dt.date(2025, 6, 30)
    with tenant_context(tenant_a):
        for i in range(53):
            customer = Customer.objects.create(external_id=f"m{i}")
            StageSnapshot.objects.create(customer=customer, as_of=start, stage="active", since=start, reason="r")
            StageSnapshot.objects.create(customer=customer, as_of=end, stage="at_risk", since=end, reason="r")
    client.force_login(alice)

    page = client.get("/lifecycle/moves/", {"start": start, "end": end, "from": "active", "to": "at_risk"}).content.decode()

    assert '<p class="muted" data-testid="moves-count">53 customers</p>' in page


def test_sentiment_charts_mark_the_month_in_progress(tenant_a, client, alice) -> None:
    import datetime as dt

    from django.utils import timezone

    from customers.models import Customer, Review
    from modeling.insights import dashboard_overview

    now = timezone.now()
    with tenant_context(tenant_a):
        customer = Customer.objects.create(external_id="r1")
        for i, at in enumerate((now - dt.timedelta(days=70), now)):
            Review.objects.create(customer=customer, external_id=f"rv{i}", rating=5, text="Great", created_at=at, sentiment="positive", sentiment_score=0.9)
        months = dashboard_overview(tenant_a)["chart"]["sentiment"]
    assert [m["partial"] for m in months] == [False, True]
    client.force_login(alice)
    page = client.get("/reviews/").content.decode()
    assert '"partial": true' in page and "data.monthly.map(CLM.monthLabel)" in page
    from django.contrib.staticfiles import finders

    with open(finders.find("js/app.js"), encoding="utf-8") as script:  # the label the charts draw for a partial month
        assert 'return row.partial ? row.month + " (so far)" : row.month;' in script.read()


def test_the_shop_role_decides_retraining_and_only_an_owner_revokes_an_owner_key(tenant_a, client, alice, django_user_model) -> None:
    from clmsite.models import ApiKey, Role
    from clmsite.services import do_add_member, do_create_api_key

    staff_viewer = django_user_model.objects.create_user("sv", password="sv-pass-12345", is_staff=True)
    do_add_member(tenant_a, staff_viewer, Role.VIEWER)
    client.force_login(staff_viewer)
    assert client.post("/models/retrain/").status_code == 404  # Django's is_staff is no role in a shop
    from modeling.models import Job
    with tenant_context(tenant_a):
        assert not Job.objects.exists()

    owner_key, _ = do_create_api_key(tenant_a, role=Role.OWNER, name="owner sync")
    admin = django_user_model.objects.create_user("adm", password="adm-pass-12345")
    do_add_member(tenant_a, admin, Role.ADMIN)
    client.force_login(admin)
    page = client.get("/settings/api-keys/").content.decode()
    assert "an owner revokes it" in page
    response = client.post(f"/settings/api-keys/{owner_key.pk}/revoke/", follow=True)
    assert "Only an owner can revoke an owner key" in response.content.decode()
    with tenant_context(tenant_a):
        assert ApiKey.objects.get(pk=owner_key.pk).revoked_at is None
    client.force_login(alice)  # the owner
    client.post(f"/settings/api-keys/{owner_key.pk}/revoke/")
    with tenant_context(tenant_a):
        assert ApiKey.objects.get(pk=owner_key.pk).revoked_at is not None


@pytest.mark.parametrize("proxies", [0, 1])
def test_the_login_lockout_tells_clients_behind_a_proxy_apart_and_ignores_what_they_forge(client, alice, settings, proxies) -> None:
    settings.CLM_TRUSTED_PROXIES = proxies

    def login(password: str, seen_by_proxy: str, forged: str = "") -> int:
        chain = ", ".join(filter(None, [forged, seen_by_proxy]))
        return client.post("/login/", {"username": "alice", "password": password}, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=chain).status_code

    for i in range(6):  # an attacker at 203.0.113.9, forging a new address each time
        login("wrong-password", "203.0.113.9", forged=f"198.51.100.{i}")
    assert login("alice-pass-123", "203.0.113.9", forged="198.51.100.99") == 429
    # Behind the proxy, alice at another address still signs in; without trusting the proxy
    # (the default) every request is the proxy's address, so she is locked out too.
    assert login("alice-pass-123", "192.0.2.7") == (302 if proxies else 429)


def test_a_new_shop_is_told_its_next_step_and_that_revenue_adds_other_currencies_at_face_value(tenant_a, client, alice, tmp_path,
                                                                                             django_capture_on_commit_callbacks) -> None:
    from customers.services.imports import import_csv
    from tests.conftest import write_csv

    client.force_login(alice)
    empty = client.get("/").content.decode()
    assert 'data-testid="next-step"' in empty and "Imports page" in empty
    orders = "customer_id,order_id,ordered_at,amount,currency\nc1,o1,2025-01-05,10.00,USD\nc1,o2,2025-02-05,20.00,EUR\nc2,o3,2025-02-06,5.00,GBP\n"
    with django_capture_on_commit_callbacks(execute=True):  # the import's bump of the cached aggregates
        assert import_csv(tenant_a, "orders", write_csv(tmp_path / "o.csv", orders)).ok
    page = client.get("/").content.decode()
    assert "Retrain now" in page and "Models page" in page  # alice owns the shop: she can train
    assert tenant_a.currency == "USD" and "includes orders in EUR, GBP at face value" in page


def test_a_command_line_import_is_listed_as_such_and_a_non_ascii_mailbox_is_named(tenant_a, client, alice, tmp_path) -> None:
    from django.core.management import call_command

    from customers.services.imports import import_csv
    from tests.conftest import write_csv

    call_command("import_data", "--tenant", tenant_a.slug, "--kind", "customers", write_csv(tmp_path / "c.csv", "customer_id\nc1\n"))
    client.force_login(alice)
    assert '<td data-label="By">command line</td>' in client.get("/imports/").content.decode()
    refused = import_csv(tenant_a, "customers", write_csv(tmp_path / "e.csv", "customer_id,email\nc2,zoë@example.com\n"))
    assert "has letters outside ASCII before the @, which is not supported" in refused.errors[0].message
