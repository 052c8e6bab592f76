"""Background work for campaigns: webhook delivery and the hourly schedule."""

from __future__ import annotations

import logging

from celery import shared_task

from clmsite.models import Tenant
from clmsite.tenancy import tenant_context

log = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def deliver_campaign_task(tenant_id: int, campaign_id: int) -> dict:
    from campaigns.models import Campaign
    from campaigns.webhooks import deliver

    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return {}
    with tenant_context(tenant):
        campaign = Campaign.objects.filter(pk=campaign_id).exclude(webhook_url="").first()  # re-checks the tenant
    return deliver(campaign) if campaign is not None else {}


@shared_task
def run_campaign_schedule_task() -> int:
    """Launch scheduled campaigns that are due and complete finished ones, for every tenant."""
    from campaigns.services import launch_due_campaigns

    launched = 0
    for tenant in Tenant.objects.all():
        try:
            launched += launch_due_campaigns(tenant)
        except Exception:  # one tenant's broken campaign must not hold up every other tenant's
            log.exception("campaign schedule failed for tenant %s", tenant.slug)
    return launched
