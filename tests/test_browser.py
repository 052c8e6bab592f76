"""Headless Chromium (Debian's, driven by Playwright) against a live server: a merchant
logs in, uploads a CSV, watches it import, and finds the customer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ORDERS_A

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (installed by .ci/run)"),
]


@pytest.fixture
def page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls made around
    # it are plain synchronous test set-up and teardown, not async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # A script or handler the Content-Security-Policy refused fails every browser test.
        page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text else None)
        yield page
        browser.close()
        # The ORM calls made while Playwright ran used a connection of their own (Django keeps
        # connections per context, and Playwright's sync API switches greenlets); close it here,
        # or it outlives the test and blocks dropping the test database at the end of the run.
        from django.db import connections

        connections.close_all()
        assert errors == [], f"JavaScript errors: {errors}"


def login(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def follow(page, selector: str) -> None:
    """Click a link and wait for the page it opens to load: a click returns once the
    navigation has started, and reads that do not wait (content, query_selector_all,
    evaluate) could otherwise see a half-parsed page."""
    page.click(selector)
    page.wait_for_load_state()


def test_merchant_uploads_a_csv_and_sees_the_customer(live_server, page, alice, tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text(ORDERS_A)

    login(page, live_server, "alice", "alice-pass-123")
    page.click("text=Imports")
    # First a check: it counts what importing would do and writes nothing.
    page.select_option("#kind", "orders")
    page.set_input_files("#file", str(csv_path))
    page.click("[data-testid=check-only]")
    page.wait_for_selector("[data-testid=import-state]:has-text('Succeeded')", timeout=30_000)
    assert "would make 3 new" in page.inner_text("[data-testid=import-message]") and page.is_visible("[data-testid=dry-run-note]")
    page.screenshot(path=str(SCREENSHOTS / "import-check.png"), full_page=True)
    follow(page, "[data-testid=import-checked]")  # then the file as checked, without choosing it again
    page.wait_for_selector("[data-testid=import-state]:has-text('Succeeded')", timeout=30_000)
    assert "3 new" in page.inner_text("[data-testid=import-message]")
    page.screenshot(path=str(SCREENSHOTS / "import.png"), full_page=True)

    page.click("text=Customers")
    page.fill("input[name=q]", "c1")
    page.press("input[name=q]", "Enter")
    follow(page, "[data-testid=customer-table] >> text=c1")
    assert "Trail shoe" in page.content()
    page.goto(f"{live_server.url}/")
    page.wait_for_selector("#revenue-chart")
    assert page.evaluate("() => !!Chart.getChart('revenue-chart')")
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)


def test_a_shopify_orders_export_uploads_as_it_comes(live_server, page, alice):
    login(page, live_server, "alice", "alice-pass-123")
    page.goto(f"{live_server.url}/imports/")
    assert page.is_visible("[data-testid=shopify-hint]")
    page.select_option("#kind", "orders")
    page.set_input_files("#file", str(Path(__file__).parent / "fixtures" / "shopify_orders_export.csv"))
    page.click("[data-testid=upload-form] button[type=submit]")
    page.wait_for_selector("[data-testid=import-state]:has-text('Succeeded')", timeout=30_000)
    assert "Read as a Shopify orders export" in page.inner_text("[data-testid=import-message]")

    page.goto(f"{live_server.url}/customers/?q=alice")
    follow(page, "[data-testid=customer-table] >> text=alice@example.com")
    assert "#1001" in page.content() and "52.00" in page.content()


def test_bad_upload_shows_row_errors_in_the_browser(live_server, page, alice, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,order_id,ordered_at,amount\nc1,o1,2024-01-01,1\nc2,o2,not-a-date,2\n")

    login(page, live_server, "alice", "alice-pass-123")
    page.goto(f"{live_server.url}/imports/")
    page.select_option("#kind", "orders")
    page.set_input_files("#file", str(bad))
    page.click("[data-testid=upload-form] button[type=submit]")
    page.wait_for_selector("[data-testid=import-errors]", timeout=30_000)

    table = page.inner_text("[data-testid=import-errors]")
    assert "3" in table and "ordered_at" in table and "not-a-date" in table


def test_models_and_customer_prediction_pages(live_server, page, alice, tenant_a, settings, tmp_path):
    from clmsite.tenancy import tenant_context
    from modeling import registry
    from modeling.models import Prediction
    from tests.test_modeling import END, scored_demo

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    scored_demo(tenant_a, settings, tmp_path, customers=300, seed=4)
    version = registry.active_versions(tenant_a)["purchase"]
    with tenant_context(tenant_a):
        customer = Prediction.objects.filter(as_of=END).exclude(explanation=[]).order_by("-predicted_value").first().customer

    login(page, live_server, "alice", "alice-pass-123")
    follow(page, "text=Models")
    assert "Serving now" in page.content()
    from clmsite.templatetags.clm import family_label

    page.click(f"text={family_label(version.family)} v{version.number}")  # families by name and the shop's own number: "Boosted trees v2"
    page.wait_for_selector("#calibration-chart")
    assert page.evaluate("() => !!Chart.getChart('calibration-chart') && !!Chart.getChart('gain-chart')")
    page.screenshot(path=str(SCREENSHOTS / "model-version.png"), full_page=True)

    page.goto(f"{live_server.url}/customers/{customer.pk}/")
    assert page.inner_text("[data-testid=purchase-probability]").endswith("%")
    assert len(page.query_selector_all("[data-testid=factors] li")) >= 1
    with tenant_context(tenant_a):
        value_factors = Prediction.objects.get(customer=customer, as_of=END).value_explanation
    assert value_factors and value_factors[0]["text"] in page.inner_text("[data-testid=value-factors]")
    assert "orders" in page.inner_text("[data-testid=profile-text]")
    page.screenshot(path=str(SCREENSHOTS / "customer.png"))


def test_lifecycle_segments_priorities_and_playbook_pages(live_server, page, alice, tenant_a, settings, tmp_path):
    from clmsite.tenancy import tenant_context
    from modeling.models import CustomerInsight
    from tests.test_modeling import scored_demo

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    scored_demo(tenant_a, settings, tmp_path, customers=300, seed=5, insights_months=6)
    with tenant_context(tenant_a):
        top = CustomerInsight.objects.exclude(action="no_action").order_by("-priority").first()

    login(page, live_server, "alice", "alice-pass-123")
    page.wait_for_selector("#dash-funnel")
    assert page.evaluate("() => ['dash-funnel', 'dash-stages', 'dash-segments', 'dash-sentiment'].every(id => !!Chart.getChart(id))")
    # Every chart says what it counts: a titled value axis.
    titles = page.evaluate("() => ['dash-funnel', 'dash-stages', 'dash-segments', 'dash-sentiment', 'revenue-chart'].map(id => "
                           "Object.values(Chart.getChart(id).options.scales).filter(a => a.display !== false && a.title && a.title.display).map(a => a.title.text))")
    assert all(titles) and titles[0] == ["customers"] and "share of the month's reviews" in titles[3], titles
    assert page.inner_text("[data-testid=kpi-value-at-risk]").strip()
    page.screenshot(path=str(SCREENSHOTS / "dashboard-lifecycle.png"), full_page=True)

    page.click("nav >> text=Lifecycle")
    page.wait_for_selector("#stages-chart")
    assert page.evaluate("() => !!Chart.getChart('funnel-chart') && !!Chart.getChart('stages-chart')")
    follow(page, "[data-testid=transition-matrix] td a >> nth=0")
    assert page.query_selector_all("table.table tbody tr td a")
    page.screenshot(path=str(SCREENSHOTS / "lifecycle-moves.png"))

    page.click("nav >> text=Segments")
    page.wait_for_selector("#segment-map")
    assert page.evaluate("() => !!Chart.getChart('segment-map')")
    page.screenshot(path=str(SCREENSHOTS / "segments.png"), full_page=True)
    page.click("[data-testid=learned-segments] tbody tr a >> nth=0")
    page.wait_for_selector("[data-testid=segment-members]")
    assert len(page.query_selector_all("[data-testid=segment-members] tbody tr")) >= 1
    page.click("nav >> text=Segments")
    page.click("text=New saved segment")
    page.fill("#id_name", "Lapsed big spenders")
    page.check("input[name=stages][value=lapsed]")
    page.fill("#id_spend_min", "100")
    page.click("[data-testid=saved-segment-form] button[type=submit]")
    assert page.inner_text("[data-testid=segment-name]") == "Lapsed big spenders"

    page.click("nav >> text=Reviews")
    page.wait_for_selector("#aspect-chart")
    assert page.evaluate("() => !!Chart.getChart('aspect-chart') && !!Chart.getChart('sentiment-chart')")
    assert "Delivery" in page.inner_text("[data-testid=aspects]")
    page.screenshot(path=str(SCREENSHOTS / "reviews.png"), full_page=True)

    follow(page, "nav >> text=Priorities")
    rows = page.query_selector_all("[data-testid=priorities] tbody tr")
    assert len(rows) >= 5 and top.customer.display_name in rows[0].inner_text()
    labels = page.evaluate("() => Chart.getChart('actions-chart').data.labels")
    assert labels and all(isinstance(label, list) and all(len(line) <= 18 for line in label) for label in labels)  # wrapped, for a phone
    page.screenshot(path=str(SCREENSHOTS / "priorities.png"))
    page.set_viewport_size({"width": 390, "height": 800})
    page.screenshot(path=str(SCREENSHOTS / "phone-priorities.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.click("nav >> text=Playbook")
    assert "VIP care" in page.inner_text("[data-testid=playbook]")
    page.click("[data-testid=playbook] tbody tr >> nth=0 >> text=Edit")
    page.uncheck("#id_enabled")
    page.click("[data-testid=rule-form] button[type=submit]")
    assert "disabled" in page.inner_text("[data-testid=playbook] tbody tr >> nth=0")

    page.goto(f"{live_server.url}/customers/{top.customer_id}/")
    assert top.action_reason[:30] in page.inner_text("[data-testid=next-action]")
    assert len(page.query_selector_all("[data-testid=stage-timeline] li")) >= 1
    page.screenshot(path=str(SCREENSHOTS / "customer-action.png"), full_page=True)

    # With a scored shop's long names and reasons, no page scrolls sideways on a phone.
    page.set_viewport_size({"width": 390, "height": 800})
    for path in (f"/customers/{top.customer_id}/", "/priorities/", "/lifecycle/moves/", "/segments/", "/playbook/", "/reviews/", "/"):
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 391, path
    page.screenshot(path=str(SCREENSHOTS / "phone-dashboard.png"))


def test_campaign_pages_from_suggestion_to_report(live_server, page, alice, tenant_a, settings, tmp_path):
    import datetime as dt

    from django.utils import timezone

    from campaigns.models import Campaign, CampaignMember
    from clmsite.tenancy import tenant_context
    from customers.models import Order
    from tests.test_modeling import scored_demo

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    scored_demo(tenant_a, settings, tmp_path, customers=300, seed=6, insights_months=0)

    login(page, live_server, "alice", "alice-pass-123")
    page.click("nav >> text=Campaigns")
    page.click("[data-testid=suggestions] button >> nth=0")
    assert page.inner_text("[data-testid=campaign-state]") == "Draft"
    size = int(page.inner_text("[data-testid=preview-size]").replace(",", ""))
    assert size > 0
    page.click("text=Edit")  # the edit page fills in its preview after it loads
    page.wait_for_function("() => document.getElementById('preview-size')?.textContent.includes('customers')")
    page.fill("#id_control_share", "50")
    page.click("[data-testid=campaign-form] button[type=submit]")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    page.click("[data-testid=launch]")
    assert page.inner_text("[data-testid=campaign-state]") == "Running"
    assert asked and "treated" in asked[0] and "held out as control" in asked[0]  # launching asks first, with the counts
    assert "Launched" in page.inner_text("[data-testid=audit]")

    with tenant_context(tenant_a):  # a month later, the treatment group bought more
        campaign = Campaign.objects.get(state="running")
        Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - dt.timedelta(days=40))
        members = list(CampaignMember.objects.filter(campaign=campaign).order_by("customer_id"))
        Order.objects.bulk_create([
            Order(tenant=tenant_a, customer_id=m.customer_id, external_id=f"post-{m.customer_id}", amount=50,
                  ordered_at=timezone.now() - dt.timedelta(days=35 - i % 20))
            for i, m in enumerate(members) if m.group == "treatment" or (m.group == "control" and i % 10 == 0 and i > 0)
        ])
    page.reload()
    assert page.inner_text("[data-testid=campaign-state]") == "Completed"
    assert page.evaluate("() => !!Chart.getChart('uplift-chart') && !!Chart.getChart('cumulative-chart')")
    assert "raised conversion" in page.inner_text("[data-testid=verdict]")
    page.screenshot(path=str(SCREENSHOTS / "campaign-report.png"), full_page=True)


def test_models_page_shows_a_running_training_job_progress_live(live_server, page, alice, tenant_a):
    from clmsite.tenancy import tenant_context
    from modeling.models import Job

    # A training job as a gpu worker leaves it between two heartbeats (the worker side of
    # progress is tested with a real worker in test_worker_faults.py).
    with tenant_context(tenant_a):
        job = Job.objects.create(kind=Job.Kind.TRAIN, state=Job.State.RUNNING, progress=0.3, message="transformer: epoch 1/3")

    login(page, live_server, "alice", "alice-pass-123")
    page.click("text=Models")
    row = f"[data-job='{job.pk}']"
    assert page.inner_text(f"{row} [data-field=message]") == "transformer: epoch 1/3"
    assert "30" in page.get_attribute(f"{row} [data-field=bar]", "style")

    with tenant_context(tenant_a):
        Job.objects.filter(pk=job.pk).update(progress=0.8, message="transformer: epoch 3/3")
    # The page polls the job and moves the bar without a reload.
    page.wait_for_function(f"() => document.querySelector(\"{row} [data-field=bar]\")?.style.width === '80%'", timeout=10_000)
    assert page.inner_text(f"{row} [data-field=message]") == "transformer: epoch 3/3"

    with tenant_context(tenant_a):
        Job.objects.filter(pk=job.pk).update(state=Job.State.SUCCEEDED, progress=1.0, message="Trained bgnbd, tabular, transformer")
    page.wait_for_function(f"() => document.querySelector(\"{row} [data-field=state]\")?.textContent === 'Succeeded'", timeout=10_000)


def test_wide_content_stays_inside_its_card_on_a_laptop(live_server, page, alice, tenant_a):
    """At 1280 px: the API keys' Revoke button, the import formats' columns and a customer's
    longest attribute name are all in view, not cut off by their card."""
    from clmsite.services import do_create_api_key
    from customers.services.imports import import_rows

    do_create_api_key(tenant_a, name="Shopify sync")
    import_rows(tenant_a, "customers", [{"customer_id": "c1", "a" * 100: "x"}])
    login(page, live_server, "alice", "alice-pass-123")

    def inside(selector: str, card: str = ".card") -> bool:
        return page.evaluate("([s, c]) => { const e = document.querySelector(s), box = e.closest(c).getBoundingClientRect(), r = e.getBoundingClientRect();"
                             " return r.right <= box.right + 1 && r.left >= box.left - 1; }", [selector, card])

    page.goto(f"{live_server.url}/settings/api-keys/")
    assert inside("button.danger"), "the Revoke button is cut off"
    page.goto(f"{live_server.url}/imports/")
    assert inside("table tbody tr:first-child td:last-child code")
    page.goto(f"{live_server.url}/customers/")
    follow(page, "text=c1")
    assert inside(".facts dt:last-of-type")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 391


def test_pages_fit_a_phone_screen(live_server, page, alice, tenant_a):
    """At 390 px wide no page scrolls sideways: wide tables scroll inside their card."""
    from customers.services.imports import import_rows

    import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2024-01-05", "amount": "25.50", "sku": "S1", "product_name": "Trail shoe"}])
    page.set_viewport_size({"width": 390, "height": 800})
    login(page, live_server, "alice", "alice-pass-123")
    for path in ("/", "/customers/", "/imports/", "/settings/api-keys/", "/settings/team/", "/campaigns/", "/campaigns/new/", "/reviews/", "/lifecycle/", "/segments/", "/models/"):
        page.goto(f"{live_server.url}{path}")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 391, f"{path} is {width} px wide"
        header = page.evaluate("() => document.querySelector('header.topbar').getBoundingClientRect().height")
        assert header <= 160, f"{path}: the header takes {header} px of 800"  # the pages fold into a menu
    assert not page.is_visible("nav.mainnav >> text=Campaigns")
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{live_server.url}/customers/")
    # The list itself does not scroll sideways: country, predicted value and spend step aside.
    assert page.evaluate("() => { const w = document.querySelector('.table-wrap'); return w.scrollWidth <= w.clientWidth; }")
    assert page.is_visible("[data-testid=customer-table] >> text=c1") and page.is_visible("[data-testid=customer-table] >> text=25.50")  # sorted by spend
    assert not page.is_visible("[data-testid=customer-table] th:has-text('Country')") and not page.is_visible("[data-testid=customer-table] th:has-text('Orders')")
    page.screenshot(path=str(SCREENSHOTS / "phone-customers.png"))
    page.click("[data-testid=menu-button]")
    page.screenshot(path=str(SCREENSHOTS / "phone-menu.png"))
    page.click("nav.mainnav >> text=Campaigns")
    assert page.url.endswith("/campaigns/")


def test_the_api_docs_render_without_asking_any_other_site(live_server, page, alice):
    """Redoc comes from our static files, its fonts from the system and its footer logo is
    never requested: the docs work on a network that reaches only this server."""
    offsite = []
    page.on("request", lambda request: offsite.append(request.url) if request.url.startswith("http") and not request.url.startswith(live_server.url) else None)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector("text=Customers", timeout=30_000)
    page.wait_for_timeout(500)  # the footer logo appears after the first render
    assert offsite == []


def test_pages_run_under_the_content_security_policy_with_their_forms_and_switcher(live_server, page, alice, tenant_a, tenant_b):
    """The pages send a Content-Security-Policy that runs only this server's scripts and
    inline ones carrying the response's nonce: no inline handler (onsubmit, onchange) runs,
    so asking before a submit and the shop switcher live in app.js. The fixture fails the
    test on any refused script."""
    from clmsite.models import ApiKey, Role
    from clmsite.services import do_add_member
    from clmsite.tenancy import tenant_context

    do_add_member(tenant_b, alice, Role.OWNER)
    login(page, live_server, "alice", "alice-pass-123")
    policy = page.request.get(f"{live_server.url}/").headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in policy and "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    nonce = page.evaluate("() => [...document.scripts].filter(s => !s.src && s.type !== 'application/json').map(s => s.nonce)")
    assert nonce and all(nonce)  # the dashboard's inline chart script carries it

    page.select_option("#tenant-switch", label="Shop B")  # submits on change, no button
    page.wait_for_function("() => document.querySelector('#tenant-switch')?.selectedOptions[0]?.text === 'Shop B'")

    page.goto(f"{live_server.url}/settings/api-keys/")
    page.fill("#key-name", "Shop feed")
    page.click("text=Create key")
    page.wait_for_load_state()
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("form[data-confirm] button.danger")
    assert asked == ["Revoke this key? Every integration using it stops working at once."]
    def active() -> bool:
        with tenant_context(tenant_b):
            return ApiKey.objects.filter(name="Shop feed", revoked_at__isnull=True).exists()

    assert active()  # dismissed: not sent
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("form[data-confirm] button.danger")
    page.wait_for_load_state()
    assert not active()


def test_owner_invites_a_teammate_who_sets_a_password_and_gets_a_new_role(live_server, page, alice, tenant_a):
    """The Team page end to end: the invite link opens in another browser, the teammate
    chooses a password and is in the shop; the owner's role select saves on change."""
    from clmsite.models import Membership

    login(page, live_server, "alice", "alice-pass-123")
    follow(page, "nav.mainnav >> text=Team")
    page.fill("#id_username", "dana")
    page.fill("#id_email", "dana@example.com")
    page.select_option("#id_role", "analyst")
    page.click("text=Add member")
    page.wait_for_selector("[data-testid=invite]")
    link = page.inner_text("#invite-url").strip()
    page.screenshot(path=str(SCREENSHOTS / "team.png"), full_page=True)

    other = page.context.browser.new_context()
    newcomer = other.new_page()
    newcomer.goto(link)
    newcomer.fill("#id_new_password1", "correct-horse-42")
    newcomer.fill("#id_new_password2", "correct-horse-42")
    newcomer.click("text=Set password and log in")
    newcomer.wait_for_url(f"{live_server.url}/")
    assert "dana" in newcomer.inner_text(".who") and "Analyst" in newcomer.inner_text(".who")
    other.close()

    page.reload()
    assert "invite link not used yet" not in page.inner_text("[data-member=dana]")
    page.select_option("[data-member=dana] select", "admin")  # saves on change, no button
    page.wait_for_selector("text=dana is now Admin")
    assert Membership.objects.get(user__username="dana", tenant=tenant_a).role == "admin"


def test_an_invited_login_accepts_from_the_banner_and_finds_the_shop_in_its_switcher(live_server, page, alice, charlie, tenant_a, tenant_b):
    from clmsite.models import Role
    from clmsite.services import do_invite_member

    do_invite_member(tenant_a, "charlie", Role.ANALYST, acting_role=Role.OWNER)
    page.set_viewport_size({"width": 390, "height": 800})
    login(page, live_server, "charlie", "charlie-pass-123")
    banner = page.inner_text("[data-testid=invitation]")
    assert "Shop A invites you to its team as Analyst" in banner
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 391
    page.screenshot(path=str(SCREENSHOTS / "invitation-phone.png"))
    page.click("[data-testid=invitation] >> text=Accept")
    page.wait_for_selector("text=Welcome to Shop A")
    assert not page.query_selector("[data-testid=invitation]")
    options = page.eval_on_selector_all("#tenant-switch option", "nodes => nodes.map(n => n.textContent)")
    assert sorted(options) == ["Shop A", "Shop B"]
