"""REST endpoints for models, jobs and predictions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from clmsite.api import TenantViewSet
from clmsite.models import Role
from modeling import jobs, registry
from modeling.models import Job, ModelVersion, Prediction
from modeling.services import TrainingAlreadyRunning, do_start_scoring, do_start_training
from modeling.training import FAMILIES


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id", "target", "family", "strategy", "base_model", "hyperparameters", "as_of", "horizon_days", "training_windows",
            "validation_window", "data_fingerprint", "metrics", "baseline_metrics", "feature_importance", "charts",
            "artifact_sha256", "state", "is_champion", "job", "created_at", "activated_at",
        ]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id", "kind", "state", "progress", "message", "params", "result", "attempts", "created_at", "started_at", "finished_at", "heartbeat_at"]
        read_only_fields = fields


class PredictionSerializer(serializers.ModelSerializer):
    customer_external_id = serializers.CharField(source="customer.external_id", read_only=True)

    class Meta:
        model = Prediction
        fields = [
            "id", "customer", "customer_external_id", "as_of", "horizon_days", "purchase_probability", "churn_probability",
            "expected_orders", "predicted_value", "value_tier", "explanation", "model_versions", "created_at",
        ]
        read_only_fields = fields


class RetrainSerializer(serializers.Serializer):
    as_of = serializers.DateField(required=False, help_text="default: today")
    horizon_days = serializers.IntegerField(required=False, min_value=1, max_value=730)
    family = serializers.ChoiceField(choices=["auto", *FAMILIES], default="auto")


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Model versions with their validation metrics next to the baselines'."""

    serializer_class = ModelVersionSerializer
    filterset_fields = ["target", "family", "state"]
    ordering_fields = ["created_at", "as_of"]
    ordering = ["-created_at"]
    action_roles = {"retrain": Role.ADMIN, "promote": Role.ADMIN, "rollback": Role.ADMIN}

    def get_base_queryset(self) -> Any:
        return ModelVersion.objects.all()

    @extend_schema(request=RetrainSerializer, responses={202: JobSerializer, 409: inline_serializer("Conflict", {"detail": serializers.CharField()})})
    @action(detail=False, methods=["post"])
    def retrain(self, request: Any) -> Response:
        form = RetrainSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        user = request.user if getattr(request.user, "pk", None) else None
        try:
            job = do_start_training(self.tenant, acting_user=user, **form.validated_data)  # type: ignore[arg-type]
        except TrainingAlreadyRunning as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        job.refresh_from_db()
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: ModelVersionSerializer})
    @action(detail=True, methods=["post"])
    def promote(self, request: Any, pk: str | None = None) -> Response:
        version = self.get_object()
        try:
            version = registry.do_promote_model_version(self.tenant, version.pk, acting_user=request.user if getattr(request.user, "pk", None) else None)  # type: ignore[arg-type]
        except registry.ArtifactError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(ModelVersionSerializer(version).data)

    @extend_schema(request=inline_serializer("Rollback", {"target": serializers.ChoiceField(choices=ModelVersion.Target.values)}), responses={200: ModelVersionSerializer})
    @action(detail=False, methods=["post"])
    def rollback(self, request: Any) -> Response:
        target = request.data.get("target")
        if target not in ModelVersion.Target.values:
            raise ValidationError({"target": f"one of {', '.join(ModelVersion.Target.values)}"})
        try:
            version = registry.do_rollback_model(self.tenant, target, acting_user=request.user if getattr(request.user, "pk", None) else None)  # type: ignore[arg-type]
        except (ValueError, registry.ArtifactError) as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(ModelVersionSerializer(version).data)


class ScoreSerializer(serializers.Serializer):
    as_of = serializers.DateField(required=False)


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Background jobs (imports, training, scoring) with progress."""

    serializer_class = JobSerializer
    filterset_fields = ["kind", "state"]
    ordering = ["-created_at"]
    ordering_fields = ["created_at"]
    action_roles = {"cancel": Role.ANALYST, "score": Role.ANALYST}

    def get_base_queryset(self) -> Any:
        return Job.objects.all()

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Any, pk: str | None = None) -> Response:
        job = self.get_object()
        return Response(JobSerializer(jobs.do_request_cancel(self.tenant, job.pk)).data)  # type: ignore[arg-type]

    @extend_schema(request=ScoreSerializer, responses={202: JobSerializer})
    @action(detail=False, methods=["post"])
    def score(self, request: Any) -> Response:
        form = ScoreSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job = do_start_scoring(self.tenant, as_of=form.validated_data.get("as_of"), acting_user=request.user if getattr(request.user, "pk", None) else None)  # type: ignore[arg-type]
        job.refresh_from_db()
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class PredictionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Predictions; the list shows the latest as-of date unless ``?as_of=`` says otherwise."""

    serializer_class = PredictionSerializer
    filterset_fields = {"value_tier": ["exact"], "churn_probability": ["gte", "lte"], "customer": ["exact"]}
    ordering_fields = ["churn_probability", "purchase_probability", "predicted_value", "expected_orders"]
    ordering = ["-predicted_value"]

    def get_base_queryset(self) -> Any:
        queryset = Prediction.objects.select_related("customer")
        if self.action != "list" or getattr(self, "swagger_fake_view", False):
            return queryset
        raw = self.request.query_params.get("as_of")
        if raw:
            try:
                as_of = dt.date.fromisoformat(raw)
            except ValueError:
                raise NotFound() from None
        else:
            as_of = Prediction.objects.order_by("-as_of").values_list("as_of", flat=True).first()
        return queryset.filter(as_of=as_of)
