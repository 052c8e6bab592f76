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
