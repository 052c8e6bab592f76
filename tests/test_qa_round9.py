"""QA round 9: search that ignores accents, downloads that open right in a spreadsheet."""

from __future__ import annotations

import sqlite3

import pytest

from clmsite.lookups import register_sqlite_unaccent, unaccent
from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.queries import search_customers

pytestmark = pytest.mark.django_db

NAMES = {"c1": "Anna Brückner", "c2": "Jürgen Müller", "c3": "Søren Ødegaard", "c4": "Mueller Sales", "c5": "100% Cotton_Club", "c6": "Ana Bruckner"}


@pytest.fixture
def named(tenant_a):
    with tenant_context(tenant_a):
        Customer.objects.bulk_create([Customer(tenant=tenant_a, external_id=k, name=v, email=f"{k}@example.com") for k, v in NAMES.items()])
    return tenant_a


def found(tenant, query: str) -> set[str]:
    with tenant_context(tenant):
        return set(search_customers(tenant, query=query).values_list("external_id", flat=True))


def test_customer_search_ignores_accents_and_case_on_both_sides(named, tenant_b, client, alice, api_a) -> None:
    assert found(named, "bruckner") == found(named, "BRÜCKNER") == {"c1", "c6"}
    assert found(named, "muller") == {"c2"}  # "Mueller" is another spelling, not an accent
    assert found(named, "soren odegaard") == found(named, "Søren") == {"c3"}
    assert found(named, "jurgen") == {"c2"}
    # Wildcards in the query are literal characters.
    assert found(named, "100%") == {"c5"} and found(named, "n_C") == {"c5"} and found(named, "%") == {"c5"}
    # ...also when UNACCENT makes them: the full-width "％" and "＿" are the characters, not wildcards.
    assert found(named, "％") == found(named, "＿") == {"c5"} and found(named, "＼") == set()
    assert found(named, "Bruckner, Anna") == {"c1"}
    assert found(tenant_b, "bruckner") == set()  # still one shop's customers
    # The customer list and the API search the same way.
    client.force_login(alice)
    page = client.get("/customers/?q=muller").content.decode()
    assert "Jürgen Müller" in page and "Brückner" not in page
    listed = api_a.get("/api/v1/customers/?search=brückner").json()
    assert sorted(r["external_id"] for r in listed["results"]) == ["c1", "c6"]


def test_the_sqlite_unaccent_matches_postgresql_spelling() -> None:
    """The embedded SQLite default gets a Python UNACCENT; it maps what PostgreSQL's rules map."""
    assert unaccent("Brückner Ødegaard Straße Łódź Æsir") == "Bruckner Odegaard Strasse Lodz AEsir"
    assert unaccent(None) is None
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT unaccent(%s)", ["Brückner Ødegaard Straße Łódź Æsir"])
        assert cursor.fetchone()[0] == unaccent("Brückner Ødegaard Straße Łódź Æsir")

    class Wrapper:  # what connection_created passes: Django's wrapper around sqlite3
        vendor = "sqlite"
        connection = sqlite3.connect(":memory:")

    register_sqlite_unaccent(None, Wrapper)
    assert Wrapper.connection.execute("SELECT UPPER(UNACCENT('Jürgen Müller')) LIKE UPPER(UNACCENT('%muller%'))").fetchone() == (1,)


def test_without_the_unaccent_extension_search_falls_back_to_plain_icontains(named) -> None:
    from django.db import connection

    connection.clm_has_unaccent = False  # as on a database where migration 0008 could not create it
    try:
        assert found(named, "müller") == {"c2"} and found(named, "muller") == set() and found(named, "%") == {"c5"}
    finally:
        connection.clm_has_unaccent = None


def test_the_campaign_audience_download_opens_in_excel_as_utf8(tenant_a, client, alice) -> None:
    from campaigns import services
    from campaigns.models import Action, Campaign
    from tests.test_qa_round5 import insights

    insights(tenant_a, 8)
    with tenant_context(tenant_a):
        Customer.objects.filter(external_id="C0").update(name="Zoë Brückner")
        campaign = Campaign.objects.create(name="Win back", action=Action.WIN_BACK, control_share=0)
    services.do_launch_campaign(tenant_a, campaign.pk)
    client.force_login(alice)
    body = client.get(f"/campaigns/{campaign.pk}/audience.csv").content
    assert body.startswith(b"\xef\xbb\xbfcustomer_id,") and "Zoë Brückner" in body.decode("utf-8-sig")


def test_the_preview_names_customers_the_playbook_leaves_alone_and_cents_sized_offers(tenant_a) -> None:
    from decimal import Decimal

    from campaigns import services
    from campaigns.models import Action, Campaign
    from modeling.models import CustomerInsight
    from tests.test_qa_round5 import insights

    insights(tenant_a, 10)
    with tenant_context(tenant_a):
        ids = list(CustomerInsight.objects.order_by("customer_id").values_list("pk", flat=True))
        CustomerInsight.objects.filter(pk__in=ids[:3]).update(action=Action.NO_ACTION)
        CustomerInsight.objects.filter(pk__in=ids[3:5]).update(action_offer=Decimal("0.21"))
        CustomerInsight.objects.filter(pk__in=ids[5:]).update(action_offer=Decimal("12.00"))
        campaign = Campaign.objects.create(name="All", action=Action.WIN_BACK)
    note = services.preview(campaign)["note"]
    assert "3 customers in it the playbook would leave alone (no action, to save budget)" in note
    assert "2 customers would get an offer under USD 1.00" in note
    # Targeting the actions leaves the first out; one offer for everyone, the second.
    with tenant_context(tenant_a):
        Campaign.objects.filter(pk=campaign.pk).update(filters={"actions": [Action.WIN_BACK]}, offer="USD 10 off")
        campaign.refresh_from_db()
    note = services.preview(campaign)["note"]
    assert "playbook would leave alone" not in note and "an offer under" not in note


def test_a_rule_without_conditions_placed_early_is_refused_naming_the_rules_it_would_hide(tenant_a, client, alice) -> None:
    from campaigns.models import PlaybookRule
    from campaigns.playbook import ensure_default_playbook

    rules = sorted(ensure_default_playbook(tenant_a), key=lambda rule: (rule.position, rule.pk))
    first, second = rules[0], rules[1]
    client.force_login(alice)
    # At the first rule's number it comes after the first rule (the older one goes first) and hides the rest.
    early = client.post("/playbook/new/", {"position": first.position, "name": "QA rule", "enabled": "on", "action": "cross_sell", "channel": "email"})
    assert early.status_code == 200
    page = early.content.decode()
    assert "This rule has no conditions, so it matches every customer and" in page and f"“{second.name}”" in page and f"“{first.name}”" not in page
    # A condition that failed its own check does not make the rule look condition-less.
    invalid = client.post("/playbook/new/", {"position": first.position, "name": "QA rule", "enabled": "on", "action": "cross_sell", "channel": "email", "churn_min": "700"})
    assert "less than or equal to 100" in invalid.content.decode() and "This rule has no conditions" not in invalid.content.decode()
    with tenant_context(tenant_a):
        assert not PlaybookRule.objects.filter(name="QA rule").exists()
    # With a condition it is saved; the closing catch-all can still be edited in its place.
    saved = client.post("/playbook/new/", {"position": first.position, "name": "QA rule", "enabled": "on", "action": "cross_sell", "channel": "email", "churn_min": "90"})
    assert saved.status_code == 302
    last = rules[-1]
    edit = client.post(f"/playbook/{last.pk}/", {"position": last.position, "name": last.name, "enabled": "on", "action": last.action, "channel": last.channel})
    assert edit.status_code == 302


def test_an_api_key_needs_a_name_that_fits(tenant_a, client, alice) -> None:
    from clmsite.models import ApiKey

    client.force_login(alice)
    blank = client.post("/settings/api-keys/", {"name": "  ", "role": "viewer"}, follow=True)
    assert "Give the key a name" in blank.content.decode()
    long = client.post("/settings/api-keys/", {"name": "x" * 3000, "role": "viewer"}, follow=True)
    assert "The name has 3,000 characters; keep it to 100." in long.content.decode()
    assert not ApiKey.objects.filter(tenant=tenant_a).exists()
    client.post("/settings/api-keys/", {"name": "Shopify sync", "role": "viewer"})
    assert list(ApiKey.objects.filter(tenant=tenant_a).values_list("name", flat=True)) == ["Shopify sync"]


def test_dashboard_counts_open_the_customers_they_count_and_tiny_control_shares_do_not_read_zero(tenant_a, client, alice) -> None:
    from campaigns.models import Action, Campaign
    from campaigns.templatetags.campaign_format import share

    assert (share(0.2), share(0.125), share(0.0000001), share(0)) == ("20%", "12.5%", "<1%", "0%")
    with tenant_context(tenant_a):
        Campaign.objects.create(name="Tiny control", action=Action.WIN_BACK, control_share=0.0000001)
    client.force_login(alice)
    assert ">&lt;1%</td>" in client.get("/campaigns/").content.decode()
    page = client.get("/").content.decode()
    assert 'href="/customers/" data-testid="kpi-customers"' in page


def test_the_at_risk_probability_is_typed_and_shown_in_percent_and_kept_as_a_share(tenant_a, client, alice) -> None:
    from modeling.insight_views import ThresholdsForm

    form = ThresholdsForm({"at_risk_probability": "30"})
    assert form.is_valid() and form.cleaned_data["at_risk_probability"] == 0.3
    too_big = ThresholdsForm({"at_risk_probability": "130"})
    assert not too_big.is_valid() and "less than or equal to 100" in str(too_big.errors)
    client.force_login(alice)
    client.post("/lifecycle/", {"at_risk_probability": "25"})
    tenant_a.refresh_from_db()
    assert tenant_a.settings["lifecycle"]["at_risk_probability"] == 0.25
    page = client.get("/lifecycle/").content.decode()
    assert 'name="at_risk_probability" value="25"' in page and "At risk probability (%)" in page


def test_each_rfm_group_shows_the_stage_most_of_it_is_in(tenant_a, client, alice) -> None:
    from modeling.models import CustomerInsight, Segment
    from tests.test_qa_round5 import insights

    insights(tenant_a, 4, stage="lapsed")
    with tenant_context(tenant_a):
        loyal = Segment.objects.create(kind=Segment.Kind.RFM, key="loyal", name="Loyal customers", description="Buy regularly and spend well", size=4)
        CustomerInsight.objects.update(rfm_segment=loyal)
        CustomerInsight.objects.filter(pk=CustomerInsight.objects.order_by("pk").first().pk).update(stage="active")
    client.force_login(alice)
    page = client.get("/segments/").content.decode()
    assert '<td data-label="Largest stage">75% Lapsed</td>' in page


def test_a_suggested_draft_takes_the_channel_most_of_its_customers_rules_name_and_the_preview_counts_the_rest(tenant_a) -> None:
    from campaigns import services
    from campaigns.models import Action, Channel
    from modeling.models import CustomerInsight
    from tests.test_qa_round5 import insights

    insights(tenant_a, 6)
    with tenant_context(tenant_a):
        ids = list(CustomerInsight.objects.order_by("customer_id").values_list("pk", flat=True))
        CustomerInsight.objects.filter(pk__in=ids[:4]).update(action_channel=Channel.ADS)
        CustomerInsight.objects.filter(pk__in=ids[4:]).update(action_channel=Channel.EMAIL)
    campaign, created = services.do_draft_from_suggestion(tenant_a, Action.WIN_BACK)
    assert created and campaign.channel == Channel.ADS
    assert ("The playbook would reach 2 customers in it another way (2 by Email); this campaign reaches everyone by Paid social audience."
            in services.preview(campaign)["note"])


def test_the_customer_list_sorts_by_predicted_value_with_the_unscored_last(tenant_a, client, alice) -> None:
    from modeling.models import CustomerInsight
    from tests.test_qa_round5 import insights

    insights(tenant_a, 3)
    with tenant_context(tenant_a):
        for value, insight in zip((50, 900, 10), CustomerInsight.objects.order_by("customer_id"), strict=True):
            CustomerInsight.objects.filter(pk=insight.pk).update(predicted_value=value)
        Customer.objects.create(external_id="unscored")
    found = lambda sort: [c.external_id for c in client.get(f"/customers/?sort={sort}").context["page"]]  # noqa: E731
    client.force_login(alice)
    assert found("-value") == ["C1", "C0", "C2", "unscored"]
    assert found("value") == ["C2", "C0", "C1", "unscored"]


def test_a_missing_page_reminds_a_user_of_several_shops_to_switch(tenant_a, tenant_b, client, alice) -> None:
    from clmsite.models import Role
    from clmsite.services import do_add_member

    client.force_login(alice)
    assert 'data-testid="other-shops"' not in client.get("/customers/999999/").content.decode()  # one shop: nothing to switch to
    do_add_member(tenant_b, alice, Role.VIEWER)
    with tenant_context(tenant_b):
        foreign = Customer.objects.create(external_id="b1")
    missing, other = client.get("/customers/999999/"), client.get(f"/customers/{foreign.pk}/")
    assert missing.status_code == other.status_code == 404
    assert f"(you are in {tenant_a.name})" in missing.content.decode() and f"(you are in {tenant_a.name})" in other.content.decode()


def test_a_command_line_import_is_an_import_job_the_api_and_the_imports_page_list(tenant_a, tmp_path, api_a, client, alice, capsys) -> None:
    from pathlib import Path

    from django.core.management import call_command

    from tests.conftest import write_csv

    path = write_csv(tmp_path / "orders.csv", "customer_id,order_id,ordered_at,amount\nc1,o1,2025-01-05,20.00\nc2,o2,2025-01-06,30.00\n")
    call_command("import_data", "--tenant", tenant_a.slug, "--kind", "orders", path)
    out = capsys.readouterr().out
    listed = api_a.get("/api/v1/imports/").json()["results"]
    assert len(listed) == 1 and listed[0]["state"] == "succeeded" and f"(import job {listed[0]['id']})" in out
    assert listed[0]["summary"]["created"] == 2 and listed[0]["filename"] == "orders.csv"
    assert Path(path).exists()  # the merchant's own file stays where it was
    client.force_login(alice)
    assert "orders.csv" in client.get("/imports/").content.decode()


def test_the_migration_keeps_stored_last_order_before_filters_selecting_the_same_customers() -> None:
    """0009 moves a saved segment's and an unlaunched campaign's date one day on, now that the
    date is excluded; a launched campaign's is left as it was (its audience is frozen)."""
    import importlib

    migration = importlib.import_module("campaigns.migrations.0009_last_order_before_excludes_its_day")
    assert migration._shift({"last_order_before": "2026-12-05", "stages": ["lapsed"]}, 1) == {"last_order_before": "2026-12-06", "stages": ["lapsed"]}
    assert migration._shift({"last_order_before": "2026-12-31"}, 1) == {"last_order_before": "2027-01-01"}
    assert migration._shift({"stages": ["lapsed"]}, 1) is None and migration._shift({"last_order_before": "junk"}, 1) is None


def test_the_api_answers_json_only_even_to_a_browser(api_a) -> None:
    browser = api_a.get("/api/v1/customers/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert browser.status_code == 200 and browser["Content-Type"] == "application/json"
    assert api_a.get("/api/v1/customers/?format=api").status_code in (400, 404)
