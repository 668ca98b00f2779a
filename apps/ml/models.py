r"""ML strategies: a model trained on candles' features that trades like any other strategy.

- MLStrategy: what a user configures: instruments and timeframe, the feature set (names from
  ``apps.ml.pipeline.features``), the label (forward return above a threshold, or triple
  barrier), the model family and its parameters, the decision rule (enter when the predicted
  probability is above ``threshold``), the purged walk-forward validation, the promotion rule
  (beat the promoted version out of sample by ``promotion_margin`` on ``promotion_metric``),
  the drift rule (PSI above ``drift_threshold``), and the retraining schedule (a
  django-celery-beat PeriodicTask, editable in the admin and the portal).
  It runs as the registered strategy ``ml`` (``apps.ml.strategy``) with params
  ``{"model": <MLStrategy id>, "version": 0}``: version 0 means "the promoted version", so
  deployments always use whatever is promoted now.
- ModelVersion: one training. queued -> running -> promoted | rejected | failed (with the
  reason) | cancelled; a promoted version becomes retired when another is promoted (rollback
  promotes a retired one again). It keeps the artifact (``apps.ml.pipeline.bundle``: the fitted
  estimator and everything needed to use it, checked against ``artifact_sha256`` when loaded),
  the configuration it was trained with, the data range, library versions, out-of-sample
  metrics per fold and overall, the out-of-sample backtest of its signals, feature importances,
  the reference distributions drift is measured against, and the comparison that decided its
  promotion.
- DriftCheck: one comparison of a promoted version's live features with its training
  distributions (PSI per feature).
"""

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.common.models import TimeStampedModel
from apps.marketdata import timeframes


def _default_label() -> dict[str, Any]:
    return {"kind": "forward", "horizon": 12, "threshold": 0.0}


def _default_decision() -> dict[str, Any]:
    return {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False}


def _default_validation() -> dict[str, Any]:
    return {"n_splits": 5, "embargo": 12, "history_bars": 20_000}


class MLStrategy(TimeStampedModel):
    class ModelKind(models.TextChoices):
        LOGISTIC = "logistic", "Logistic regression (baseline)"
        HIST_GB = "hist_gb", "HistGradientBoosting (scikit-learn)"
        LIGHTGBM = "lightgbm", "LightGBM"

    class Metric(models.TextChoices):
        AUC = "auc", "AUC"
        LOG_LOSS = "log_loss", "Log loss (lower is better)"
        ACCURACY = "accuracy", "Accuracy"
        SHARPE = "sharpe", "Out-of-sample backtest Sharpe"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ml_strategies")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    instruments = models.ManyToManyField("marketdata.Instrument", related_name="ml_strategies")
    timeframe = models.CharField(max_length=4, choices=timeframes.CHOICES)
    # The higher timeframe the "htf_*" features are computed on ("" = none chosen).
    higher_timeframe = models.CharField(max_length=4, choices=timeframes.CHOICES, blank=True)
    features = models.JSONField(default=list, help_text="Feature names from the feature catalogue.")
    label = models.JSONField(default=_default_label, help_text="apps.ml.pipeline.labels.LabelSpec as a dict.")
    model_kind = models.CharField(max_length=10, choices=ModelKind.choices, default=ModelKind.HIST_GB)
    model_params = models.JSONField(default=dict, blank=True, help_text="Estimator parameters (validated).")
    decision = models.JSONField(default=_default_decision, help_text="threshold, exit_threshold, allow_short.")
    validation = models.JSONField(default=_default_validation, help_text="n_splits, embargo, history_bars.")
    seed = models.PositiveIntegerField(default=42)
    promotion_metric = models.CharField(max_length=10, choices=Metric.choices, default=Metric.AUC)
    promotion_margin = models.FloatField(default=0.005, validators=[MinValueValidator(0.0)])
    drift_threshold = models.FloatField(default=0.25, validators=[MinValueValidator(0.01)])
    drift_window = models.PositiveIntegerField(default=500, help_text="Newest bars compared with training.")
    retrain_on_drift = models.BooleanField(default=True)
    schedule = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="ml_strategy"
    )
    promoted_version = models.ForeignKey(
        "ml.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = "ML strategy"
        verbose_name_plural = "ML strategies"
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="mlstrategy_unique_owner_name")]

    def __str__(self) -> str:
        return self.name


class ModelVersion(TimeStampedModel):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Training"
        PROMOTED = "promoted", "Promoted"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by the owner"
        SCHEDULE = "schedule", "Schedule"
        DRIFT = "drift", "Drift detected"
        ADMIN = "admin", "Operator"
        DEMO = "demo", "Demo seed"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED_OK = (Status.PROMOTED, Status.REJECTED, Status.RETIRED)

    ml_strategy = models.ForeignKey(MLStrategy, on_delete=models.CASCADE, related_name="versions")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=120, blank=True)
    error = models.TextField(blank=True)
    # What it was trained with: the MLStrategy's configuration at the time (features, label,
    # model_kind, model_params, decision, validation, seed, timeframe, higher_timeframe,
    # instruments as [{"id", "symbol", "venue"}]).
    config = models.JSONField(default=dict)
    data_start = models.DateTimeField(null=True, blank=True)
    data_end = models.DateTimeField(null=True, blank=True)
    n_samples = models.PositiveIntegerField(default=0)
    artifact = models.BinaryField(null=True, blank=True, editable=False)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    artifact_size = models.PositiveIntegerField(default=0)
    library_versions = models.JSONField(default=dict, blank=True)
    # Out of sample (purged walk-forward): {"accuracy", "log_loss", "auc", "sharpe", "total_return",
    # "max_drawdown", "trades", "base_rate"}; folds: [{"train": [start, end], "test": [start, end],
    # "n_train", "n_test", "accuracy", "log_loss", "auc"}].
    metrics = models.JSONField(default=dict, blank=True)
    folds = models.JSONField(default=list, blank=True)
    oos_backtest = models.JSONField(default=dict, blank=True, help_text="metrics and equity points [[ms, value]].")
    feature_importances = models.JSONField(default=dict, blank=True)
    reference = models.JSONField(default=dict, blank=True, help_text="Per feature: bin edges and proportions.")
    # {"metric", "candidate", "current", "current_version", "margin", "promoted": bool, "reason"}
    comparison = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    # The version that was promoted when this one replaced it (set by a training's or an
    # operator's promotion, kept by a rollback): rolling back walks this chain.
    replaced = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["ml_strategy", "number"], name="modelversion_unique_number"),
            # At most one training queued or running per ML strategy.
            models.UniqueConstraint(
                fields=["ml_strategy"],
                condition=Q(status__in=["queued", "running"]),
                name="modelversion_one_active_training",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ml_strategy} v{self.number}"


class DriftCheck(TimeStampedModel):
    ml_strategy = models.ForeignKey(MLStrategy, on_delete=models.CASCADE, related_name="drift_checks")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="drift_checks")
    checked_at = models.DateTimeField(db_index=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    n_bars = models.PositiveIntegerField(default=0)
    psi = models.JSONField(default=dict, help_text="Feature name -> PSI.")
    max_psi = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1e9)])
    is_drift = models.BooleanField(default=False)
    retrain = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        return f"{self.version} drift {self.max_psi:.3f}"
