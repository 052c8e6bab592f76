"""REST endpoints for campaigns: CRUD on drafts, launch, cancel, report and the audience."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from campaigns import services
from campaigns.models import Action, Campaign, CampaignMember
from campaigns.webhooks import delivery_summary
from clmsite.api import (
    ChoiceField,
    Conflict,
    CreateModelMixin,
    ImportWordsMixin,
    MoneyField,
    TenantViewSet,
    conflict_response,
    money,
    refuse_a_body,
)
from clmsite.models import Role, role_at_least
from clmsite.permissions import request_role
from modeling.api import SavedFiltersSerializer
from modeling.models import Segment, Stage


@extend_schema_field({"anyOf": [{"type": "string", "format": "uri", "maxLength": 500}, {"type": "string", "maxLength": 0}]})
class WebhookUrlField(serializers.URLField):
    """An http(s) URL, or "" for no webhook: documented as anyOf, since "" is no URI (a oneOf
    of the two, drf-spectacular's for a blank URLField, left "" matching both branches)."""


class CampaignSerializer(ImportWordsMixin, serializers.ModelSerializer):
    serializer_choice_field = ChoiceField  # a refused action or channel lists the choices
    webhook_url = WebhookUrlField(max_length=500, required=False, allow_blank=True, help_text=(
        "where the audience is POSTed at launch; blank for none. Viewers and analysts read only its scheme and host (https://hooks.example.com/…): "
        "its path and query may hold the receiver's token"))
    filters = SavedFiltersSerializer(required=False)
    segment = serializers.PrimaryKeyRelatedField(queryset=Segment.objects.all(), required=False, allow_null=True)  # scoped to the tenant
    control_share = serializers.FloatField(min_value=0.0, max_value=0.5, default=0.1)
    attribution_days = serializers.IntegerField(min_value=1, max_value=365, default=30)
    audience_size = serializers.IntegerField(read_only=True, allow_null=True, help_text=(
        "customers in the audience, treated and control, counted when it launched; null before the launch (the report's preview has the live count)"))
    value_at_risk = MoneyField(allow_null=True, help_text=(
        "the audience's value at risk (the chance of an order each has lost against their usual pace x what they would spend if they ordered, summed) at launch; null before the launch"))

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "goal", "action", "channel", "segment", "filters", "persuadable_only", "skip_running", "offer", "control_share", "attribution_days",
            "scheduled_for", "webhook_url", "state", "audience_size", "value_at_risk", "launched_at", "completed_at", "created_at",
            "segment_at_launch",
        ]
        read_only_fields = ["id", "state", "audience_size", "value_at_risk", "launched_at", "completed_at", "created_at", "segment_at_launch"]

    def to_representation(self, instance: Campaign) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.launched_at is None:  # counted at launch, as the pages say: not 0 before
            data["audience_size"] = data["value_at_risk"] = None
        if not self.context.get("admin", True):  # its path and query may be the receiver's token: admins and owners see them
            data["webhook_url"] = services.webhook_host(data.get("webhook_url") or "")
        return data

    def validate_webhook_url(self, value: str) -> str:
        if not self.context.get("admin", True):
            if self.instance is not None and value == services.webhook_host(self.instance.webhook_url):
                return self.instance.webhook_url  # the answer sent back as it was read: unchanged
            return value
        problem = services.webhook_url_problem(value)
        if problem:
            raise ValidationError(problem)
        return value

    def validate_scheduled_for(self, value: Any) -> Any:
        if not self.context.get("admin", True):  # refused whatever it is (the view's 403): advice on a valid time would mislead
            return value
        problem = services.schedule_problem(value)
        if problem:
            raise ValidationError(problem)
        return value


class CampaignWithSecretSerializer(CampaignSerializer):
    """What admins and owners see: also the webhook secret, so they can verify signatures.
    Viewers and analysts get ``CampaignSerializer``, without it."""

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "webhook_secret"]
        read_only_fields = [*CampaignSerializer.Meta.read_only_fields, "webhook_secret"]
        extra_kwargs = {"webhook_secret": {"help_text": "admins and owners only (others never get the field): verifies the webhook's signatures"}}


class CampaignWithSecretSchema(OpenApiSerializerExtension):
    """The schema documents every role's campaign with this serializer, and a viewer's or an
    analyst's answer has no ``webhook_secret``: the field is optional, not required as
    drf-spectacular makes every read-only field."""

    target_class = CampaignWithSecretSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        required = [name for name in schema.pop("required", []) if name != "webhook_secret"]
        return {**schema, "required": required} if required else schema


GROUP_HELP = "members, converters, conversion (a fraction), revenue and revenue_per_member (money, as decimal strings)"
REPORT_MONEY = {"revenue_uplift_per_member", "revenue_uplift_ci", "incremental_revenue", "incremental_revenue_ci"}
# A part of the report (a group's outcome, the preview before the launch) and its money keys.
PART_MONEY = {"treatment": ("revenue", "revenue_per_member"), "control": ("revenue", "revenue_per_member"), "preview": ("value_at_risk", "predicted_value")}


def money_in_report(key: str, value: Any) -> Any:
    """A report's money figures as the API writes money (decimal strings): its revenue keys, and a part's."""
    if key in PART_MONEY and isinstance(value, dict):
        return {**value, **{k: money(value[k]) for k in PART_MONEY[key] if k in value}}
    if key in REPORT_MONEY:
        return [money(v) for v in value] if isinstance(value, list) else money(value)
    return value


class AudienceMemberSerializer(serializers.Serializer):
    customer = serializers.IntegerField(help_text="the customer's id in this API (/customers/{id}/)")
    customer_id = serializers.CharField(help_text="the shop's own customer id, as imported (the CSV's and the webhook's customer_id)")
    email = serializers.CharField()
    name = serializers.CharField()
    country = serializers.CharField()
    stage = serializers.ChoiceField(choices=Stage.choices, allow_blank=True, help_text="at launch")
    stage_label = serializers.CharField()
    action = serializers.ChoiceField(choices=Action.choices, help_text="the campaign's action")
    action_label = serializers.CharField()
    offer = serializers.CharField(help_text="blank in the control group: nothing is offered to them")
    offer_amount = serializers.CharField(allow_null=True, help_text="the member's own offer as a number, when the campaign has none for everyone (null in the control group)")
    predicted_value = serializers.CharField(allow_null=True)


# A campaign's state conflicts (launching a running one, editing or deleting a launched one)
# answer 409, as a finished job's cancel does: the request was well formed, the state says no.
NOT_A_DRAFT = conflict_response("The campaign's state does not allow this (`detail` says why).")


@extend_schema_view(partial_update=extend_schema(responses={200: CampaignWithSecretSerializer, 409: NOT_A_DRAFT}),
                    destroy=extend_schema(responses={204: None, 409: NOT_A_DRAFT}))
class CampaignViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet):
    """Campaigns. Analysts create and edit drafts; admins launch and cancel. ``report`` has
    the outcome (uplift with its 95% CI); ``audience`` lists the launched treatment group (``?group=control``: the control group).
    Admins and owners also get ``webhook_secret`` (to verify the webhook's signatures);
    viewers and analysts never see it."""

    serializer_class = CampaignSerializer
    filterset_fields = ["state", "action"]
    search_fields = ["name"]
    ordering = ["-created_at"]
    ordering_fields = ["created_at", "launched_at"]
    action_roles = {"launch": Role.ADMIN, "cancel": Role.ADMIN, "rotate_webhook_secret": Role.ADMIN}

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # Without a broker there is no beat: a due campaign launches when the API reads the
        # shop's campaigns too, not only when a campaign page is opened (an API-only client
        # saw "scheduled" past its time).
        services.run_schedule_in_process(self.tenant)  # type: ignore[arg-type]

    def get_base_queryset(self) -> Any:
        return Campaign.objects.select_related("segment")

    def get_serializer_class(self) -> type[CampaignSerializer]:
        # The schema documents the field too (drf-spectacular's fake view), marked for admins.
        return CampaignWithSecretSerializer if self._sees_secret() or getattr(self, "swagger_fake_view", False) else CampaignSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "admin": self._sees_secret()}

    def _sees_secret(self) -> bool:
        role = request_role(self.request) if getattr(self, "request", None) is not None else None
        return role is not None and role_at_least(role, Role.ADMIN)

    def _state_for(self, serializer: Any) -> str:
        return Campaign.State.SCHEDULED if serializer.validated_data.get("scheduled_for") else Campaign.State.DRAFT

    def _refuse_admin_fields(self, campaign: Campaign | None, data: dict[str, Any]) -> None:
        changed = [] if self._sees_secret() else services.admin_fields_changed(campaign, data)
        if changed:
            raise PermissionDenied(f"Only an admin or owner can set {' and '.join(changed)}: a launch time launches the campaign without anyone "
                                   "pressing Launch, and a webhook receives the treated customers' contact details.")

    def perform_create(self, serializer: Any) -> None:
        self._refuse_admin_fields(None, serializer.validated_data)
        url = serializer.validated_data.get("webhook_url")
        campaign = serializer.save(tenant=self.tenant, state=self._state_for(serializer), created_by=self.request.user if getattr(self.request.user, "pk", None) else None,
                                   webhook_secret=services.new_webhook_secret() if url else "")
        services.audit_saved(campaign, created=True, user=self.request.user, via="api")

    def update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        if self.get_object().state not in (Campaign.State.DRAFT, Campaign.State.SCHEDULED):  # the state first: fixing the body would not help
            raise Conflict("A launched campaign cannot be edited.")
        return super().update(request, *args, **kwargs)

    def perform_update(self, serializer: Any) -> None:
        with transaction.atomic():
            # Locked as a launch locks it, so that an edit cannot slip in beside a launch.
            state = Campaign.objects.select_for_update().values_list("state", flat=True).get(pk=serializer.instance.pk)
            if state not in (Campaign.State.DRAFT, Campaign.State.SCHEDULED):
                raise Conflict("A launched campaign cannot be edited.")
            self._save_edit(serializer)

    def _save_edit(self, serializer: Any) -> None:
        if not self._sees_secret() and services.goes_out_unattended(serializer.instance):
            raise PermissionDenied(services.ADMIN_EDITS)
        self._refuse_admin_fields(serializer.instance, serializer.validated_data)
        extra = {"webhook_secret": services.new_webhook_secret()} if serializer.validated_data.get("webhook_url") and not serializer.instance.webhook_secret else {}
        before = {name: getattr(serializer.instance, name) for name in serializer.validated_data}
        campaign = serializer.save(state=self._state_for(serializer) if "scheduled_for" in serializer.validated_data else serializer.instance.state, updated_at=timezone.now(), **extra)
        changed = [name for name, value in before.items() if getattr(campaign, name) != value]
        services.audit_saved(campaign, created=False, user=self.request.user, via="api", changed=changed)

    def perform_destroy(self, instance: Campaign) -> None:
        if not self._sees_secret() and services.goes_out_unattended(instance):
            raise PermissionDenied(services.ADMIN_DELETES)
        if not instance.is_deletable:
            raise Conflict(services.kept_for_its_report(instance))
        instance.delete()

    def _act(self, request: Any, act: Any) -> Response:
        """Run one of the services' ``do_…`` on the campaign (launch, cancel, a new secret): a
        missing or another shop's id is a 404 before anything about the body, and a state the
        action does not apply to a 409."""
        campaign = self.get_object()
        refuse_a_body(request)
        try:
            campaign = act(self.tenant, campaign.pk, user=request.user, via="api")
        except services.CampaignStateError as exc:
            raise Conflict(str(exc)) from None
        return Response(self.get_serializer_class()(campaign).data)

    @extend_schema(request=None, responses={200: CampaignWithSecretSerializer, 409: conflict_response("Not a draft or a scheduled campaign, or its audience is empty.")})
    @action(detail=True, methods=["post"])
    def launch(self, request: Any, pk: str | None = None) -> Response:
        return self._act(request, services.do_launch_campaign)

    @extend_schema(request=None, responses={200: CampaignWithSecretSerializer, 409: conflict_response("The campaign has no webhook.")})
    @action(detail=True, methods=["post"], url_path="rotate-webhook-secret")
    def rotate_webhook_secret(self, request: Any, pk: str | None = None) -> Response:
        """A new webhook signing secret (admin), answered once here and on the admin's reads: every delivery from now on is signed with it, and the old one stops verifying."""
        return self._act(request, services.do_rotate_webhook_secret)

    @extend_schema(request=None, responses={200: CampaignWithSecretSerializer, 409: conflict_response("The campaign is already completed or cancelled.")})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Any, pk: str | None = None) -> Response:
        return self._act(request, services.do_cancel_campaign)

    @extend_schema(responses={200: inline_serializer("CampaignReport", {
        "launched": serializers.BooleanField(), "treatment": serializers.DictField(required=False, help_text=GROUP_HELP), "control": serializers.DictField(required=False, help_text=GROUP_HELP),
        "uplift": serializers.FloatField(required=False, allow_null=True, help_text="treatment's conversion minus control's, as a fraction: 0.104 is 10.4 percentage points"),
        "uplift_ci": serializers.ListField(child=serializers.FloatField(), required=False, allow_null=True, help_text="95% interval of `uplift`, as fractions"),
        "significant": serializers.BooleanField(required=False, help_text="whether `uplift_ci` (conversion) excludes zero; `revenue_uplift_ci` says the same of revenue"), "small_sample": serializers.BooleanField(required=False, help_text=(
            f"a group has fewer than {services.SMALL_GROUP_MEMBERS} members or {services.SMALL_GROUP_CONVERSIONS} buyers (or none yet): any interval is a rough guide")),
        "no_orders_yet": serializers.BooleanField(required=False, help_text="no member of either group has ordered yet: the uplift and its intervals are null until one does"),
        "revenue_uplift_per_member": MoneyField(required=False, allow_null=True),
        "revenue_uplift_ci": serializers.ListField(child=MoneyField(), required=False, allow_null=True),
        "incremental_revenue": MoneyField(required=False, allow_null=True, help_text="revenue uplift per member x treated members"),
        "incremental_revenue_ci": serializers.ListField(child=MoneyField(), required=False, allow_null=True, help_text="95% interval of `incremental_revenue`"),
        "incremental_conversions": serializers.FloatField(required=False, allow_null=True),
        "window_end": serializers.DateTimeField(required=False, help_text="the end of the attribution window"),
        "measured_until": serializers.DateTimeField(required=False, help_text="orders are counted up to here: the window's end, or now"),
        "window_complete": serializers.BooleanField(required=False),
        "members_removed": serializers.IntegerField(required=False, help_text="customers launched to and deleted since: they leave both groups"),
        "verdict": serializers.CharField(required=False),
        "webhook": inline_serializer("WebhookDeliverySummary", {
            "batches": serializers.IntegerField(allow_null=True, help_text="null until the first attempt"), "delivered": serializers.IntegerField(),
            "attempts": serializers.IntegerField(), "last_error": serializers.CharField(help_text="the last failed attempt's error, blank if none failed"),
            "last_attempt_at": serializers.DateTimeField(allow_null=True)}, required=False, allow_null=True,
            help_text="launched campaigns: how the webhook delivery went; null without a webhook"),
        "preview": serializers.DictField(required=False, help_text="before launch: size, value_at_risk and predicted_value (money, as decimal strings), control, launch_summary, left_out_running (customers other running campaigns hold), left_out_declined (customers who declined the channel's marketing: "
                                                                  "their accepts_email_marketing, or accepts_sms_marketing for sms, attribute is no), note")})})
    @action(detail=True, methods=["get"])
    def report(self, request: Any, pk: str | None = None) -> Response:
        campaign = self.get_object()
        services.complete_if_due(campaign)
        report = services.outcomes(campaign)
        if not report.get("launched"):
            return Response({"launched": False, "preview": money_in_report("preview", services.preview(campaign))})
        report = {k: money_in_report(k, v) for k, v in report.items() if k != "cumulative"}
        when = serializers.DateTimeField()  # as every other time the API writes (UTC as Z)
        webhook = delivery_summary(campaign)
        if webhook is not None and webhook["last_attempt_at"] is not None:
            webhook["last_attempt_at"] = when.to_representation(webhook["last_attempt_at"])
        return Response({**report, "window_end": when.to_representation(report["window_end"]), "measured_until": when.to_representation(report["measured_until"]),
                         "webhook": webhook})

    def page_query_params(self) -> list[str]:
        return [*super().page_query_params(), *(["group"] if self.action == "audience" else [])]

    @extend_schema(parameters=[OpenApiParameter("group", str, enum=CampaignMember.Group.values, description=(
        "treatment (the default): the customers the campaign reaches, with their offers; control: the customers held out "
        "to measure it against, to keep out of the message (no offer)"))], responses={200: AudienceMemberSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def audience(self, request: Any, pk: str | None = None) -> Response:
        campaign = self.get_object()
        group = request.query_params.get("group", CampaignMember.Group.TREATMENT).lower()  # a choice without case, as every filter's
        if group not in CampaignMember.Group.values:
            raise ValidationError({"group": [f'"{group[:40]}" is not one of: {", ".join(CampaignMember.Group.values)}.']})
        page = self.paginate_queryset(services.group_rows(campaign, group))
        # ``customer`` as every other resource names it (the id of /customers/{id}/); ``customer_id``
        # is the shop's own id, as in the CSV and the webhook.
        return self.get_paginated_response([{"customer": member.customer_id, **services.member_record(campaign, member)} for member in page])


