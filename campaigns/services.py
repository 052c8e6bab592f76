"""Campaigns: audiences, deterministic control groups, launch, outcomes and uplift.

One service behind the pages, the API and the CLI. Assignment to treatment or control is a
hash of (campaign, customer): re-running a launch, or computing the group again anywhere,
gives the same answer. Outcomes compare the groups' conversion and revenue per member in
the attribution window after launch; uplift comes with a 95% confidence interval (Newcombe's hybrid Wilson score interval
for the difference of two proportions; Welch's t for revenue per member), and the verdict
warns when a group is too small for either to be more than a rough guide.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import ipaddress
import logging
import math
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from campaigns.models import Action, Campaign, CampaignAudit, CampaignMember, Channel
from clmsite.models import Tenant
from clmsite.statistics import refresh_statistics
from clmsite.tenancy import lock_tenant, shop_today, tenant_context
from customers.models import Customer
from modeling.exports import spreadsheet_safe
from modeling.models import CustomerInsight, Segment, Stage

log = logging.getLogger(__name__)
Z95 = 1.959964


class CampaignStateError(Exception):
    """The campaign is not in a state that allows this."""


# Marketing consent, kept as a customer attribute (Shopify's customers export brings both; a
# customers file may send them as columns): a customer who declined a channel's marketing is
# in no campaign by that channel. A paid social audience is matched by email, so it asks the
# email consent. A blank or missing attribute is no answer, and does not leave anyone out.
CONSENT_ATTRIBUTES = {Channel.EMAIL: "accepts_email_marketing", Channel.ADS: "accepts_email_marketing", Channel.SMS: "accepts_sms_marketing"}
DECLINED = ("no", "false", "0", "n", "unsubscribed", "not_subscribed", "declined", "opted_out")


def declined(channel: str) -> QuerySet[Customer]:
    """The customers who declined ``channel``'s marketing (nobody for a channel without consent).
    A set to leave out by id: excluding the condition itself would leave out everyone without
    the attribute too, as SQL's NOT of an unknown is unknown."""
    attribute = CONSENT_ATTRIBUTES.get(Channel(channel)) if channel in Channel.values else None
    if attribute is None:
        return Customer.objects.none()
    said = Q()
    for word in DECLINED:
        said |= Q(**{f"attributes__{attribute}__iexact": word})
    return Customer.objects.filter(said)


def consent_of(customer: Customer, channel: str) -> str:
    """The customer's consent to ``channel``'s marketing as stored (``yes``, ``no``…), or blank
    where the channel asks none or the shop never sent it."""
    attribute = CONSENT_ATTRIBUTES.get(Channel(channel)) if channel in Channel.values else None
    return str((customer.attributes or {}).get(attribute, "")) if attribute else ""


ACCEPTED = ("yes", "true", "1", "y", "subscribed", "opted_in", "accepted")


def consent_answer(customer: Customer, channel: str) -> str:
    """The customer's consent to ``channel``'s marketing as one word: yes, no, or blank (never
    said, or a channel that asks none); text that is neither stays as stored ("No" and "no"
    in one export column read as two answers)."""
    said = consent_of(customer, channel).strip()
    return "no" if said.lower() in DECLINED else "yes" if said.lower() in ACCEPTED else said


def has_declined(customer: Customer, channel: str) -> bool:
    """``declined`` for one customer already loaded: the same words, without case."""
    return consent_answer(customer, channel) == "no"


def audience(campaign: Campaign, *, leave_out_running: bool = True, leave_out_declined: bool = True) -> QuerySet[CustomerInsight]:
    """The customers a campaign targets now: its segment's members and its filters, less
    those who declined its channel's marketing, and the customers other running campaigns
    hold (their control groups always; their treated customers too unless the campaign
    allows the overlap)."""
    from modeling.insights import apply_filters, segment_members

    queryset = segment_members(campaign.segment) if campaign.segment_id else CustomerInsight.objects.select_related("customer")
    queryset = apply_filters(queryset, campaign.filters)
    if campaign.persuadable_only:
        from campaigns.uplift import persuadable_customer_ids

        ids = persuadable_customer_ids(campaign.tenant, campaign.action)
        if ids is not None:
            queryset = queryset.filter(customer_id__in=ids)
    if leave_out_declined:
        queryset = queryset.exclude(customer_id__in=declined(campaign.channel).values("pk"))
    if leave_out_running:
        held = held_by_running(control_only=not campaign.skip_running).exclude(campaign_id=campaign.pk)
        queryset = queryset.exclude(customer_id__in=held.values("customer_id"))
    return queryset


def left_out_of(campaign: Campaign, reached: int) -> tuple[int, int]:
    """Of the customers a campaign's segment and filters select, those its audience (``reached``
    of them) leaves out, each counted once so that the three add up: who declined its channel
    (held by a running campaign or not), then who a running campaign holds."""
    consenting = audience(campaign, leave_out_running=False).count()
    return audience(campaign, leave_out_running=False, leave_out_declined=False).count() - consenting, consenting - reached


def held_by_running(*, control_only: bool = True) -> QuerySet[CampaignMember]:
    """The members of running campaigns: their control groups (``control_only``), not to be
    contacted until the campaign ends, or everyone they reach."""
    members = CampaignMember.objects.filter(campaign__state=Campaign.State.RUNNING)
    return members.filter(group=CampaignMember.Group.CONTROL) if control_only else members


# A customer's own offer (a share of what they would spend if they order again) below this is cents-sized: the
# preview says how many there are.
SMALL_OFFER = Decimal("1.00")
# An audience from a scoring older than this is named as such: customers move between stages.
STALE_SCORING_DAYS = 14


def preview(campaign: Campaign) -> dict[str, Any]:
    """Live count and value at risk of the audience (before launch)."""
    # Without an offer for everyone, each member takes their own from the playbook, if any.
    own_offer = Q(action=campaign.action, action_offer__isnull=False) if not campaign.offer else Q(pk__in=[])
    other_channel = Q(action=campaign.action) & ~Q(action_channel__in=["", campaign.channel])
    with tenant_context(campaign.tenant):
        totals = audience(campaign).aggregate(n=Count("id"), at_risk=Sum("priority"), value=Sum("predicted_value"),
                                              no_contact=Count("id", filter=Q(action=Action.NO_ACTION)),
                                              own_offers=Count("id", filter=own_offer), lowest_offer=Min("action_offer", filter=own_offer),
                                              highest_offer=Max("action_offer", filter=own_offer),
                                              small_offers=Count("id", filter=own_offer & Q(action_offer__lt=SMALL_OFFER)),
                                              other_channel=Count("id", filter=other_channel))
        said_no, left_out = left_out_of(campaign, totals["n"])
    notes = []  # what the count alone would not say, each a sentence or two
    if said_no:
        attribute = CONSENT_ATTRIBUTES[Channel(campaign.channel)]
        notes.append(f"{_count(said_no, 'customer')} {'is' if said_no == 1 else 'are'} left out: they declined "
                     f"{campaign.get_channel_display()} marketing ({attribute} is no).")
    if left_out:
        held = "in a running campaign already" if campaign.skip_running else "in a running campaign's control group"
        notes.append(f"{_count(left_out, 'customer')} {'is' if left_out == 1 else 'are'} left out: {held}.")
    segment = campaign.segment if campaign.segment_id else None
    if segment is not None and segment.kind == segment.Kind.LEARNED and not segment.is_current:
        notes.append(f"The learned segment “{segment.name}” was retired by the latest clustering and has no members now: "
                     "edit the campaign and pick a current segment.")
    elif campaign.persuadable_only:
        from campaigns.uplift import model_for

        if model_for(campaign.tenant, campaign.action) is None:
            notes.append("No campaign with this action has completed yet, so there is no uplift model to find the persuadable: "
                         "'Persuadable only' keeps the whole audience until one has.")
    if totals["no_contact"]:
        # A segment holds customers the playbook would leave alone; the campaign reaches them
        # unless the merchant says otherwise.
        notes.append(f"{_count(totals['no_contact'], 'customer')} in it the playbook would leave alone "
                     "(no action, to save budget): pick the recommended actions to target to leave them out.")
    if totals["other_channel"]:
        with tenant_context(campaign.tenant):
            channels = dict(Channel.choices)
            by_channel = ", ".join(f"{row['n']:,} by {channels.get(row['action_channel'], row['action_channel'])}" for row in
                                   audience(campaign).filter(other_channel).values("action_channel").annotate(n=Count("id")).order_by("-n"))
        notes.append(f"The playbook would reach {_count(totals['other_channel'], 'customer')} in it another way ({by_channel}); "
                     f"this campaign reaches everyone by {campaign.get_channel_display()}. For their own channels, make a campaign per channel.")
    if totals["own_offers"]:  # said before launch, as the treatment CSV shows it after
        low, high, currency = totals["lowest_offer"], totals["highest_offer"], campaign.tenant.currency
        amounts = f"up to {currency} {low:,.2f} each" if low == high else f"from {currency} {low:,.2f} to {high:,.2f} each"
        notes.append(f"No offer for everyone: {_count(totals['own_offers'], 'customer')} will get their own from the playbook ({amounts}) "
                     f"and {_count(totals['n'] - totals['own_offers'], 'customer')} none. Give the campaign an offer to send the same to everyone.")
    if totals["small_offers"]:
        notes.append(f"{_count(totals['small_offers'], 'customer')} would get an offer under {campaign.tenant.currency} {SMALL_OFFER:.2f} "
                     "(a share of a small spend): give the campaign one offer for everyone to send none that small.")
    from modeling.insights import latest_scoring_date

    unscored = 0
    if not campaign.segment_id and not campaign.filters:  # every customer: the count would not match the customer list's
        with tenant_context(campaign.tenant):
            unscored = Customer.objects.filter(insight__isnull=True).count()
    if unscored:  # an audience is made of customers with a stage and an action
        has, are = ("has", "is") if unscored == 1 else ("have", "are")
        notes.append(f"{_count(unscored, 'customer')} {has} no stage yet (loaded since the stages were last worked out) "
                     f"and so {are} in no audience until the next scoring gives them one.")
    scored_on = latest_scoring_date(campaign.tenant)
    age = (shop_today(campaign.tenant) - scored_on).days if scored_on else 0
    if age > STALE_SCORING_DAYS:
        notes.append(f"The audience comes from the scoring of {scored_on}, {age:,} days ago: its stages, predictions and actions may have moved "
                     "since. An admin can score now on the Models page.")
    control = control_size(campaign.control_share, totals["n"])
    if totals["n"] and min(control, totals["n"] - control) < SMALL_GROUP_MEMBERS:
        remedy = "widen the audience, or raise the control share" if totals["n"] >= 2 * SMALL_GROUP_MEMBERS else "widen the audience"
        notes.append(f"Too small to measure: {totals['n'] - control:,} treated and {control:,} held out. With fewer than {SMALL_GROUP_MEMBERS} "
                     f"in a group the report's uplift will be too uncertain to read; {remedy}.")
    note = " ".join(notes)
    # Money to the cent: a sum of floats would show its noise (17236.12000000001).
    return {"size": totals["n"], "left_out_running": left_out, "left_out_declined": said_no, "value_at_risk": round(float(totals["at_risk"] or 0.0), 2), "predicted_value": round(float(totals["value"] or 0.0), 2), "note": note,
            "control": control, "launch_summary": launch_summary(totals["n"], control)}


def assignment_hash(campaign_id: int, customer_id: int) -> float:
    """A customer's uniform draw for a campaign: the first 8 bytes of sha256("campaign:customer")."""
    digest = hashlib.sha256(f"{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def control_size(control_share: float, audience_size: int) -> int:
    """round(share x audience), but at least one customer when a share is asked for and the
    audience has two or more (2% of 17 would otherwise keep no control at all, and the
    campaign could not be measured), and never the whole audience."""
    size = round(control_share * audience_size)
    if control_share > 0 and audience_size >= 2:
        size = min(max(size, 1), audience_size - 1)
    return size


def control_group(campaign_id: int, customer_ids: list[int], control_share: float) -> set[int]:
    """The control group: exactly ``control_size`` customers, those with the lowest draws.
    Random (the draw is a hash), the same every time, and exactly the share asked for,
    where a coin per customer would hold out 26% of 81 for a 20% share."""
    size = control_size(control_share, len(customer_ids))
    return set(sorted(customer_ids, key=lambda customer: (assignment_hash(campaign_id, customer), customer))[:size])


def new_webhook_secret() -> str:
    return secrets.token_hex(24)


def do_rotate_webhook_secret(tenant: Tenant, campaign_id: int, *, user: Any = None, via: str = "web") -> Campaign:
    """A new signing secret for the campaign's webhook (a leaked one, or a routine change):
    every delivery from now on, retries included, is signed with it; the old one stops
    verifying at once. Audited, without either secret."""
    with tenant_context(tenant), transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if not campaign.webhook_url:
            raise CampaignStateError("This campaign has no webhook, so it has no signing secret to change.")
        campaign.webhook_secret = new_webhook_secret()
        campaign.updated_at = timezone.now()
        campaign.save(update_fields=["webhook_secret", "updated_at"])
        _audit(campaign, "webhook_rekeyed", user, via, "a new webhook signing secret; the old one no longer verifies")
    return campaign


def _audit(campaign: Campaign, event: str, user: Any, via: str, detail: str = "") -> None:
    CampaignAudit.objects.create(
        tenant=campaign.tenant, campaign=campaign, event=event, user=user if getattr(user, "pk", None) else None, via=via,
        audience_size=campaign.audience_size, detail=detail[:300],
    )


def do_launch_campaign(tenant: Tenant, campaign_id: int, *, user: Any = None, via: str = "web") -> Campaign:
    """Freeze the audience, split it into treatment and control, start the clock; then the
    webhook (if any) delivers the treatment group in the background."""
    with tenant_context(tenant), transaction.atomic():
        # One launch per shop at a time: the audience leaves out the customers running campaigns
        # hold, so two launches at once would each take the same customers.
        lock_tenant(tenant)
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.state not in (Campaign.State.DRAFT, Campaign.State.SCHEDULED):
            raise CampaignStateError(f"A {campaign.get_state_display().lower()} campaign cannot be launched.")
        members = list(audience(campaign).values_list("customer_id", "stage", "churn_probability", "predicted_value", "action", "action_offer", "priority"))
        if not members:
            raise CampaignStateError("The audience is empty: nothing to launch." + (" Its customers are all in running campaigns already." if audience(campaign, leave_out_running=False).exists() else ""))
        control = control_group(campaign.pk, [customer for customer, *_ in members], campaign.control_share)
        CampaignMember.objects.bulk_create(
            [
                CampaignMember(
                    tenant=tenant, campaign=campaign, customer_id=customer, stage=stage, churn_probability=churn, predicted_value=value,
                    group=CampaignMember.Group.CONTROL if customer in control else CampaignMember.Group.TREATMENT,
                    offer_amount=offer if action == campaign.action else None,
                )
                for customer, stage, churn, value, action, offer, _ in members
            ],
            batch_size=2000,
            ignore_conflicts=True,
        )
        campaign.audience_size = len(members)
        if campaign.segment is not None:
            campaign.segment_at_launch = segment_snapshot(campaign.segment)
        campaign.value_at_risk = round(float(sum(priority or 0.0 for *_, priority in members)), 2)
        campaign.state = Campaign.State.RUNNING
        campaign.launched_at = timezone.now()
        campaign.updated_at = campaign.launched_at
        campaign.save()
        _audit(campaign, "launch", user, via, launch_summary(len(members), len(control)))
        if campaign.webhook_url:
            from campaigns.tasks import deliver_campaign_task
            from modeling.jobs import send_on_commit

            send_on_commit(deliver_campaign_task, tenant.pk, campaign.pk)
    refresh_statistics(CampaignMember)  # its reports join these rows next
    log.info("campaign %s launched for tenant %s: %s members", campaign.pk, tenant.slug, len(members))
    return campaign


def segment_snapshot(segment: Segment) -> dict[str, Any]:
    """What a launched campaign keeps of its segment (``Campaign.segment_at_launch``): who it
    was sent to, should the segment be changed or deleted. A learned or RFM segment's rule is
    its clustering, so only a saved segment's filters are kept."""
    return {"id": segment.pk, "name": segment.name, "kind": segment.kind, "filters": segment.filters if segment.kind == segment.Kind.SAVED else {}}


def kept_for_its_report(campaign: Campaign) -> str:
    """Why a launched campaign cannot be deleted, and what to do instead while it runs."""
    return "A launched campaign is kept for its report: it cannot be deleted." + (" An admin or owner can cancel it to stop it." if campaign.state == Campaign.State.RUNNING else "")


# What only admins and owners may set on a campaign, as only they launch one: a launch time
# launches it with nobody pressing Launch, and a webhook receives the treated customers'
# contact details.
ADMIN_FIELDS = ("scheduled_for", "webhook_url")


def goes_out_unattended(campaign: Campaign) -> bool:
    """A campaign not launched yet that will act with nobody pressing Launch, or send contact
    details out: an admin set its launch time or its webhook. Only admins and owners edit it,
    and the saved segment it targets, since an edit decides who is sent."""
    return campaign.launched_at is None and (campaign.scheduled_for is not None or bool(campaign.webhook_url))


ADMIN_EDITS = "Only an admin or owner can change a campaign with a launch time or a webhook: the change decides who is sent, and it goes out without anyone pressing Launch."
ADMIN_DELETES = "Only an admin or owner can delete a campaign with a launch time or a webhook: an admin or owner set it to go out."


def admin_fields_changed(campaign: Campaign | None, data: dict[str, Any]) -> list[str]:
    """The ADMIN_FIELDS that ``data`` would change on ``campaign`` (None: a new one)."""
    return [name for name in ADMIN_FIELDS
            if name in data and data[name] != (getattr(campaign, name) if campaign is not None else Campaign._meta.get_field(name).get_default())]


def launch_summary(audience_size: int, control: int) -> str:
    """What a launch did, in counts: "17 customers: 16 treated, 1 held out as control"."""
    if not control:
        return f"{_count(audience_size, 'customer')}, no control group (uplift cannot be measured)"
    return f"{_count(audience_size, 'customer')}: {audience_size - control:,} treated, {control:,} held out as control"


def audit_segment_changed(campaign: Campaign, segment: Any, before: tuple[str, int], *, user: Any, via: str) -> None:
    """The audit line of a campaign not launched yet whose saved segment was edited: whom it
    goes to changed without the campaign being edited."""
    name, size = before
    renamed = f"“{name}” is now “{segment.name}”; " if name != segment.name else ""
    _audit(campaign, "segment_changed", user, via, f"its saved segment changed: {renamed}{size:,} customers then, {segment.size:,} now")


def audit_saved(campaign: Campaign, *, created: bool, user: Any, via: str, changed: list[str] | None = None) -> None:
    """The audit line of a campaign created or edited by hand (web form or API)."""
    if created:
        # In UTC, as the audit keeps it: a form's time comes in the shop's time zone.
        when = f"; launch scheduled for {campaign.scheduled_for.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if campaign.scheduled_for else ""
        _audit(campaign, "draft", user, via, f"by hand{when}")
        return
    if not changed:
        return
    labels = [str(Campaign._meta.get_field(name).verbose_name) for name in changed if name in {f.name for f in Campaign._meta.get_fields()}]
    detail = "changed " + ", ".join(labels)
    if "scheduled_for" in changed:
        detail += f"; {'launch scheduled for ' + campaign.scheduled_for.astimezone(dt.UTC).strftime('%Y-%m-%d %H:%M') + ' UTC' if campaign.scheduled_for else 'schedule cleared'}"
    _audit(campaign, "edit", user, via, detail)


def do_cancel_campaign(tenant: Tenant, campaign_id: int, *, user: Any = None, via: str = "web") -> Campaign:
    with tenant_context(tenant), transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.state in (Campaign.State.COMPLETED, Campaign.State.CANCELLED):
            raise CampaignStateError(f"The campaign is already {campaign.get_state_display().lower()}.")
        campaign.state = Campaign.State.CANCELLED
        campaign.updated_at = timezone.now()
        campaign.save(update_fields=["state", "updated_at"])
        _audit(campaign, "cancel", user, via)
    return campaign


SCHEDULE_GRACE = dt.timedelta(minutes=5)  # a time just typed may be a few minutes old when it is saved


def webhook_url_problem(url: str) -> str | None:
    """Why a webhook URL cannot be used, or None (empty is no webhook). Where it may point is
    checked again at delivery (campaigns.webhooks), when the name is resolved."""
    if url and not url.startswith(("https://", "http://")):
        return "An http(s) URL."
    parts = urlsplit(url) if url else None
    if parts is not None and (parts.username or parts.password):  # every role reads the URL (its path only admins)
        return ("Put no user name or password in the URL: every delivery is signed with the campaign's webhook secret "
                "(X-CLM-Signature), which your endpoint checks instead.")
    from campaigns.webhooks import allow_private_networks, non_public_kind

    host = (urlsplit(url).hostname or "").rstrip(".").lower() if url else ""
    if host and not allow_private_networks():
        try:
            kind = non_public_kind(ipaddress.ip_address(host))
        except ValueError:  # a name: resolved, and checked, when the webhook is sent
            kind = "loopback" if host == "localhost" or host.endswith(".localhost") else None
        if kind is not None:
            return f"{host} is a {kind} address, and webhooks go to public internet addresses only: give your endpoint's public URL."
    return None


def webhook_host(url: str) -> str:
    """A webhook URL as viewers and analysts see it: where it goes, not its path or query, which
    often carry the receiver's token (a Slack or Zapier hook). Blank stays blank."""
    if not url:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/…" if parts.hostname else "…"


SCHEDULE_HORIZON = dt.timedelta(days=366)


def schedule_problem(when: dt.datetime | None) -> str | None:
    """Why a launch time cannot be used, or None: it must be to come (or empty), and within
    a year, as the audience is frozen from the predictions of the night before."""
    if when is not None and when < timezone.now() - SCHEDULE_GRACE:
        return "In the past: give a time to come, or leave it empty and launch by hand."
    if when is not None and when > timezone.now() + SCHEDULE_HORIZON:
        return f"More than {SCHEDULE_HORIZON.days} days ahead: schedule within a year, or leave it empty and launch by hand."
    return None


def complete_if_due(campaign: Campaign, now: dt.datetime | None = None) -> bool:
    """A running campaign whose attribution window has ended is completed."""
    now = now or timezone.now()
    if campaign.state == Campaign.State.RUNNING and campaign.attribution_ends and now >= campaign.attribution_ends:
        with tenant_context(campaign.tenant):
            Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.RUNNING).update(state=Campaign.State.COMPLETED, completed_at=now, updated_at=now)
            campaign.refresh_from_db()
            _audit(campaign, "complete", None, "system")
        return True
    return False


def run_schedule_in_process(tenant: Tenant) -> None:
    """Without a broker there is no beat: the campaign pages launch the shop's due campaigns
    when they are opened (the embedded default), as beat would have within 15 minutes."""
    from django.conf import settings

    if settings.CELERY_TASK_ALWAYS_EAGER:
        launch_due_campaigns(tenant)


def launch_due_campaigns(tenant: Tenant, now: dt.datetime | None = None) -> int:
    """Scheduled campaigns whose time has come are launched; running ones past their
    window are completed. Beat calls this every 15 minutes (the campaign pages do, without a broker)."""
    now = now or timezone.now()
    launched = 0
    with tenant_context(tenant):
        due = list(Campaign.objects.filter(state=Campaign.State.SCHEDULED, scheduled_for__lte=now).values_list("pk", flat=True))
        running = list(Campaign.objects.filter(state=Campaign.State.RUNNING))
    for pk in due:
        try:
            do_launch_campaign(tenant, pk, via="schedule")
            launched += 1
        except CampaignStateError as exc:
            # Back to draft, saying why, rather than retried hourly out of sight.
            log.warning("scheduled campaign %s not launched: %s", pk, exc)
            with tenant_context(tenant), transaction.atomic():
                campaign = Campaign.objects.select_for_update().filter(pk=pk, state=Campaign.State.SCHEDULED).first()
                if campaign is not None:
                    campaign.state, campaign.updated_at = Campaign.State.DRAFT, now
                    campaign.save(update_fields=["state", "updated_at"])
                    _audit(campaign, "edit", None, "schedule", f"scheduled launch not done: {exc} Back to draft.")
    for campaign in running:
        complete_if_due(campaign, now)
    return launched


# --- Outcomes ---------------------------------------------------------------------------------


@dataclass
class GroupOutcome:
    members: int
    converters: int
    revenue: float
    revenue_sq: float  # sum over members of (revenue per member)^2, for the variance

    @property
    def conversion(self) -> float:
        return self.converters / self.members if self.members else 0.0

    @property
    def revenue_per_member(self) -> float:
        return self.revenue / self.members if self.members else 0.0

    @property
    def revenue_variance(self) -> float:
        if self.members < 2:
            return 0.0
        mean = self.revenue_per_member
        return max(self.revenue_sq / self.members - mean * mean, 0.0) * self.members / (self.members - 1)

    def as_dict(self) -> dict[str, float]:
        return {"members": self.members, "converters": self.converters, "conversion": round(self.conversion, 6), "revenue": round(self.revenue, 2),
                "revenue_per_member": round(self.revenue_per_member, 4)}


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for one proportion: stays inside [0, 1] and keeps its coverage
    on small groups and rates near 0 or 1, where the Wald interval does not."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(centre - half, 0.0), min(centre + half, 1.0)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (Newcombe 1998, method 10): each side
    combines the two groups' Wilson limits. It never leaves [-1, 1] and, unlike the Wald
    interval, keeps close to its nominal coverage with a few dozen members per group."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    difference = p1 - p2
    return difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def welch_interval(t: GroupOutcome, c: GroupOutcome) -> tuple[float, float] | None:
    """Difference of mean revenue per member with Welch's t interval (unequal variances,
    Satterthwaite degrees of freedom): revenue is skewed, so small groups need the t quantile."""
    if t.members < 2 or c.members < 2:
        return None
    difference = t.revenue_per_member - c.revenue_per_member
    vt, vc = t.revenue_variance / t.members, c.revenue_variance / c.members
    se = math.sqrt(vt + vc)
    if se == 0:
        return None  # every member of each group spent the same: no spread to build an interval from
    df = (vt + vc) ** 2 / (vt * vt / (t.members - 1) + vc * vc / (c.members - 1))
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.975, df)) * se
    return difference - half, difference + half


SMALL_GROUP_MEMBERS = 30  # below this, or below SMALL_GROUP_CONVERSIONS, normal-theory intervals are rough
SMALL_GROUP_CONVERSIONS = 5


def _is_small(group: GroupOutcome) -> bool:
    return group.members < SMALL_GROUP_MEMBERS or group.converters < SMALL_GROUP_CONVERSIONS


def compare_groups(t: GroupOutcome, c: GroupOutcome, *, final: bool = False, currency: str = "") -> dict[str, Any]:
    """Uplift of treatment over control with 95% intervals, significance and the verdict.
    The report and the tests call this one function."""
    # Nobody in either group has ordered and more may: an uplift of 0 with a wide interval
    # would be drawn from nothing, so there is none yet, and the pages say "no orders yet".
    no_orders_yet = not t.converters and not c.converters and not final
    if not t.members or not c.members or no_orders_yet:
        return {"uplift": None, "uplift_ci": None, "significant": False, "revenue_uplift_per_member": None, "revenue_uplift_ci": None,
                "incremental_revenue": None, "incremental_revenue_ci": None, "incremental_conversions": None, "small_sample": _is_small(t) or _is_small(c),
                "no_orders_yet": no_orders_yet,
                "verdict": verdict(0.0, 0.0, 0.0, False, t, c) if no_orders_yet and t.members and c.members
                else "No control group to compare with: uplift cannot be measured."}
    uplift = t.conversion - c.conversion
    low, high = newcombe_interval(t.converters, t.members, c.converters, c.members)
    significant = low > 0 or high < 0
    revenue_uplift = t.revenue_per_member - c.revenue_per_member
    revenue_ci = welch_interval(t, c)
    small = _is_small(t) or _is_small(c)
    return {
        "uplift": round(uplift, 6),
        "uplift_ci": [round(low, 6), round(high, 6)],
        "significant": significant,
        "revenue_uplift_per_member": round(revenue_uplift, 4),
        "revenue_uplift_ci": [round(revenue_ci[0], 4), round(revenue_ci[1], 4)] if revenue_ci else None,
        "incremental_revenue": round(revenue_uplift * t.members, 2),
        "incremental_revenue_ci": [round(revenue_ci[0] * t.members, 2), round(revenue_ci[1] * t.members, 2)] if revenue_ci else None,
        "incremental_conversions": round(uplift * t.members, 1),
        "small_sample": small,
        "no_orders_yet": False,
        "verdict": verdict(uplift, low, high, significant, t, c, final=final) + revenue_verdict(revenue_uplift, revenue_ci, significant, currency),
    }


def revenue_verdict(uplift: float, ci: tuple[float, float] | None, conversion_significant: bool, currency: str) -> str:
    """A sentence on revenue per member where its interval says otherwise than conversion's:
    "Not significant yet" above a revenue interval of +8.02 to +45.98 read as a contradiction."""
    if ci is None or (ci[0] > 0 or ci[1] < 0) == conversion_significant:
        return ""
    money = f"{currency} {uplift:+,.2f}".strip()
    if conversion_significant:
        return f" Revenue per member moved by {money}, but its 95% interval ({ci[0]:+,.2f} to {ci[1]:+,.2f}) includes zero."
    return f" Revenue per member, though, moved by {money}, and its 95% interval ({ci[0]:+,.2f} to {ci[1]:+,.2f}) is clear of zero."


def group_outcomes(campaigns: list[Campaign], *, now: dt.datetime | None = None) -> dict[int, dict[str, GroupOutcome]]:
    """Per launched campaign and group: members, converters (a non-cancelled order in the
    attribution window) and the revenue sums, for every campaign in one query: each member
    with the sum of its orders in the window (none for a member who did not buy). The window
    runs from the launch to the end of attribution, or to now if that is earlier."""
    from django.db.models import Case, DateTimeField, OuterRef, Subquery, Value, When

    from customers.models import Order

    now = now or timezone.now()
    ends = {c.pk: min(c.attribution_ends, now) for c in campaigns if c.launched_at}
    if not ends:
        return {}
    revenue = (
        Order.objects.filter(customer_id=OuterRef("customer_id"), ordered_at__gt=OuterRef("campaign__launched_at"), ordered_at__lte=OuterRef("window_end"))
        .exclude(status__in=Order.NOT_REVENUE).values("customer_id").annotate(total=Sum("amount")).values("total")
    )
    members = (
        CampaignMember.objects.filter(campaign_id__in=ends)
        .annotate(window_end=Case(*[When(campaign_id=pk, then=Value(end)) for pk, end in ends.items()], output_field=DateTimeField()))
        .annotate(revenue=Subquery(revenue))
        .values_list("campaign_id", "group", "revenue")
    )
    sums = {pk: {name: [0, 0, 0.0, 0.0] for name in (CampaignMember.Group.TREATMENT, CampaignMember.Group.CONTROL)} for pk in ends}
    for campaign, group, spent in members.iterator(chunk_size=5000):
        totals = sums[campaign][group]
        totals[0] += 1
        if spent is not None:
            totals[1] += 1
            totals[2] += float(spent)
            totals[3] += float(spent) ** 2
    return {pk: {name: GroupOutcome(*totals) for name, totals in groups.items()} for pk, groups in sums.items()}


def outcomes(campaign: Campaign, *, now: dt.datetime | None = None, with_cumulative: bool = True,
             groups: dict[str, GroupOutcome] | None = None) -> dict[str, Any]:
    """Treatment vs control: conversion, revenue per member, uplift with a 95% CI and
    incremental revenue; plus cumulative conversion by day for the chart (the list page
    skips it, and passes the groups it measured for every campaign at once)."""
    from customers.models import Order

    if campaign.launched_at is None:
        return {"launched": False}
    now = now or timezone.now()
    end = min(campaign.attribution_ends, now)
    with tenant_context(campaign.tenant):
        result = groups or group_outcomes([campaign], now=now)[campaign.pk]
        cumulative = []
        if with_cumulative:
            members = dict(CampaignMember.objects.filter(campaign=campaign).values_list("customer_id", "group"))
            first = dict(
                Order.objects.filter(customer_id__in=CampaignMember.objects.filter(campaign=campaign).values("customer_id"),
                                     ordered_at__gt=campaign.launched_at, ordered_at__lte=end)
                .exclude(status__in=Order.NOT_REVENUE).values("customer_id").annotate(first=Min("ordered_at")).values_list("customer_id", "first")
            )
            # One point per whole day since launch, then one at the end of what is measured
            # (now, or the window's end): never a point in the future.
            # The last point is the end itself, labelled by its exact day ("end": True), not by
            # a rounded one that could fall before orders it should count.
            elapsed = max((end - campaign.launched_at).total_seconds() / 86400, 0.0)
            points = [(float(day), campaign.launched_at + dt.timedelta(days=day), False) for day in range(int(elapsed) + 1)]
            if elapsed > points[-1][0]:
                points.append((round(elapsed, 4), end, True))
            for day, cutoff, at_end in points:
                row = {"day": day, "end": at_end}
                for name, group in result.items():
                    converted = sum(1 for customer, when in first.items() if members.get(customer) == name and when <= cutoff)
                    row[name] = round(converted / group.members, 6) if group.members else None
                cumulative.append(row)
    t, c = result[CampaignMember.Group.TREATMENT], result[CampaignMember.Group.CONTROL]
    compared = compare_groups(t, c, final=now >= campaign.attribution_ends, currency=campaign.tenant.currency)
    if now < campaign.attribution_ends and compared.get("uplift_ci") and not compared["no_orders_yet"]:
        # A firm-sounding verdict a few hours after launch invites stopping early (peeking).
        day = min((now - campaign.launched_at).days + 1, campaign.attribution_days)
        compared["verdict"] += (f" Early reading: day {day} of {campaign.attribution_days}; it moves as orders come in, so judge the campaign "
                                f"when its window ends on {campaign.attribution_ends:%Y-%m-%d}.")
    if compared["no_orders_yet"] and campaign.state == Campaign.State.CANCELLED:  # nothing more is sent: "check back" read as if it were
        compared["verdict"] = (f"No orders from the audience since launch yet. The campaign was cancelled; its audience's orders still count "
                               f"until its window ends on {campaign.attribution_ends:%Y-%m-%d}.")
    return {
        "launched": True,
        "window_end": campaign.attribution_ends,
        "measured_until": end,
        "window_complete": now >= campaign.attribution_ends,
        "treatment": t.as_dict(),
        "control": c.as_dict(),
        # Customers deleted since launch leave both groups (with their orders): the outcome
        # compares those who remain, and says how many are gone.
        "members_removed": max((campaign.audience_size or 0) - t.members - c.members, 0),
        **compared,
        "cumulative": cumulative,
    }


def _points(value: float) -> str:
    """A difference of two rates in percentage points, signed: +4.2."""
    return f"{value * 100:+.1f}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def verdict(uplift: float, low: float, high: float, significant: bool, t: GroupOutcome, c: GroupOutcome, *, final: bool = False) -> str:
    """``final``: the attribution window has ended, so no more orders will count: the
    advice is for the next campaign."""
    if not t.converters and not c.converters:
        if final:
            return "No member of either group ordered in the attribution window: the campaign moved no one to buy."
        return "No orders from the audience since launch yet: check back as orders come in."
    if significant:
        direction = "raised" if uplift > 0 else "lowered"
        text = f"The campaign {direction} conversion by {abs(uplift) * 100:.1f} percentage points (95% CI {_points(low)} to {_points(high)} pp)."
    else:
        text = (f"{'Not significant' if final else 'Not significant yet'}: the difference is {_points(uplift)} percentage points, "
                f"but the 95% interval ({_points(low)} to {_points(high)} pp) includes zero.")
    small = [f"{name} has {_count(g.members, 'member')} and {_count(g.converters, 'conversion')}" for name, g in (("treatment", t), ("control", c))
             if _is_small(g)]
    if small:
        text += (f" Small sample: the {'; the '.join(small)}. With fewer than {SMALL_GROUP_MEMBERS} members or {SMALL_GROUP_CONVERSIONS}"
                 " conversions in a group the interval is only a rough guide: "
                 + ("use a larger audience next time." if final else "wait for more orders or use a larger audience."))
    return text


# --- Suggestions and delivery ---------------------------------------------------------------

SUGGESTED_ACTIONS = {
    Action.WIN_BACK: "Win back", Action.VIP_CARE: "VIP care for", Action.SECOND_PURCHASE: "Second purchase for",
    Action.SERVICE_RECOVERY: "Service recovery for", Action.CROSS_SELL: "Cross-sell to", Action.REACTIVATION_THANKS: "Welcome back",
    Action.RETENTION: "Retain", Action.CONVERT_PROSPECT: "Convert",
}


def suggested_campaigns(tenant: Tenant) -> list[dict[str, Any]]:
    """One suggestion per recommended action, biggest value at risk first: the customers and
    value at risk of the draft it makes (``audience`` of that draft, as its preview counts
    them), and of the others with the action, how many a running campaign has (treated, or held
    out: contacting a control member spoils that campaign's measurement) and how many declined
    the draft's channel."""
    with tenant_context(tenant):
        rows = list(CustomerInsight.objects.filter(action__in=list(SUGGESTED_ACTIONS)).values("action").annotate(n=Count("id"), at_risk=Sum("priority")))
        labels = dict(Action.choices)
        suggestions = []
        for r in rows:
            if not r["n"]:
                continue
            draft = _suggested_draft(tenant, r["action"])
            reach = audience(draft).aggregate(n=Count("id"), at_risk=Sum("priority"))
            said_no, held = left_out_of(draft, reach["n"])
            suggestions.append({
                "action": r["action"], "label": labels[r["action"]], "channel": draft.channel, "channel_label": draft.get_channel_display(),
                "customers": reach["n"], "value_at_risk": round(float(reach["at_risk"] or 0.0), 2),
                "with_action": r["n"], "value_at_risk_with_action": round(float(r["at_risk"] or 0.0), 2),
                "declined": said_no, "in_running": held,
                "title": f"{_count(r['n'], 'customer')} → {labels[r['action']]}",
            })
    return sorted(suggestions, key=lambda s: (-s["value_at_risk"], s["action"]))


def _suggested_draft(tenant: Tenant, action: str) -> Campaign:
    """The draft a suggestion makes, unsaved: its action's customers, on the channel most of
    their rules name (rules behind one action can differ; the preview counts the others)."""
    channel = (CustomerInsight.objects.filter(action=action).exclude(action_channel="").values("action_channel")
               .annotate(n=Count("id")).order_by("-n", "action_channel").values_list("action_channel", flat=True).first())
    return Campaign(tenant=tenant, action=action, channel=channel or Channel.EMAIL, filters={"actions": [action]})


def do_draft_from_suggestion(tenant: Tenant, action: str, *, user: Any = None) -> tuple[Campaign, bool]:
    """The draft campaign for a suggestion, and whether it was created now (a second click
    opens the draft the first one made, rather than a twin of it), as ``get_or_create``."""
    if action not in SUGGESTED_ACTIONS:
        raise CampaignStateError("No such suggestion.")
    suggestion = next((s for s in suggested_campaigns(tenant) if s["action"] == action), None)
    if suggestion is None:
        raise CampaignStateError("No customer has this recommended action now.")
    if not suggestion["customers"]:
        held = f"{suggestion['in_running']:,} in a running campaign already" if suggestion["in_running"] else ""
        said_no = f"{suggestion['declined']:,} declined {suggestion['channel_label']} marketing" if suggestion["declined"] else ""
        raise CampaignStateError(f"None of the {_count(suggestion['with_action'], 'customer')} with this action can be reached: {' and '.join(filter(None, (held, said_no)))}.")
    with tenant_context(tenant):
        existing = Campaign.objects.filter(state=Campaign.State.DRAFT, action=action, filters={"actions": [action]}).order_by("-created_at").first()
        if existing is not None:
            return existing, False
        # Named by action and day, not by the audience's size, which an edit of the filters changes;
        # a second campaign of the day gets a number.
        name = f"{suggestion['label']} · {shop_today(tenant).isoformat()}"
        taken = set(Campaign.objects.filter(name__startswith=name).values_list("name", flat=True))
        name = next(candidate for candidate in (name, *(f"{name} ({n})" for n in range(2, len(taken) + 2))) if candidate not in taken)
        campaign = Campaign.objects.create(
            tenant=tenant, name=name, goal=f"Act on the playbook: {suggestion['label']}", action=action,
            channel=suggestion["channel"], filters={"actions": [action]}, created_by=user if getattr(user, "pk", None) else None,
            offer="",  # each customer's own: the rules behind one action cap their offers differently
        )
        _audit(campaign, "draft", user, "web", f"from the suggestion “{suggestion['title']}”")
    return campaign, True


# The file is for people as well as for an email tool: each code is followed by its name.
AUDIENCE_CSV_COLUMNS = ["customer_id", "email", "name", "country", "stage", "stage_label", "action", "action_label", "offer", "offer_amount", "predicted_value"]
STAGE_LABELS = dict(Stage.choices)


def group_rows(campaign: Campaign, group: str = CampaignMember.Group.TREATMENT) -> QuerySet[CampaignMember]:
    """A launched campaign's treatment group (or its control group), by the shop's customer id."""
    return CampaignMember.objects.filter(campaign=campaign, group=group).select_related("customer").order_by("customer__external_id")


def member_record(campaign: Campaign, member: CampaignMember) -> dict[str, Any]:
    """One member as the CSV, the API and the webhook deliver it. ``offer`` is the campaign's
    when it has one for everyone, else the member's own from the playbook ("up to USD 12.50");
    ``offer_amount`` is that own amount as a number, for an email tool's merge field. A control
    member is held out: nothing is offered to them."""
    customer = member.customer
    held_out = member.group == CampaignMember.Group.CONTROL
    amount = None if member.offer_amount is None or held_out else str(member.offer_amount)
    own = f"up to {campaign.tenant.currency} {member.offer_amount:,.2f}" if amount is not None else ""
    return {"customer_id": customer.external_id, "email": customer.email, "name": customer.name, "country": customer.country, "stage": member.stage,
            "stage_label": STAGE_LABELS.get(member.stage, member.stage), "action": campaign.action, "action_label": campaign.get_action_display(),
            "offer": "" if held_out else campaign.offer or own, "offer_amount": None if campaign.offer else amount,
            "predicted_value": None if member.predicted_value is None else str(member.predicted_value)}


def write_audience_csv(campaign: Campaign, out: IO[str], group: str = CampaignMember.Group.TREATMENT) -> int:
    """The treatment group (or the control group: the customers to keep out of this message,
    with no offer), with every cell a spreadsheet could read as a formula escaped."""
    writer = csv.writer(out)
    writer.writerow(AUDIENCE_CSV_COLUMNS)
    count = 0
    with tenant_context(campaign.tenant):
        for member in group_rows(campaign, group).iterator():
            record = member_record(campaign, member)
            writer.writerow([spreadsheet_safe(record[c]) for c in AUDIENCE_CSV_COLUMNS])
            count += 1
    return count


def money(value: float) -> Decimal:
    return Decimal(str(round(value, 2)))
