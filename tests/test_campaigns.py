"""Campaigns: deterministic control groups, launch, planted effects, webhooks, CSV, uplift."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import Action, Campaign, CampaignAudit, CampaignMember, WebhookDelivery
from clmsite.tenancy import tenant_context
from customers.models import Customer, Order
from modeling.insights import refresh_insights
from modeling.models import CustomerInsight, Job, Segment, Stage
from tests.test_lifecycle import scored_shop  # noqa: F401 (fixture)
from tests.test_modeling import END


@pytest.fixture
def shop(scored_shop):  # noqa: F811
    refresh_insights(scored_shop, END, backfill_months=0)
    # The demo's customers say whether they accept email marketing; these tests count audiences
    # of everyone, so nobody here has said (the consent tests set it customer by customer).
    with tenant_context(scored_shop):
        for customer in Customer.objects.filter(attributes__has_key="accepts_email_marketing"):
            customer.attributes.pop("accepts_email_marketing")
            customer.save(update_fields=["attributes"])
    return scored_shop


def make_campaign(tenant, **fields) -> Campaign:
    defaults = {"name": "Everyone who ordered", "action": Action.WIN_BACK, "filters": {"orders_min": 1}, "control_share": 0.5, "attribution_days": 30}
    with tenant_context(tenant):
        return Campaign.objects.create(tenant=tenant, **{**defaults, **fields})


def launched_in_the_past(tenant, campaign: Campaign, days_ago: int = 40) -> Campaign:
    campaign = services.do_launch_campaign(tenant, campaign.pk)
    with tenant_context(tenant):
        Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - dt.timedelta(days=days_ago))
        campaign.refresh_from_db()
    return campaign


def plant_orders(tenant, campaign: Campaign, treatment_rate: float, control_rate: float, seed: int) -> None:
    """Orders inside the attribution window: exactly round(rate x members) members of each
    group buy (which ones, and when, drawn with ``seed``), so the planted difference does not
    depend on how the hash happened to split this campaign's audience."""
    rng = np.random.default_rng(seed)
    with tenant_context(tenant):
        orders = []
        for group, rate in (("treatment", treatment_rate), ("control", control_rate)):
            members = list(CampaignMember.objects.filter(campaign=campaign, group=group).order_by("customer_id"))
            for index in rng.permutation(len(members))[: round(rate * len(members))]:
                member = members[int(index)]
                when = campaign.launched_at + dt.timedelta(days=int(rng.integers(1, campaign.attribution_days)))
                orders.append(Order(tenant=tenant, customer_id=member.customer_id, external_id=f"after-{campaign.pk}-{member.customer_id}", ordered_at=when, amount=60))
        Order.objects.bulk_create(orders)


def test_assignment_is_deterministic_random_and_exactly_the_control_share() -> None:
    customers = list(range(1, 20001))
    control = services.control_group(7, customers, 0.1)
    assert control == services.control_group(7, list(reversed(customers)), 0.1) and len(control) == 2000
    assert control != services.control_group(8, customers, 0.1)  # another campaign, another split
    assert len(services.control_group(7, customers[:81], 0.2)) == 16  # exactly the share, on a small audience too
    # Random: the held-out customers spread over the ids as a uniform draw would.
    assert 0.45 < np.mean([c <= 10_000 for c in control]) < 0.55


def test_launch_freezes_the_audience_audits_it_and_cannot_run_twice(shop, alice) -> None:
    campaign = make_campaign(shop, control_share=0.1)
    preview = services.preview(campaign)
    launched = services.do_launch_campaign(shop, campaign.pk, user=alice, via="web")
    with tenant_context(shop):
        assert launched.state == "running" and launched.audience_size == preview["size"] == CampaignMember.objects.filter(campaign=campaign).count()
        control = set(CampaignMember.objects.filter(campaign=campaign, group="control").values_list("customer_id", flat=True))
        assert len(control) == round(0.1 * launched.audience_size)
        assert control == services.control_group(campaign.pk, list(CampaignMember.objects.filter(campaign=campaign).values_list("customer_id", flat=True)), 0.1)
        audit = CampaignAudit.objects.get(campaign=campaign, event="launch")
        assert audit.user == alice and audit.audience_size == launched.audience_size
        # New customers after launch do not join the frozen audience.
        Customer.objects.create(tenant=shop, external_id="late-comer")
    with pytest.raises(services.CampaignStateError):
        services.do_launch_campaign(shop, campaign.pk)
    with tenant_context(shop):
        assert CampaignMember.objects.filter(campaign=campaign).count() == launched.audience_size


def test_report_recovers_a_planted_effect_within_its_confidence_interval(shop) -> None:
    campaign = launched_in_the_past(shop, make_campaign(shop))
    plant_orders(shop, campaign, treatment_rate=0.35, control_rate=0.15, seed=1)
    report = services.outcomes(campaign)
    low, high = report["uplift_ci"]
    assert report["window_complete"] and report["treatment"]["members"] > 100 and report["control"]["members"] > 100
    assert low <= 0.20 <= high and low > 0, report["uplift_ci"]
    assert report["significant"] and report["verdict"].startswith("The campaign raised conversion")
    assert report["incremental_revenue"] > 0
    assert report["cumulative"][-1]["treatment"] == pytest.approx(report["treatment"]["conversion"])


def test_report_finds_no_effect_when_none_is_planted(shop) -> None:
    campaign = launched_in_the_past(shop, make_campaign(shop))
    plant_orders(shop, campaign, treatment_rate=0.2, control_rate=0.2, seed=2)
    report = services.outcomes(campaign)
    low, high = report["uplift_ci"]
    assert low < 0 < high and not report["significant"]
    assert report["verdict"].startswith("Not significant:")  # the window ended: not "yet"


def simulated_report(rng, control_rate: float, treatment_rate: float, members: tuple[int, int]) -> dict:
    """One simulated campaign: binomial conversions in each group, every converter spends 60."""
    treated, control = members
    t, c = int(rng.binomial(treated, treatment_rate)), int(rng.binomial(control, control_rate))
    return services.compare_groups(services.GroupOutcome(treated, t, 60.0 * t, 3600.0 * t), services.GroupOutcome(control, c, 60.0 * c, 3600.0 * c))


def test_the_uplift_interval_covers_the_true_uplift_in_about_95_percent_of_simulated_campaigns() -> None:
    """Planted exact counts cannot tell a right interval from a 5x too narrow one; coverage over
    400 seeded binomial campaigns can (a 5x narrower interval would cover about 30%)."""
    rng = np.random.default_rng(20260501)
    for members in ((300, 300), (400, 200)):
        reports = [simulated_report(rng, 0.10, 0.20, members) for _ in range(400)]
        covered = np.mean([r["uplift_ci"][0] <= 0.10 <= r["uplift_ci"][1] for r in reports])
        assert 0.92 <= covered <= 0.98, (members, covered)
        revenue_covered = np.mean([r["revenue_uplift_ci"][0] <= 6.0 <= r["revenue_uplift_ci"][1] for r in reports])  # 60 x 0.10
        assert 0.92 <= revenue_covered <= 0.98, (members, revenue_covered)


def test_with_no_true_effect_the_report_says_not_significant_in_about_95_percent_of_runs() -> None:
    rng = np.random.default_rng(7)
    reports = [simulated_report(rng, 0.15, 0.15, (300, 300)) for _ in range(400)]
    not_significant = np.mean([r["verdict"].startswith("Not significant yet") and not r["significant"] for r in reports])
    assert 0.92 <= not_significant <= 0.98, not_significant


def test_the_interval_is_newcombes_hybrid_score_interval() -> None:
    """Newcombe (1998), table II, method 10: 56/70 vs 48/80 and 9/10 vs 3/10."""
    assert services.newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert services.newcombe_interval(9, 10, 3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    assert services.newcombe_interval(5, 56, 0, 29) == pytest.approx((-0.0381, 0.1926), abs=5e-5)


def test_small_groups_stay_inside_100_points_and_the_verdict_warns() -> None:
    """The screenshot case: 18 customers per group, 18 vs 1 converters. The Wald interval
    went above +100%; the score interval stays inside, and the verdict says the groups are small."""
    report = services.compare_groups(services.GroupOutcome(18, 18, 1080.0, 64800.0), services.GroupOutcome(18, 1, 60.0, 3600.0))
    low, high = report["uplift_ci"]
    assert 0 < low < report["uplift"] < high <= 1.0
    assert report["significant"] and report["small_sample"]
    assert report["verdict"].startswith("The campaign raised conversion by 94.4 percentage points (95% CI +67.7 to +99.0 pp).")
    assert "Small sample: the treatment has 18 members and 18 conversions; the control has 18 members and 1 conversion." in report["verdict"]
    low_rev, high_rev = report["revenue_uplift_ci"]
    assert report["revenue_uplift_per_member"] == pytest.approx(56.6667) and low_rev < 56.6667 < high_rev
    # Many members but few conversions is small too; enough of both is not.
    assert services.compare_groups(services.GroupOutcome(500, 4, 240.0, 14400.0), services.GroupOutcome(500, 3, 180.0, 10800.0))["small_sample"]
    large = services.compare_groups(services.GroupOutcome(500, 60, 3600.0, 216000.0), services.GroupOutcome(500, 40, 2400.0, 144000.0))
    assert not large["small_sample"] and "Small sample" not in large["verdict"]


def test_without_a_control_group_no_uplift_is_reported(shop, client, alice) -> None:
    campaign = launched_in_the_past(shop, make_campaign(shop, control_share=0.0))
    report = services.outcomes(campaign)
    assert report["control"]["members"] == 0 and report["uplift"] is None and report["uplift_ci"] is None and not report["significant"]
    assert report["verdict"] == "No control group to compare with: uplift cannot be measured."
    client.force_login(alice)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "no control group" in page and "so no uplift can be measured" in page
    assert "95% CI  to" not in page and "95% CI —" not in page and not re.search(r"95% CI [+-]?\d", page)


def test_a_campaign_launched_a_moment_ago_shows_no_uplift_until_members_order(shop, client, alice) -> None:
    campaign = services.do_launch_campaign(shop, make_campaign(shop).pk)
    client.force_login(alice)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "No orders from the audience since launch yet" in page and "no orders yet" in page
    assert "<canvas id=\"uplift-chart\"" not in page and not re.search(r"95% CI [+-]?\d", page)  # no interval drawn around nothing
    listed = client.get("/campaigns/").content.decode()
    assert "no orders yet" in listed and not re.search(r"[+-]\d+\.\d pp", listed)


def test_a_due_campaign_launches_when_the_api_reads_the_shops_campaigns(shop, settings) -> None:
    from clmsite.models import Role
    from tests.conftest import api_client_for

    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded default: no broker, no beat
    due = make_campaign(shop, state=Campaign.State.SCHEDULED, scheduled_for=timezone.now() - dt.timedelta(minutes=1))
    answer = api_client_for(shop, Role.VIEWER).get(f"/api/v1/campaigns/{due.pk}/").json()
    assert answer["state"] == "running" and answer["launched_at"] is not None


def test_the_control_group_downloads_too_without_offers(shop, client, alice) -> None:
    campaign = services.do_launch_campaign(shop, make_campaign(shop, offer="10% off").pk)
    client.force_login(alice)
    assert 'data-testid="control-csv"' in client.get(f"/campaigns/{campaign.pk}/").content.decode()
    response = client.get(f"/campaigns/{campaign.pk}/audience.csv", {"group": "control"})
    assert response["Content-Disposition"] == f'attachment; filename="campaign-{campaign.pk}-control.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    with tenant_context(shop):
        held_out = set(CampaignMember.objects.filter(campaign=campaign, group="control").values_list("customer__external_id", flat=True))
    assert {row["customer_id"] for row in rows} == held_out and held_out and all(row["offer"] == "" for row in rows)


def test_completed_when_the_window_ends_and_orders_after_it_do_not_count(shop) -> None:
    campaign = launched_in_the_past(shop, make_campaign(shop, attribution_days=10), days_ago=40)
    with tenant_context(shop):
        member = CampaignMember.objects.filter(campaign=campaign, group="treatment").first()
        Order.objects.create(tenant=shop, customer_id=member.customer_id, external_id="too-late", ordered_at=campaign.launched_at + dt.timedelta(days=20), amount=99)
    assert services.outcomes(campaign)["treatment"]["converters"] == 0
    assert services.launch_due_campaigns(shop) == 0
    campaign.refresh_from_db()
    assert campaign.state == "completed"


class Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first request, then 200; records every request."""

    requests: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(500 if len(Receiver.requests) == 1 else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_posts_signed_batches_and_retries_after_a_500(shop, django_capture_on_commit_callbacks, monkeypatch, settings) -> None:
    from campaigns import webhooks

    settings.CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the receiver is on 127.0.0.1
    monkeypatch.setattr(webhooks, "BATCH_SIZE", 40)
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        campaign = make_campaign(shop, control_share=0.2, webhook_url=f"http://127.0.0.1:{server.server_port}/hooks/clm", webhook_secret="s3cret")
        with django_capture_on_commit_callbacks(execute=True):  # launch enqueues the delivery task (in-process here)
            services.do_launch_campaign(shop, campaign.pk)
    finally:
        server.shutdown()
    with tenant_context(shop):
        treated = CampaignMember.objects.filter(campaign=campaign, group="treatment").count()
        log = list(WebhookDelivery.objects.filter(campaign=campaign).order_by("batch", "attempt"))
    batches = -(-treated // 40)
    assert len(Receiver.requests) == batches + 1  # one retry
    assert [(d.batch, d.attempt, d.status_code, d.ok) for d in log[:2]] == [(1, 1, 500, False), (1, 2, 200, True)]
    assert sum(d.ok for d in log) == batches
    received = []
    for headers, body in Receiver.requests:
        expected = "sha256=" + hmac.new(b"s3cret", headers["x-clm-timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-clm-signature"], expected)
        payload = json.loads(body)
        assert payload["batches"] == batches and len(payload["customers"]) <= 40
        received.append(payload)
    delivered = {c["customer_id"] for p in received[1:] for c in p["customers"]}
    assert len(delivered) == treated


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/hooks", "http://localhost:{port}/hooks", "http://[::ffff:127.0.0.1]:{port}/hooks"])
def test_webhook_to_a_loopback_address_is_refused_and_nothing_is_sent(shop, settings, url) -> None:
    from campaigns import webhooks

    settings.CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        campaign = make_campaign(shop, control_share=0.2, webhook_url=url.format(port=server.server_port), webhook_secret="s3cret")
        services.do_launch_campaign(shop, campaign.pk)  # the on-commit delivery does not run inside the test transaction
        sleeps: list[float] = []
        result = webhooks.deliver(campaign, sleep=sleeps.append)
    finally:
        server.shutdown()
    assert Receiver.requests == [] and sleeps == []  # nothing sent, nothing retried
    assert result["delivered"] == 0 and "not an address on the public internet" in result["error"]
    with tenant_context(shop):
        log = list(WebhookDelivery.objects.filter(campaign=campaign))
    assert [(d.batch, d.attempt, d.ok, d.status_code) for d in log] == [(1, 1, False, None)]
    # The merchant is told the address is not public, not where it points inside nor the setting.
    assert log[0].error.startswith("refused: ") and "public internet" in log[0].error
    assert "resolves" not in log[0].error and "loopback" not in log[0].error and "CLM_WEBHOOK" not in log[0].error


class Redirector(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        Redirector.requests.append(self.path)
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_redirects_are_not_followed_nor_retried(shop, settings) -> None:
    from campaigns import webhooks

    settings.CLM_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    server = HTTPServer(("127.0.0.1", 0), Redirector)
    Redirector.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        campaign = make_campaign(shop, control_share=0.2, webhook_url=f"http://127.0.0.1:{server.server_port}/hooks", webhook_secret="s3cret")
        services.do_launch_campaign(shop, campaign.pk)
        result = webhooks.deliver(campaign, sleep=lambda seconds: None)
    finally:
        server.shutdown()
    with tenant_context(shop):
        log = list(WebhookDelivery.objects.filter(campaign=campaign).values_list("batch", "attempt", "status_code", "ok"))
    assert Redirector.requests == ["/hooks"] and result["delivered"] == 0
    assert log == [(1, 1, 302, False)]


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("192.168.0.10", "private"),
    ("172.16.5.4", "private"), ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),  # noqa: S104
    ("240.0.0.1", "reserved"), ("100.64.0.1", "non-global"), ("fd00::1", "private"), ("93.184.216.34", None), ("2606:4700::1111", None),
])
def test_webhook_addresses_outside_the_public_internet_are_named(address, kind) -> None:
    import ipaddress

    from campaigns.webhooks import non_public_kind

    assert non_public_kind(ipaddress.ip_address(address)) == kind


def test_webhook_secret_is_shown_to_admins_and_owners_only(shop, client, alice, bob, django_user_model) -> None:
    from clmsite.models import Role
    from clmsite.services import do_add_member
    from tests.conftest import api_client_for

    campaign = make_campaign(shop, webhook_url="https://hooks.example.test/clm", webhook_secret="the-signing-secret-42")
    for role in (Role.VIEWER, Role.ANALYST, Role.ADMIN, Role.OWNER):
        api = api_client_for(shop, role)
        detail, listing = api.get(f"/api/v1/campaigns/{campaign.pk}/").json(), api.get("/api/v1/campaigns/").json()["results"]
        sees = role in (Role.ADMIN, Role.OWNER)
        assert ("webhook_secret" in detail) is sees and all(("webhook_secret" in row) is sees for row in listing), role
        if sees:
            assert detail["webhook_secret"] == "the-signing-secret-42"
        # The URL's path may be the receiver's token (a Slack hook): below admin, where it goes only.
        assert detail["webhook_url"] == ("https://hooks.example.test/clm" if sees else "https://hooks.example.test/…"), role
    analyst = django_user_model.objects.create_user("ann", password="ann-pass-123456")
    do_add_member(shop, analyst, Role.ANALYST)
    for user, sees in ((alice, True), (bob, False), (analyst, False)):
        client.force_login(user)
        page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
        assert ("the-signing-secret-42" in page) is sees, user.username
        assert ("&lt;X-CLM-Timestamp&gt;.&lt;raw body&gt;" in page) is sees
        assert ("hooks.example.test/clm" in page) is sees and "hooks.example.test/" in page
    refused = api_client_for(shop, Role.ADMIN).post("/api/v1/campaigns/", {"name": "Creds", "action": "win_back", "webhook_url": "https://user:pw@hooks.example.test/x"}, format="json")
    assert refused.status_code == 400 and "Put no user name or password in the URL" in refused.json()["webhook_url"][0]


def test_pages_show_uplift_in_points_with_both_intervals_and_the_list_outcome(shop, client, alice) -> None:
    campaign = launched_in_the_past(shop, make_campaign(shop))
    plant_orders(shop, campaign, treatment_rate=0.35, control_rate=0.15, seed=1)
    draft = make_campaign(shop, name="Still a draft")
    report = services.outcomes(campaign)
    client.force_login(alice)
    detail = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    points = f"{report['uplift'] * 100:+.1f} pp"
    low, high = (f"{v * 100:+.1f}" for v in report["uplift_ci"])
    assert points in detail and f"95% CI {low} to {high} pp" in detail
    rev_low, rev_high = (f"{v:+,.2f}" for v in report["revenue_uplift_ci"])
    assert f"95% CI {rev_low} to {rev_high}" in detail
    visible = re.sub(r"<script.*?</script>", "", detail, flags=re.S)  # the charts' JSON holds fractions
    assert f"{report['uplift']:.3f}" not in visible  # no raw fraction
    listing = client.get("/campaigns/").content.decode()
    assert f'data-testid="list-uplift" data-label="Conversion uplift">{points}' in listing
    assert report["verdict"] in listing and report["verdict"].startswith("The campaign raised conversion")
    assert draft.name in listing and "not launched" in listing


def test_outcomes_of_overlapping_campaigns_count_each_window_once_and_the_list_reads_them_together(shop, client, alice) -> None:
    """Two campaigns over the same customers, launched 40 and 20 days ago: each member's
    revenue is its own orders inside its own campaign's window (checked against a count from
    the orders), and the list page measures every campaign in the same few queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = launched_in_the_past(shop, make_campaign(shop, name="First"), days_ago=40)
    client.force_login(alice)
    client.get("/campaigns/")  # the first page of a session also reads the session and the memberships
    with CaptureQueriesContext(connection) as one:
        assert client.get("/campaigns/").status_code == 200
    second = launched_in_the_past(shop, make_campaign(shop, name="Second"), days_ago=20)
    plant_orders(shop, first, treatment_rate=0.3, control_rate=0.1, seed=2)
    with CaptureQueriesContext(connection) as two:
        assert client.get("/campaigns/").status_code == 200
    assert len(two) == len(one)
    with tenant_context(shop):
        measured = services.group_outcomes([first, second])
        for campaign in (first, second):
            groups = dict(CampaignMember.objects.filter(campaign=campaign).values_list("customer_id", "group"))
            end = min(campaign.attribution_ends, timezone.now())
            spent: dict[int, float] = {}
            for customer, amount in Order.objects.filter(customer_id__in=groups, ordered_at__gt=campaign.launched_at, ordered_at__lte=end).exclude(
                status__in=("cancelled", "refunded")).values_list("customer_id", "amount"):
                spent[customer] = spent.get(customer, 0.0) + float(amount)
            for name in ("treatment", "control"):
                ids = [c for c, g in groups.items() if g == name]
                got = measured[campaign.pk][name]
                assert got.members == len(ids) and got.converters == sum(1 for c in ids if c in spent)
                assert got.revenue == pytest.approx(sum(spent.get(c, 0.0) for c in ids))
            assert services.outcomes(campaign)["treatment"] == measured[campaign.pk]["treatment"].as_dict()
    assert measured[first.pk]["treatment"].converters > measured[second.pk]["treatment"].converters  # orders planted in the first window


def test_audience_csv_escapes_formula_cells(shop) -> None:
    # "\t1" and "\r1" are numbers to float() (it strips whitespace): escaped all the same.
    hostile = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@import", "\tTabbed", "\rReturn", "\t1", "\r1", "\t-1", "-1\n=1+1", "-inf"]
    with tenant_context(shop):
        customers = list(Customer.objects.filter(order_count__gt=0).order_by("pk")[: len(hostile) + 1])
        for customer, name in zip(customers, hostile, strict=False):
            customer.name = name
            customer.email = name + "@example.test"  # another column: email
            customer.save(update_fields=["name", "email"])
        plain = customers[len(hostile)]
        plain.name = "-5"  # a plain negative number stays a number
        plain.save(update_fields=["name"])
    campaign = make_campaign(shop, control_share=0.0, filters={"orders_min": 1}, offer='=HYPERLINK("http://evil.test","10% off")')
    services.do_launch_campaign(shop, campaign.pk)
    out = io.StringIO()
    count = services.write_audience_csv(campaign, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) > len(hostile)
    by_id = {row["customer_id"]: row for row in rows}
    for customer, name in zip(customers, hostile, strict=False):
        assert by_id[customer.external_id]["name"] == "'" + name
        assert by_id[customer.external_id]["email"] == "'" + name + "@example.test"
    assert by_id[plain.external_id]["name"] == "-5"
    assert {row["offer"] for row in rows} == {"'" + campaign.offer}
    assert {(row["action"], row["action_label"]) for row in rows} == {("win_back", "Win-back")}
    assert all(row["stage_label"] == dict(Stage.choices)[row["stage"]] for row in rows)


@pytest.mark.parametrize(("cell", "written"), [
    ("\t1", "'\t1"), ("\r1", "'\r1"), ("\t-5", "'\t-5"), ("-1 ", "'-1 "), ("-1_000", "'-1_000"), ("-nan", "'-nan"), ("+5", "'+5"),
    ("-5", "-5"), ("-2.50", "-2.50"), ("-1e3", "-1e3"), ("12", "12"), ("", ""), (None, ""), ("a=b", "a=b"),
])
def test_spreadsheet_safe_leaves_only_plain_negative_numbers_unescaped(cell, written) -> None:
    from modeling.exports import spreadsheet_safe

    assert spreadsheet_safe(cell) == written


def test_api_roles_drafts_launch_report_and_audience(shop) -> None:
    from clmsite.models import Role
    from tests.conftest import api_client_for

    viewer, analyst, admin = (api_client_for(shop, role) for role in (Role.VIEWER, Role.ANALYST, Role.ADMIN))
    body = {"name": "Win back the lapsed", "action": "win_back", "filters": {"stages": ["lapsed"]}, "control_share": 0.2}
    assert viewer.post("/api/v1/campaigns/", body, format="json").status_code == 403
    assert analyst.post("/api/v1/campaigns/", {**body, "control_share": 0.9}, format="json").status_code == 400
    not_writable = analyst.post("/api/v1/campaigns/", {**body, "tenant": 999, "state": "running"}, format="json")
    assert not_writable.status_code == 400 and sorted(not_writable.json()) == ["state", "tenant"]
    created = analyst.post("/api/v1/campaigns/", body, format="json").json()
    preview = analyst.get(f"/api/v1/campaigns/{created['id']}/report/").json()
    with tenant_context(shop):
        lapsed = Customer.objects.filter(insight__stage="lapsed").count()
    assert preview == {"launched": False, "preview": preview["preview"]} and preview["preview"]["size"] == lapsed
    assert analyst.post(f"/api/v1/campaigns/{created['id']}/launch/").status_code == 403  # analysts draft, admins launch
    launched = admin.post(f"/api/v1/campaigns/{created['id']}/launch/")
    assert launched.status_code == 200 and launched.json()["state"] == "running" and launched.json()["audience_size"] == lapsed
    assert admin.post(f"/api/v1/campaigns/{created['id']}/launch/").status_code == 409  # once
    assert analyst.patch(f"/api/v1/campaigns/{created['id']}/", {"name": "renamed"}, format="json").status_code == 409
    report = viewer.get(f"/api/v1/campaigns/{created['id']}/report/").json()
    assert report["launched"] and report["treatment"]["members"] + report["control"]["members"] == lapsed
    audience = viewer.get(f"/api/v1/campaigns/{created['id']}/audience/").json()
    assert audience["count"] == report["treatment"]["members"] and audience["results"][0]["action"] == "win_back"
    first = audience["results"][0]
    assert viewer.get(f"/api/v1/customers/{first['customer']}/").json()["external_id"] == first["customer_id"]  # both ids, each as named elsewhere
    control = viewer.get(f"/api/v1/campaigns/{created['id']}/audience/", {"group": "control"}).json()
    assert control["count"] == report["control"]["members"] and all(row["offer"] == "" and row["offer_amount"] is None for row in control["results"])
    assert not {row["customer"] for row in control["results"]} & {row["customer"] for row in audience["results"]}
    assert viewer.get(f"/api/v1/campaigns/{created['id']}/audience/", {"group": "everyone"}).json() == {"group": ['"everyone" is not one of: treatment, control.']}
    assert viewer.get(f"/api/v1/campaigns/{created['id']}/audience/", {"group": "CONTROL"}).json()["count"] == control["count"]  # a choice without case, as everywhere
    with tenant_context(shop):
        audit = CampaignAudit.objects.get(campaign_id=created["id"], event="launch")
        assert audit.via == "api" and audit.audience_size == lapsed
    # Money is a decimal string to the cent everywhere, computed figures as stored amounts (session 24: some were JSON numbers).
    cents = re.compile(r"-?\d+\.\d\d")
    assert cents.fullmatch(preview["preview"]["value_at_risk"]) and cents.fullmatch(preview["preview"]["predicted_value"])
    assert cents.fullmatch(launched.json()["value_at_risk"])
    for group in ("treatment", "control"):
        assert cents.fullmatch(report[group]["revenue"]) and cents.fullmatch(report[group]["revenue_per_member"])
    assert all(value is None or cents.fullmatch(value) for value in (report["incremental_revenue"], report["revenue_uplift_per_member"]))
    assert cents.fullmatch(viewer.get("/api/v1/insights/", {"page_size": 1}).json()["results"][0]["priority"])
    segments = viewer.get("/api/v1/segments/", {"page_size": 100}).json()["results"]
    assert segments and all(s["stats"]["mean_value"] is None or cents.fullmatch(s["stats"]["mean_value"]) for s in segments if "mean_value" in s["stats"])


def test_suggested_campaigns_come_from_recommended_actions_and_become_drafts(shop, alice) -> None:
    suggestions = services.suggested_campaigns(shop)
    assert suggestions and suggestions == sorted(suggestions, key=lambda s: -s["value_at_risk"])
    top = suggestions[0]
    campaign, created = services.do_draft_from_suggestion(shop, top["action"], user=alice)
    assert created and campaign.state == "draft" and campaign.filters == {"actions": [top["action"]]}
    assert services.preview(campaign)["size"] == top["customers"]
    again, created = services.do_draft_from_suggestion(shop, top["action"], user=alice)  # a second click opens the same draft
    assert again.pk == campaign.pk and not created
    # Once launched, the suggestion says how many of its customers a running campaign has:
    # treated or held out, contacting them again would spoil that campaign's measurement.
    assert top["in_running"] == 0
    launched = services.do_launch_campaign(shop, campaign.pk)
    after = next(s for s in services.suggested_campaigns(shop) if s["action"] == top["action"])
    assert after["in_running"] == launched.audience_size == top["customers"]
    # The row counts what its draft would target, as the draft's preview does (a QA round saw
    # 1,893 customers on the row and 340 in the draft): here nobody is left.
    assert (after["customers"], after["value_at_risk"], after["with_action"]) == (0, 0.0, top["with_action"])
    with pytest.raises(services.CampaignStateError, match=r"can be reached: \d+ in a running campaign already"):
        services.do_draft_from_suggestion(shop, top["action"], user=alice)


def test_a_suggestion_campaign_offers_each_customer_their_own_capped_offer(shop, alice) -> None:
    """Win-back spans rules with different caps (50 for valuable lapsed customers, 10% of
    predicted value up to 20 for the others): nobody worth 3 is offered 50."""
    campaign, _ = services.do_draft_from_suggestion(shop, Action.WIN_BACK, user=alice)
    assert campaign.offer == ""
    services.do_launch_campaign(shop, campaign.pk)
    with tenant_context(shop):
        own = {i.customer.external_id: i.action_offer for i in CustomerInsight.objects.filter(action=Action.WIN_BACK).select_related("customer")}
        records = [services.member_record(campaign, m) for m in services.group_rows(campaign)]
    assert records and len({r["offer"] for r in records}) > 1
    for record in records:
        expected = own[record["customer_id"]]
        assert record["offer_amount"] == (None if expected is None else str(expected))
        assert record["offer"] == ("" if expected is None else f"up to {shop.currency} {expected:,.2f}")
    out = io.StringIO()
    services.write_audience_csv(campaign, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {row["customer_id"]: row["offer_amount"] for row in rows} == {r["customer_id"]: r["offer_amount"] or "" for r in records}


def test_uplift_model_finds_persuadable_customers_on_held_out_campaigns(shop) -> None:
    """Two completed campaigns where only repeat buyers respond (+50 points) and others do
    not: the T-learner, validated on the later campaign, ranks persuadables first."""
    from campaigns.uplift import fit_uplift, persuadable_customer_ids

    for seed in (11, 12):
        campaign = launched_in_the_past(shop, make_campaign(shop, name=f"Win-back {seed}", control_share=0.5), days_ago=60 if seed == 11 else 40)
        rng = np.random.default_rng(seed)
        with tenant_context(shop):
            orders = []
            for member in CampaignMember.objects.filter(campaign=campaign).select_related("customer"):
                persuadable = member.customer.order_count >= 3
                rate = 0.05 + (0.5 if persuadable and member.group == "treatment" else 0.0)
                if rng.random() < rate:
                    orders.append(Order(tenant=shop, customer_id=member.customer_id, external_id=f"u-{campaign.pk}-{member.customer_id}",
                                        ordered_at=campaign.launched_at + dt.timedelta(days=3), amount=40))
            Order.objects.bulk_create(orders)
            Campaign.objects.filter(pk=campaign.pk).update(state="completed")
    model = fit_uplift(shop, Action.WIN_BACK)
    assert model is not None and model.validation["scheme"].startswith("held-out campaign")
    assert model.validation["uplift_top30"] > model.validation["uplift_all"] + 0.05, model.validation
    persuadable = set(persuadable_customer_ids(shop, Action.WIN_BACK))
    with tenant_context(shop):
        repeat = set(Customer.objects.filter(order_count__gte=3).values_list("pk", flat=True))
        assert len(persuadable & repeat) / max(len(persuadable), 1) > 0.7
        campaign = make_campaign(shop, name="Persuadables", persuadable_only=True)
    assert 0 < services.preview(campaign)["size"] < services.preview(make_campaign(shop, name="All"))["size"]


def test_a_changed_playbook_rule_recomputes_next_actions_right_away(shop, client, alice, django_capture_on_commit_callbacks) -> None:
    from campaigns.playbook import ensure_default_playbook

    def percent(share):  # the form takes shares in percent, as the page shows them
        return None if share is None else share * 100

    with tenant_context(shop):
        busiest = max(ensure_default_playbook(shop), key=lambda rule: CustomerInsight.objects.filter(rule_name=rule.name).count())
        assert CustomerInsight.objects.filter(rule_name=busiest.name).exists()
        kept = (list(CustomerInsight.objects.order_by("customer_id").values_list("customer_id", "stage", "stage_since", "learned_segment_id", "rfm_segment_id")),
                sorted(Segment.objects.values_list("pk", "name", "updated_at")))
    client.force_login(alice)
    form = {field: value for field, value in {
        "position": busiest.position, "name": busiest.name, "action": busiest.action, "channel": busiest.channel,
        "stages": busiest.stages, "tiers": busiest.tiers, "churn_min": percent(busiest.churn_min), "churn_max": percent(busiest.churn_max),
        "sentiment_max": busiest.sentiment_max, "value_at_risk_min": busiest.value_at_risk_min, "days_since_min": busiest.days_since_min,
        "days_since_max": busiest.days_since_max, "offer_pct": percent(busiest.offer_pct), "offer_cap": busiest.offer_cap,
        "spent_top_share": percent(busiest.spent_top_share), "orders_min": busiest.orders_min}.items() if value not in (None, [])}
    with django_capture_on_commit_callbacks(execute=True):
        saved = client.post(f"/playbook/{busiest.pk}/", form, follow=True)  # "enabled" left out: disabled
    assert "being recomputed with it now" in saved.content.decode()
    with tenant_context(shop):
        assert CustomerInsight.objects.filter(rule_name=busiest.name).count() == 0  # its customers went to the next matching rules
        job = Job.objects.filter(kind=Job.Kind.INSIGHTS).latest("created_at")
        assert job.state == Job.State.SUCCEEDED and job.params["actions_only"] and job.message.startswith("Next actions recomputed as of")
        # Only the actions: the stages and the segments (learned on the encoder, named by their members) are as they were.
        assert (list(CustomerInsight.objects.order_by("customer_id").values_list("customer_id", "stage", "stage_since", "learned_segment_id", "rfm_segment_id")),
                sorted(Segment.objects.values_list("pk", "name", "updated_at"))) == kept


def test_playbook_counts_say_they_are_updating_while_the_actions_are_recomputed(shop, client, alice) -> None:
    client.force_login(alice)
    assert 'data-testid="counts-updating"' not in client.get("/playbook/").content.decode()
    with tenant_context(shop):
        job = Job.objects.create(kind=Job.Kind.INSIGHTS, state=Job.State.RUNNING, message="Recomputing stages")
    page = client.get("/playbook/").content.decode()
    assert "as before the change, updating…" in page and f'data-job="{job.pk}"' in page
    Job.unscoped.filter(pk=job.pk).update(state=Job.State.SUCCEEDED)
    assert 'data-testid="counts-updating"' not in client.get("/playbook/").content.decode()


def test_a_customer_who_declined_the_channels_marketing_is_left_out_and_the_preview_says_so(shop, client, alice) -> None:
    email = make_campaign(shop, control_share=0.2)
    everyone = services.preview(email)["size"]
    with tenant_context(shop):
        ids = list(services.audience(email).values_list("customer_id", flat=True)[:5])
        for pk, said in zip(ids, ["no", "No", "false", "yes", ""], strict=True):
            customer = Customer.objects.get(pk=pk)
            customer.attributes = {**customer.attributes, "accepts_email_marketing": said, "accepts_sms_marketing": "no"}
            customer.save()

    preview = services.preview(email)

    assert (preview["size"], preview["left_out_declined"], preview["left_out_running"]) == (everyone - 3, 3, 0)
    assert "3 customers are left out: they declined Email marketing (accepts_email_marketing is no)." in preview["note"]
    assert services.preview(make_campaign(shop, name="By phone", channel="phone"))["size"] == everyone  # a call asks no marketing consent
    assert services.preview(make_campaign(shop, name="By SMS", channel="sms"))["size"] == everyone - 5
    launched = services.do_launch_campaign(shop, email.pk)
    with tenant_context(shop):
        assert launched.audience_size == everyone - 3 and not CampaignMember.objects.filter(campaign=email, customer_id__in=ids[:3]).exists()
    client.force_login(alice)
    rows = list(csv.DictReader(io.StringIO(b"".join(client.get("/priorities/?format=csv").streaming_content).decode("utf-8-sig"))))
    consent = {row["customer_id"]: row["marketing_consent"] for row in rows}
    with tenant_context(shop):
        declined = Customer.objects.get(pk=ids[0])
    assert consent.get(declined.external_id, "no") == "no" and all(value in ("", "no", "No", "false", "yes") for value in consent.values())
    with tenant_context(shop):
        for customer in Customer.objects.all():
            customer.attributes = {**customer.attributes, "accepts_email_marketing": "no"}
            customer.save()
    page = client.get("/priorities/").content.decode()
    assert 'data-testid="declined-channel"' in page and "declined Email marketing" in page
