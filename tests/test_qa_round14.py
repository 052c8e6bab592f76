"""Round 14: an integrator's and a merchant's walk on a fresh demo. Text that no database can
hold, keys given twice, a file mixing two encodings, and the merchant pages' words."""

from __future__ import annotations

import pytest

from clmsite.tenancy import tenant_context
from customers.models import Customer, Review

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/customers/bulk/", '[{"customer_id": "s\\ud800"}]'),
    ("/api/v1/customers/bulk/", '[{"customer_id": "c9", "email": "x\\udfff@example.com"}]'),
    ("/api/v1/customers/bulk/", '[{"customer_id": "c9", "tags": ["a\\ud83d"]}]'),
    ("/api/v1/customers/bulk/", '[{"customer_id": "c9", "k\\ud800": "v"}]'),
    ("/api/v1/reviews/bulk/", '[{"customer_id": "c9", "review_id": "r1", "created_at": "2024-01-02", "text": "x\\ud83d"}]'),
    ("/api/v1/customers/bulk/", '"\\ud800"'),
])
def test_an_unpaired_surrogate_is_a_400_that_names_it_and_stores_nothing(tenant_a, api_a, path, body) -> None:
    response = api_a.post(path, data=body, content_type="application/json")

    assert response.status_code == 400
    assert "unpaired surrogate" in response.json()["detail"]
    with tenant_context(tenant_a):
        assert not Customer.objects.exists() and not Review.objects.exists()


def test_an_escaped_surrogate_pair_is_one_character_and_imports(tenant_a, api_a) -> None:
    response = api_a.post("/api/v1/customers/bulk/", data='[{"customer_id": "c9", "name": "Ann \\ud83d\\ude00"}]', content_type="application/json")

    assert response.status_code == 200, response.json()
    with tenant_context(tenant_a):
        assert Customer.objects.get(external_id="c9").name == "Ann \U0001f600"


@pytest.mark.parametrize("body", ['[{"customer_id": "d1", "email": "a@x.com", "email": "b@x.com"}]', '[{"customer_id": "u3", "customer_id": "u4"}]'])
def test_a_key_given_twice_in_one_object_is_a_400_not_last_wins(tenant_a, api_a, body) -> None:
    response = api_a.post("/api/v1/customers/bulk/", data=body, content_type="application/json")

    assert response.status_code == 400
    assert "twice" in response.json()["detail"]
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_a_surrogate_in_a_patched_attribute_is_a_400(tenant_a, api_a) -> None:
    with tenant_context(tenant_a):
        customer = Customer.objects.create(tenant=tenant_a, external_id="c1")
    response = api_a.patch(f"/api/v1/customers/{customer.pk}/", data='{"attributes": {"k": "v\\ud800"}}', content_type="application/json")

    assert response.status_code == 400 and "unpaired surrogate" in response.json()["detail"]


def test_scoring_a_shop_without_models_is_refused_up_front_on_every_entrance(tenant_a, api_a, client, alice) -> None:
    from django.core.management import CommandError, call_command

    from modeling.models import Job

    refused = api_a.post("/api/v1/jobs/score/", {}, format="json")
    assert refused.status_code == 409 and refused.json()["detail"] == "No active model for purchase, orders, revenue. Train models first."
    client.force_login(alice)
    page = client.post("/models/score/", {}, follow=True).content.decode()
    assert "No active model for purchase, orders, revenue. Train models first." in page
    with pytest.raises(CommandError, match="No active model"):
        call_command("score", "--tenant", tenant_a.slug, "--as-of", "2024-01-31")
    with tenant_context(tenant_a):
        assert not Job.objects.exists()


def test_an_import_field_sent_twice_is_refused_and_a_wrong_kind_lists_the_kinds(tenant_a, api_a) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    def upload() -> SimpleUploadedFile:
        return SimpleUploadedFile("c.csv", b"customer_id\nc1\n", content_type="text/csv")

    twice = api_a.post("/api/v1/imports/", {"kind": ["customers", "orders"], "file": upload()})
    assert twice.status_code == 400 and twice.json() == {"kind": ["Sent more than once: send it once."]}
    wrong = api_a.post("/api/v1/imports/", {"kind": "bogus", "file": upload()})
    assert wrong.status_code == 400 and wrong.json()["kind"] == ['"bogus" is not a kind of import: send one of customers, products, orders, reviews.']


def test_a_file_mixing_utf8_and_windows_1252_imports_nothing_and_names_the_lines(tenant_a, tmp_path) -> None:
    from customers.services.imports import import_csv

    path = tmp_path / "mixed.csv"
    path.write_bytes("customer_id,name\nmx1,Müller\nmx2,Zoë\n".encode() + "mx3,Müller\n".encode("cp1252"))
    result = import_csv(tenant_a, "customers", str(path))

    assert not result.ok
    assert "mixes two text encodings. Line 2 is UTF-8 and line 4 is not" in result.message
    assert [(e.row, e.message) for e in result.errors] == [(4, "not UTF-8, unlike the file's other lines")]
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()
    path.write_bytes("customer_id,name\nmx3,Müller\n".encode("cp1252"))  # all Windows-1252: read as such
    assert import_csv(tenant_a, "customers", str(path)).ok
    with tenant_context(tenant_a):
        assert Customer.objects.get().name == "Müller"


def test_excels_sep_line_names_the_delimiter(tenant_a, tmp_path) -> None:
    from customers.services.imports import import_csv

    path = tmp_path / "excel.csv"
    path.write_text("sep=;\ncustomer_id;email\nw15;w15@example.com\n")
    result = import_csv(tenant_a, "customers", str(path))

    assert result.ok, result.message
    with tenant_context(tenant_a):
        assert Customer.objects.get().email == "w15@example.com"


def test_without_a_mail_server_the_invite_says_it_was_not_emailed(tenant_a, alice, client, settings, mailoutbox) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"  # the default without EMAIL_HOST
    client.force_login(alice)
    page = client.post("/settings/team/", {"username": "dana", "email": "dana@example.com", "role": "analyst"}, follow=True).content.decode()

    assert "Email is not set up on this server, so it was not emailed: send it yourself." in page
    assert "It has also been emailed" not in page and mailoutbox == []


def test_country_codes_are_stored_in_capitals_and_names_as_their_codes(tenant_a, api_a) -> None:
    from customers.services.imports import import_rows

    # (Since session 17 an English name is stored as its code too, and text naming no country as given.)
    rows = [{"customer_id": "c1", "country": "us"}, {"customer_id": "c2", "country": "Germany"}, {"customer_id": "c3", "country": "Atlantis"}]
    assert import_rows(tenant_a, "customers", rows).ok
    with tenant_context(tenant_a):
        assert dict(Customer.objects.values_list("external_id", "country")) == {"c1": "US", "c2": "DE", "c3": "Atlantis"}
        customer = Customer.objects.get(external_id="c2")
    assert api_a.patch(f"/api/v1/customers/{customer.pk}/", {"country": "de"}, format="json").json()["country"] == "DE"


def test_the_settings_page_speaks_in_percentages_and_keeps_the_quantiles(tenant_a, alice, client) -> None:
    client.force_login(alice)
    page = client.get("/settings/").content.decode()
    assert "High value: top % of customers" in page and 'name="high_tier_percent" value="20"' in page and 'name="low_tier_percent" value="50"' in page
    assert "quantile" not in page and "celery" not in page.lower() and "docker-compose" not in page


def test_a_churn_filter_in_percent_is_a_400_that_says_probabilities_run_to_1(tenant_a, api_a) -> None:
    refused = api_a.get("/api/v1/predictions/", {"churn_probability__gte": "50"})
    assert refused.status_code == 400 and refused.json() == {"churn_probability__gte": ["A probability from 0 to 1 (0.5 is 50%)."]}
    assert api_a.get("/api/v1/predictions/", {"churn_probability__gte": "0.5"}).status_code == 200
    dated = api_a.get("/api/v1/orders/", {"ordered_at__gte": "01/05/2024"})
    assert dated.status_code == 400 and "ISO 8601, such as 2024-05-01" in dated.json()["ordered_at__gte"][0]


def test_an_analyst_setting_a_launch_time_hears_the_403_not_advice_on_the_time(tenant_a) -> None:
    from clmsite.models import Role
    from tests.conftest import api_client_for

    response = api_client_for(tenant_a, Role.ANALYST).post("/api/v1/campaigns/", {"name": "C2", "action": "win_back", "scheduled_for": "2030-01-01T00:00:00Z"}, format="json")

    assert response.status_code == 403, response.json()
    assert "Only an admin or owner can set scheduled_for" in response.json()["detail"]


def test_a_customer_imports_took_past_a_hundred_attributes_can_still_edit_them(tenant_a, api_a) -> None:
    from customers.services.imports import import_rows

    assert import_rows(tenant_a, "customers", [{"customer_id": "c1", **{f"p{i}": "v" for i in range(60)}}]).ok
    assert import_rows(tenant_a, "customers", [{"customer_id": "c1", **{f"r{i}": "v" for i in range(60)}}]).ok  # merged: 120
    with tenant_context(tenant_a):
        customer = Customer.objects.get(external_id="c1")
    url = f"/api/v1/customers/{customer.pk}/"

    assert api_a.patch(url, {"attributes": {"p1": "changed"}}, format="json").status_code == 200  # no key added
    grown = api_a.patch(url, {"attributes": {"new": "x"}}, format="json")
    assert grown.status_code == 400 and "this would make 121" in grown.json()["attributes"][0]
    assert api_a.patch(url, {"attributes": {"new": "x"}, "remove_attributes": ["p2"]}, format="json").status_code == 200


def test_a_refused_choice_lists_the_choices(tenant_a, api_a) -> None:
    campaign = api_a.post("/api/v1/campaigns/", {"name": "C", "action": "bogus"}, format="json")
    assert campaign.status_code == 400 and campaign.json()["action"][0].startswith('"bogus" is not one of: vip_care, second_purchase, win_back,')


@pytest.mark.parametrize(("body", "query", "field"), [('{"rows": [{"customer_id": "q1"}], "validate": true}', "", "validate"), ('[{"customer_id": "q1"}]', "?validate=1", "validate")])
def test_a_refused_bulk_request_answers_the_documented_result(tenant_a, api_a, body, query, field) -> None:
    response = api_a.post(f"/api/v1/customers/bulk/{query}", data=body, content_type="application/json")

    assert response.status_code == 400
    answer = response.json()
    assert {"kind", "ok", "rows", "created", "message", "detail", "errors"} <= set(answer) and answer["ok"] is False
    assert field in answer and answer["detail"].startswith(f"Nothing was imported: {field}: Unknown")
    with tenant_context(tenant_a):
        assert not Customer.objects.exists()


def test_a_model_scores_with_the_category_shares_it_learnt_even_after_the_ranking_changed() -> None:
    """The shop's top categories are ranked by spend at every load: Boots led when the model
    learnt, Jackets leads by the time it scores. category_0_share must still mean Boots."""
    import datetime as dt

    import pandas as pd

    from modeling.families.tabular import TabularModel
    from modeling.features import features_as_of, history_from_frames

    rows = [(1, "2024-01-05", "Boots", 100.0), (2, "2024-01-06", "Jackets", 50.0), (2, "2024-03-01", "Jackets", 200.0), (1, "2024-03-02", "Boots", 10.0)]
    lines = pd.DataFrame([{"customer": c, "ordered_at": pd.Timestamp(d, tz="UTC"), "category": k, "product": k, "quantity": 1, "amount": a} for c, d, k, a in rows])
    early = history_from_frames(lines[lines["ordered_at"] < pd.Timestamp("2024-02-01", tz="UTC")][["customer", "ordered_at", "amount"]],
                                lines=lines[lines["ordered_at"] < pd.Timestamp("2024-02-01", tz="UTC")])
    late = history_from_frames(lines[["customer", "ordered_at", "amount"]], lines=lines)
    assert early.categories[:2] == ["Boots", "Jackets"] and late.categories[:2] == ["Jackets", "Boots"]

    model = TabularModel()
    model.categories = early.categories
    as_of = dt.date(2024, 3, 31)
    aligned = model.features_for(late, as_of, features_as_of(late, as_of))
    assert aligned.loc[1, "category_0_share"] == 1.0 and aligned.loc[2, "category_0_share"] == 0.0  # Boots, as learnt
    assert aligned.loc[2, "category_1_share"] == 1.0
    assert features_as_of(late, as_of).loc[2, "category_0_share"] == 1.0  # the shop's own ranking: Jackets first


def test_the_campaign_forms_preview_uses_the_control_share_typed_in(tenant_a, client, alice) -> None:
    from tests.test_qa_round5 import insights

    insights(tenant_a, 20)
    client.force_login(alice)
    at_default = client.get("/campaigns/preview/", {"action": "win_back", "actions": "win_back"}).json()
    at_half = client.get("/campaigns/preview/", {"action": "win_back", "actions": "win_back", "control_share": "50"}).json()

    assert "18 treated, 2 held out" in at_default["launch_summary"]
    assert "10 treated, 10 held out" in at_half["launch_summary"]


def test_a_typed_logout_address_leads_somewhere_and_only_a_post_logs_out(alice, client) -> None:
    assert client.get("/logout/")["Location"] == "/login/"
    client.force_login(alice)
    assert client.get("/logout/")["Location"] == "/" and client.get("/").status_code == 200  # still logged in
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302  # logged out: the dashboard sends to the login page
    page = client.get("/login/").content.decode()
    assert 'class="skip-link" href="#content"' in page and 'id="content"' in page


def test_a_saved_segments_amount_shows_as_typed_when_edited(tenant_a, client, alice) -> None:
    from modeling.models import Segment

    with tenant_context(tenant_a):
        segment = Segment.objects.create(tenant=tenant_a, kind=Segment.Kind.SAVED, key="big", name="Big", filters={"spend_min": 1000.0})
    client.force_login(alice)
    page = client.get(f"/segments/{segment.pk}/edit/").content.decode()
    assert 'name="spend_min" value="1000"' in page


def test_a_bad_as_of_says_which_formats_it_takes(tenant_a, api_a) -> None:
    refused = api_a.get("/api/v1/predictions/", {"as_of": "05/01/2024"})
    assert refused.status_code == 400 and refused.json() == {"as_of": ["Enter a scoring date as YYYY-MM-DD (or YYYYMMDD), such as 2024-05-01."]}
    assert api_a.get("/api/v1/predictions/", {"as_of": "20240501"}).status_code == 200
