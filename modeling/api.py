"""REST endpoints for models, jobs and predictions."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

import django_filters
from django import forms
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils import html

from campaigns.models import Action, Channel
from clmsite.api import (
    ChoiceField,
    Conflict,
    CreateModelMixin,
    DayField,
    ImportWordsMixin,
    MoneyField,
    TenantViewSet,
    conflict_response,
    created_at,
    json_type_name,
    money,
    refuse_a_body,
    refuse_unknown_fields,
)
from clmsite.filters import ChoiceFilter, ClmFilterSet, ProbabilityFilter
from clmsite.models import Role, role_at_least
from clmsite.permissions import request_role
from customers.models import Customer
from modeling import insights, jobs, registry
from modeling.models import CustomerInsight, Job, ModelVersion, Prediction, Segment, Stage, StageSnapshot
from modeling.scoring import NoActiveModel
from modeling.services import InvalidAsOf, NothingToLearn, TrainingAlreadyRunning, do_start_scoring, do_start_training
from modeling.training import FAMILIES, chosen_families


class ModelVersionListSerializer(serializers.ListSerializer):
    def to_representation(self, data: Any) -> list[Any]:
        versions = list(data.all() if hasattr(data, "all") else data)
        return super().to_representation(ModelVersion.with_run_purchase_importance(versions))


class ModelVersionSerializer(serializers.ModelSerializer):
    base_model = serializers.CharField(source="base_model_name", read_only=True, help_text="the encoder's name for a transformer, else the method")
    # The version's own, as its page shows them: older versions also stored the purchase model's.
    feature_importance = serializers.JSONField(source="own_feature_importance", read_only=True, help_text="[feature, share of gain] pairs, most important first")
    charts = serializers.JSONField(source="own_charts", read_only=True, help_text="the target's validation charts (calibration and gain, or deciles)")

    class Meta:
        model = ModelVersion
        fields = [
            "id", "number", "target", "family", "strategy", "base_model", "hyperparameters", "as_of", "horizon_days", "training_windows",
            "validation_window", "data_fingerprint", "metrics", "baseline_metrics", "feature_importance", "charts",
            "artifact_sha256", "state", "is_champion", "job", "created_at", "activated_at",
        ]
        read_only_fields = fields
        list_serializer_class = ModelVersionListSerializer

    def to_representation(self, instance: ModelVersion) -> dict[str, Any]:
        """``hyperparameters`` as the version's training stored them, but a path on the server
        (the encoder's ``base_model`` directory) by its name, as ``base_model`` is shown."""
        data = super().to_representation(instance)
        if isinstance(data.get("hyperparameters"), dict):
            data["hyperparameters"] = {key: ModelVersion(base_model=value).base_model_name if isinstance(value, str) and os.path.isabs(value) else value
                                       for key, value in data["hyperparameters"].items()}
        return data


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id", "kind", "state", "progress", "message", "params", "result", "attempts", "created_at", "started_at", "finished_at", "heartbeat_at"]
        read_only_fields = fields

    def to_representation(self, instance: Job) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["params"] = {k: v for k, v in (data["params"] or {}).items() if k not in PRIVATE_PARAMS}
        return data


# Where the worker keeps an upload, and the digest beat compares nightly: the server's business.
PRIVATE_PARAMS = {"path", "inputs"}


class PredictionSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)

    class Meta:
        model = Prediction
        fields = [
            "id", "customer", "customer_external_id", "as_of", "horizon_days", "purchase_probability", "churn_probability",
            "expected_orders", "predicted_value", "value_tier", "explanation", "value_explanation", "model_versions", "created_at",
        ]
        read_only_fields = fields


class RetrainSerializer(serializers.Serializer):
    as_of = DayField(required=False, help_text="default: today")
    horizon_days = serializers.IntegerField(required=False, min_value=7, max_value=730)  # as Settings takes it
    family = serializers.CharField(default="auto", max_length=100,
                                   help_text=f"auto (every family), or one or more of {', '.join(FAMILIES)}, comma-separated, as the CLI's --family: "
                                   "the families that may serve after this run. The best of them on this run's validation window is "
                                   "promoted for each target, replacing the serving version even when that is of a family left out "
                                   "(roll back to restore it)")
    sentiment_candidates = serializers.ListField(
        child=serializers.ChoiceField(choices=["ngram", "transformer"]), required=False, allow_empty=False, max_length=2,
        help_text="the review-sentiment models to train this time, as the CLI's --sentiment-candidates (default: the shop's setting, else both; "
                  "[\"ngram\"] skips fine-tuning the transformer, minutes on a CPU)")

    def validate_family(self, value: str) -> str:
        try:
            return ",".join(chosen_families(value)) if value != "auto" else value
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class ModelVersionFilter(ClmFilterSet):
    # A misspelt family is a 400, as a misspelt target is, not an empty list.
    family = ChoiceFilter(choices=[(name, name) for name in (*FAMILIES, "ngram")])

    class Meta:
        model = ModelVersion
        fields = ["target", "family", "state"]


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Model versions with their validation metrics next to the baselines'."""

    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilter
    ordering_fields = ["created_at", "as_of"]
    ordering = ["-created_at"]
    action_roles = {"retrain": Role.ADMIN, "promote": Role.ADMIN, "rollback": Role.ADMIN}

    def get_base_queryset(self) -> Any:
        return ModelVersion.objects.all()

    @extend_schema(request=RetrainSerializer, responses={202: JobSerializer, 409: conflict_response("A training is already queued or running, or the shop has no orders or reviews yet.")})
    @action(detail=False, methods=["post"])
    def retrain(self, request: Any) -> Response:
        """Queue a training of the shop's models (admin): each family chosen is fitted on windows before the validation window, and the best per target on that window serves. Answers the job to poll at ``/api/v1/jobs/{id}/``."""
        form = self.validated_form(RetrainSerializer, request.data)
        user = request.user if getattr(request.user, "pk", None) else None
        try:
            job = do_start_training(self.tenant, acting_user=user, **form)  # type: ignore[arg-type]
        except (TrainingAlreadyRunning, NothingToLearn) as exc:
            raise Conflict(str(exc)) from None
        except InvalidAsOf as exc:
            raise ValidationError({"as_of": [str(exc)]}) from None
        except NoActiveModel as exc:
            raise Conflict(str(exc)) from None
        job.refresh_from_db()
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED, headers=created_at(request, "job", job.pk))

    @extend_schema(request=None, responses={200: ModelVersionSerializer, 409: conflict_response("The version's training was cancelled or failed, so it cannot serve.")})
    @action(detail=True, methods=["post"])
    def promote(self, request: Any, pk: str | None = None) -> Response:
        """Make this version serve its target (admin), in place of the one serving now."""
        version = self.get_object()  # a missing or another shop's id is a 404 before anything about the body
        refuse_a_body(request)
        try:
            version = registry.do_promote_model_version(self.tenant, version.pk, acting_user=request.user if getattr(request.user, "pk", None) else None)  # type: ignore[arg-type]
        except registry.ArtifactError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        except registry.NotPromotable as exc:
            raise Conflict(str(exc)) from None
        return Response(ModelVersionSerializer(version).data)

    @extend_schema(request=inline_serializer("Rollback", {"target": serializers.ChoiceField(choices=ModelVersion.Target.values)}),
                   responses={200: ModelVersionSerializer, 409: conflict_response("There is no earlier version of the target to roll back to.")})
    @action(detail=False, methods=["post"])
    def rollback(self, request: Any) -> Response:
        """Restore the version of ``target`` that served before the current one (admin); each rollback steps one further back."""
        target = request.data.get("target") if hasattr(request.data, "get") else None  # the body may be a JSON list or null
        refuse_unknown_fields(request.data, ["target"])
        if target not in ModelVersion.Target.values:
            given = "This field is required" if target is None else f'"{target}" is not a target'
            raise ValidationError({"target": [f"{given}: send one of {', '.join(ModelVersion.Target.values)}."]})
        try:
            version = registry.do_rollback_model(self.tenant, target, acting_user=request.user if getattr(request.user, "pk", None) else None)  # type: ignore[arg-type]
        except registry.ArtifactError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        except ValueError as exc:  # no earlier version: the registry's state, not the request, says no
            raise Conflict(str(exc)) from None
        return Response(ModelVersionSerializer(version).data)


class ScoreSerializer(serializers.Serializer):
    as_of = DayField(required=False)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Background jobs (imports, training, scoring) with progress."""

    serializer_class = JobSerializer
    filterset_fields = ["kind", "state"]
    ordering = ["-created_at"]
    ordering_fields = ["created_at"]
    action_roles = {"cancel": Role.ANALYST, "score": Role.ANALYST}

    def get_base_queryset(self) -> Any:
        return Job.objects.all()

    @extend_schema(request=None, responses={200: JobSerializer, 409: conflict_response("The job has already finished.")})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Any, pk: str | None = None) -> Response:
        job = self.get_object()  # a missing or another shop's id is a 404 before anything about the body
        refuse_a_body(request)
        try:
            job = jobs.do_request_cancel(self.tenant, job.pk, role=request_role(request) or Role.VIEWER)  # type: ignore[arg-type]
        except jobs.CancelNotAllowed as exc:
            raise PermissionDenied(str(exc)) from None
        except jobs.JobFinished as exc:
            raise Conflict(str(exc)) from None
        return Response(JobSerializer(job).data)

    @extend_schema(request=ScoreSerializer, responses={202: JobSerializer, 409: conflict_response("No model serves one of the targets yet: train first.")})
    @action(detail=False, methods=["post"])
    def score(self, request: Any) -> Response:
        form = self.validated_form(ScoreSerializer, request.data)
        try:
            job = do_start_scoring(self.tenant, as_of=form.get("as_of"), acting_user=request.user if getattr(request.user, "pk", None) else None)  # type: ignore[arg-type]
        except InvalidAsOf as exc:
            raise ValidationError({"as_of": [str(exc)]}) from None
        except NoActiveModel as exc:
            raise Conflict(str(exc)) from None
        job.refresh_from_db()
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED, headers=created_at(request, "job", job.pk))


class PredictionFilter(ClmFilterSet):
    churn_probability__gte = ProbabilityFilter(field_name="churn_probability", lookup_expr="gte", label="churn probability at least (0 to 1)")
    churn_probability__lte = ProbabilityFilter(field_name="churn_probability", lookup_expr="lte", label="churn probability at most (0 to 1)")

    class Meta:
        model = Prediction
        fields = ["value_tier", "customer"]


@extend_schema_view(list=extend_schema(parameters=[OpenApiParameter("as_of", OpenApiTypes.DATE, description="the scoring date to list (default: the latest)")]))
class PredictionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Predictions; the list shows the latest as-of date unless ``?as_of=`` says otherwise."""

    serializer_class = PredictionSerializer
    filterset_class = PredictionFilter
    search_fields = ["customer__external_id", "customer__email"]
    ordering_fields = ["churn_probability", "purchase_probability", "predicted_value", "expected_orders"]
    ordering = ["-predicted_value"]
    list_query_params = ("as_of",)

    def get_base_queryset(self) -> Any:
        queryset = Prediction.objects.select_related("customer")
        if self.action != "list" or getattr(self, "swagger_fake_view", False):
            return queryset
        raw = self.request.query_params.get("as_of")
        if raw is not None and not raw.strip():  # as an empty filter is
            raise ValidationError({"as_of": ["Empty: give a value, or leave the parameter out."]})
        if raw:
            try:
                as_of = dt.date.fromisoformat(raw)
            except ValueError:
                raise ValidationError({"as_of": ["Enter a scoring date as YYYY-MM-DD (or YYYYMMDD), such as 2024-05-01."]}) from None
        else:
            as_of = insights.latest_scoring_date(self.tenant)  # a scoring still running (or failed) is not the latest
        return queryset.filter(as_of=as_of)


# --- Stages, segments and actions ---------------------------------------------------------


class InsightSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)
    # null when the customer has no such segment
    learned_segment_name = serializers.CharField(source="learned_segment.name", read_only=True, allow_null=True)
    rfm_segment_name = serializers.CharField(source="rfm_segment.name", read_only=True, allow_null=True)
    action_label = serializers.CharField(read_only=True)
    # Declared with their choices, so that the schema lists them as the Prediction's and the
    # Campaign's do (the model keeps them as plain text: the playbook writes them).
    value_tier = serializers.ChoiceField(choices=Prediction.Tier.choices, allow_blank=True, read_only=True, help_text="blank without a prediction")
    action = serializers.ChoiceField(choices=Action.choices, read_only=True)
    action_channel = serializers.ChoiceField(choices=Channel.choices, allow_blank=True, read_only=True)
    priority = MoneyField(help_text="the value at risk, which ranks the customers: the chance of an order in the horizon lost against their own pace x what they would spend if they ordered")

    class Meta:
        model = CustomerInsight
        fields = [
            "customer", "customer_external_id", "as_of", "stage", "stage_since", "stage_reason", "learned_segment", "learned_segment_name",
            "rfm_segment", "rfm_segment_name", "rfm_score", "sentiment", "churn_probability", "predicted_value", "value_tier", "priority",
            "action", "action_label", "action_channel", "action_offer", "action_detail", "action_reason", "rule_name",
        ]
        read_only_fields = fields


class StageSnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = StageSnapshot
        fields = ["as_of", "stage", "since", "reason"]
        read_only_fields = fields


class SavedFiltersSerializer(serializers.Serializer):
    """The filters a saved segment may use; anything else is refused."""

    stages = serializers.ListField(child=ChoiceField(choices=Stage.values), required=False)
    value_tiers = serializers.ListField(child=ChoiceField(choices=["high", "medium", "low"]), required=False)
    actions = serializers.ListField(child=ChoiceField(choices=Action.values), required=False)
    churn_min = serializers.FloatField(min_value=0, max_value=1, required=False)
    churn_max = serializers.FloatField(min_value=0, max_value=1, required=False)
    sentiment_min = serializers.FloatField(min_value=-1, max_value=1, required=False)
    sentiment_max = serializers.FloatField(min_value=-1, max_value=1, required=False)
    spend_min = serializers.FloatField(min_value=0, required=False)
    spend_max = serializers.FloatField(min_value=0, required=False)
    orders_min = serializers.IntegerField(min_value=0, required=False)
    orders_max = serializers.IntegerField(min_value=0, required=False)
    category = serializers.CharField(max_length=128, required=False)
    country = serializers.CharField(max_length=64, required=False)
    # Bounds: min and max include their value, a date "after" its day and "before" not (the
    # shop's days), as the customer list's ?last_order_after= and ?last_order_before= do.
    first_order_after = DayField(required=False, help_text="first order on or after this day (the day included)")
    last_order_before = DayField(required=False, help_text="last order before this day (the day excluded)")
    last_order_after = DayField(required=False, help_text="last order on or after this day (the day included)")

    def get_value(self, dictionary: Any) -> Any:
        """In a form-encoded or multipart body, ``filters`` is one field holding the JSON object
        (as a customer's ``attributes`` is): DRF would look for ``filters.stages`` keys instead,
        find none, and read ``filters={"stages": ["lapsed"]}`` as no filters, every customer."""
        if html.is_html_input(dictionary) and self.field_name in dictionary:
            raw = dictionary.get(self.field_name)
            try:
                return json.loads(raw)
            except (TypeError, ValueError):
                return raw  # refused below, under the field's name
        return super().get_value(dictionary)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValidationError({api_settings.NON_FIELD_ERRORS_KEY: ['Must be a JSON object, e.g. {"stages": ["lapsed"]}.']})
        # Every problem at once (a field's errors are a list, as everywhere): an unknown filter,
        # a number given as true or false (DRF reads true as 1), and what the fields say.
        errors = {key: [f"unknown filter; the filters are {', '.join(self.fields)}"] for key in sorted(set(data) - set(self.fields))}
        errors.update({key: [f"Must be a number, not {json_type_name(value)}."] for key, value in data.items()
                       if isinstance(value, bool) and isinstance(self.fields.get(key), serializers.FloatField | serializers.IntegerField)})
        try:
            values = super().to_internal_value({key: value for key, value in data.items() if key not in errors})
        except ValidationError as exc:
            errors.update(exc.detail)
        if errors:
            raise ValidationError(errors)
        crossed = insights.crossed_filter_ranges(values)
        if crossed:
            raise ValidationError({field: [message] for field, message in crossed.items()})
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in values.items()}


class SegmentSerializer(ImportWordsMixin, serializers.ModelSerializer):
    filters = SavedFiltersSerializer(required=False)

    class Meta:
        model = Segment
        fields = ["id", "kind", "key", "name", "description", "filters", "stats", "size", "is_current", "created_at", "updated_at"]
        read_only_fields = ["id", "kind", "key", "description", "stats", "size", "is_current", "created_at", "updated_at"]

    def to_representation(self, instance: Segment) -> dict[str, Any]:
        data = super().to_representation(instance)
        if isinstance(data.get("stats"), dict) and "mean_value" in data["stats"]:  # money as the API writes it; none for no members
            stats = data["stats"]
            data["stats"] = {**stats, "mean_value": money(stats["mean_value"]) if stats.get("size") else None}
        return data

    def validate_name(self, value: str) -> str:
        if insights.saved_name_taken(value.strip(), other_than=self.instance.pk if self.instance is not None else None):
            raise ValidationError(str(insights.SegmentNameTaken()))
        return value.strip()


class StrictBooleanField(forms.NullBooleanField):
    widget = forms.TextInput  # the raw text, so that a value neither true nor false can be refused

    def to_python(self, value: Any) -> bool | None:
        text = str(value if value is not None else "").strip().lower()
        if text in {"true", "1"}:
            return True
        if text in {"false", "0"}:
            return False
        if text:
            raise forms.ValidationError("Must be true or false.", code="invalid")
        return None


class BooleanFilter(django_filters.BooleanFilter):
    """``true`` or ``false`` (or 1 and 0), else a 400: django-filter's own reads any other
    value as no filter, so that ``?is_current=yes`` answered every segment."""

    field_class = StrictBooleanField


class SegmentFilter(ClmFilterSet):
    is_current = BooleanFilter()

    class Meta:
        model = Segment
        fields = ["kind", "is_current"]


class SegmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, TenantViewSet):
    """Learned, RFM and saved segments. Create, edit and delete apply to saved segments, whose
    ``filters`` are live: ``members`` lists the customers matching them now."""

    serializer_class = SegmentSerializer
    filterset_class = SegmentFilter
    search_fields = ["name"]
    ordering_fields = ["size", "name"]
    ordering = ["kind", "-size"]
    write_role = Role.ANALYST

    def get_base_queryset(self) -> Any:
        return Segment.objects.all()

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = insights.do_create_saved_segment(self.tenant, data["name"], data.get("filters", {}), created_by=self.request.user)
        except insights.SegmentNameTaken as exc:
            raise ValidationError({"name": [str(exc)]}) from None

    @extend_schema(responses={200: SegmentSerializer, 409: conflict_response("The segment is a learned or RFM one, which follows the data.")},
                   description="Change a saved segment's `name` or `filters`, the fields the body sends; `filters` is replaced as a whole, "
                   "so send every filter the segment keeps (`{}` for none). Its members, the drafts that target it and the next snapshots follow; "
                   "a launched campaign keeps its frozen audience. A segment that a campaign with a launch time or a webhook targets is changed "
                   "by an admin or owner only (403).")
    def partial_update(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        if self.get_object().kind != Segment.Kind.SAVED:  # 404 first, then this, then anything about the body
            raise Conflict("Only saved segments can be changed; learned and RFM segments follow the data.")
        return super().partial_update(request, *args, **kwargs)

    def perform_update(self, serializer: Any) -> None:
        data = serializer.validated_data
        try:
            serializer.instance = insights.do_edit_saved_segment(serializer.instance, name=data.get("name"), filters=data.get("filters"),
                                                                 by_admin=role_at_least(request_role(self.request) or Role.VIEWER, Role.ADMIN),
                                                                 user=self.request.user, via="api")
        except insights.SegmentNameTaken as exc:
            raise ValidationError({"name": [str(exc)]}) from None
        except insights.SegmentNeedsAdmin as exc:
            raise PermissionDenied(str(exc)) from None

    def perform_destroy(self, instance: Segment) -> None:
        if instance.kind != Segment.Kind.SAVED:
            raise Conflict("Only saved segments can be deleted; learned and RFM segments follow the data.")
        try:
            insights.do_delete_saved_segment(instance)
        except insights.SegmentInUse as exc:  # the state of a campaign, not the request, is in the way
            raise Conflict(str(exc)) from None

    @extend_schema(responses={204: None, 409: conflict_response("A draft or scheduled campaign targets the segment (`detail` names it), or the segment is a learned or RFM one.")})
    def destroy(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)

    @extend_schema(responses={200: InsightSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def members(self, request: Any, pk: str | None = None) -> Response:
        members = insights.segment_members(self.get_object()).select_related("customer", "learned_segment", "rfm_segment").order_by("-priority", "customer_id")
        page = self.paginate_queryset(members)
        return self.get_paginated_response(InsightSerializer(page, many=True).data)


class InsightFilter(ClmFilterSet):
    # Choices, as ``stage``'s are: a misspelt action or tier is a 400, not an empty list.
    action = ChoiceFilter(choices=Action.choices)
    value_tier = ChoiceFilter(choices=Prediction.Tier.choices)

    class Meta:
        model = CustomerInsight
        fields = ["stage", "action", "value_tier", "learned_segment", "rfm_segment"]


class InsightViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Each customer's stage, segments and recommended next action, looked up by the
    customer's numeric ``id`` (as in /customers/, not the imported customer_id); ``stages``
    is the customer's stage history."""

    serializer_class = InsightSerializer
    lookup_field = "customer"
    lookup_value_regex = "[0-9]{1,18}"  # a customer id (a bigint): anything else answers 404 like a missing one
    filterset_class = InsightFilter
    search_fields = ["customer__external_id", "customer__email"]
    ordering_fields = ["priority", "churn_probability", "predicted_value"]
    ordering = ["-priority"]

    def get_base_queryset(self) -> Any:
        return CustomerInsight.objects.select_related("customer", "learned_segment", "rfm_segment")

    def get_object(self) -> Any:
        try:
            return super().get_object()
        except Http404:
            # The shop's own customer, not scored yet, is not "no such customer" (a foreign or
            # missing id still is: Customer's manager is the shop's).
            if Customer.objects.filter(pk=self.kwargs["customer"]).exists():
                raise NotFound("This customer has no insight yet: a scoring adds one for every customer it finds "
                               "(one loaded since the last scoring waits for the next).") from None
            raise

    @extend_schema(responses={200: StageSnapshotSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def stages(self, request: Any, customer: str | None = None) -> Response:
        insight = self.get_object()
        snapshots = StageSnapshot.objects.filter(customer_id=insight.customer_id).order_by("as_of")
        page = self.paginate_queryset(snapshots)  # a list like every other: {count, next, previous, results}
        return self.get_paginated_response(StageSnapshotSerializer(page, many=True).data)
