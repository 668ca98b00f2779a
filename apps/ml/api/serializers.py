"""Serializers of the ML API. Input serializers check shapes only (and refuse unknown fields);
the services validate values and name the field of every error. No serializer has the
artifact: the model file never leaves the server."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.ml.models import DriftCheck, MLStrategy, ModelVersion
from apps.strategies.api_deployments import StrictInputSerializer


class MLInstrumentSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    symbol = serializers.CharField()
    venue = serializers.CharField()


class ScheduleSerializer(serializers.Serializer[Any]):
    every = serializers.ChoiceField(choices=["off", "hourly", "daily", "weekly", "cron"])
    hour = serializers.IntegerField(allow_null=True)
    minute = serializers.IntegerField(allow_null=True)
    weekday = serializers.IntegerField(allow_null=True, help_text="0 = Monday")
    cron = serializers.CharField(allow_blank=True)
    text = serializers.CharField(help_text="e.g. 'Daily at 03:00 UTC'")
    next_run = serializers.DateTimeField(allow_null=True)
    enabled = serializers.BooleanField()


class VersionRefSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    status = serializers.CharField()
    metrics = serializers.DictField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class LastVersionSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField()
    status = serializers.CharField()
    error = serializers.CharField(allow_blank=True)


class DriftSummarySerializer(serializers.Serializer[Any]):
    max_psi = serializers.FloatField()
    is_drift = serializers.BooleanField()
    checked_at = serializers.DateTimeField()


class MLStrategySerializer(serializers.ModelSerializer[MLStrategy]):
    instruments = serializers.SerializerMethodField()
    schedule = serializers.SerializerMethodField()
    promoted_version = serializers.SerializerMethodField()
    last_version = serializers.SerializerMethodField()
    drift = serializers.SerializerMethodField()
    versions_count = serializers.SerializerMethodField()

    class Meta:
        model = MLStrategy
        fields = [
            "id",
            "name",
            "description",
            "instruments",
            "timeframe",
            "higher_timeframe",
            "features",
            "label",
            "model_kind",
            "model_params",
            "decision",
            "validation",
            "seed",
            "promotion_metric",
            "promotion_margin",
            "drift_threshold",
            "drift_window",
            "retrain_on_drift",
            "schedule",
            "promoted_version",
            "last_version",
            "versions_count",
            "drift",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(MLInstrumentSerializer(many=True))
    def get_instruments(self, obj: MLStrategy) -> list[dict[str, Any]]:
        return [{"id": i.pk, "symbol": i.symbol, "venue": i.venue} for i in obj.instruments.all()]

    @extend_schema_field(ScheduleSerializer)
    def get_schedule(self, obj: MLStrategy) -> dict[str, Any]:
        from apps.ml.services import ml_schedule_describe

        return dict(ScheduleSerializer(ml_schedule_describe(ml_strategy=obj)).data)

    @extend_schema_field(VersionRefSerializer(allow_null=True))
    def get_promoted_version(self, obj: MLStrategy) -> dict[str, Any] | None:
        version = obj.promoted_version
        if version is None:
            return None
        return dict(VersionRefSerializer(version).data)

    @extend_schema_field(LastVersionSerializer(allow_null=True))
    def get_last_version(self, obj: MLStrategy) -> dict[str, Any] | None:
        number = getattr(obj, "last_number", None)
        if number is None:
            return None
        return {"number": number, "status": obj.last_status, "error": obj.last_error or ""}  # type: ignore[attr-defined]

    @extend_schema_field(DriftSummarySerializer(allow_null=True))
    def get_drift(self, obj: MLStrategy) -> dict[str, Any] | None:
        checked_at = getattr(obj, "drift_checked_at", None)
        if checked_at is None:
            return None
        return dict(
            DriftSummarySerializer(
                {"max_psi": obj.drift_max_psi, "is_drift": obj.drift_is_drift, "checked_at": checked_at}  # type: ignore[attr-defined]
            ).data
        )

    @extend_schema_field(serializers.IntegerField())
    def get_versions_count(self, obj: MLStrategy) -> int:
        return int(getattr(obj, "versions_count", 0) or 0)


class LabelInputSerializer(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=["forward", "triple_barrier"], required=False)
    horizon = serializers.IntegerField(required=False, help_text="Bars ahead.")
    threshold = serializers.FloatField(required=False, help_text="Forward: the return to beat.")
    stop = serializers.FloatField(required=False, help_text="Triple barrier: the lower barrier (fraction).")
    target = serializers.FloatField(required=False, help_text="Triple barrier: the upper barrier (fraction).")


class DecisionInputSerializer(StrictInputSerializer):
    threshold = serializers.FloatField(required=False, help_text="Enter long when P(up) >= this.")
    exit_threshold = serializers.FloatField(required=False, help_text="Exit when P(up) < this.")
    allow_short = serializers.BooleanField(required=False)


class ValidationInputSerializer(StrictInputSerializer):
    n_splits = serializers.IntegerField(required=False)
    embargo = serializers.IntegerField(required=False, help_text="Bars between train and test.")
    history_bars = serializers.IntegerField(required=False, help_text="Newest bars trained on.")


class ScheduleInputSerializer(StrictInputSerializer):
    every = serializers.ChoiceField(choices=["off", "hourly", "daily", "weekly", "cron"], required=False)
    hour = serializers.IntegerField(required=False)
    minute = serializers.IntegerField(required=False)
    weekday = serializers.IntegerField(required=False, help_text="0 = Monday")
    cron = serializers.CharField(required=False, allow_blank=True, help_text="m h dom mon dow (UTC)")


class MLStrategyInputSerializer(StrictInputSerializer):
    """Every field optional here: create fills defaults (and requires name, instruments and
    timeframe), update changes only what is given."""

    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    instrument_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    timeframe = serializers.CharField(required=False, allow_blank=True)
    higher_timeframe = serializers.CharField(required=False, allow_blank=True)
    features = serializers.ListField(child=serializers.CharField(), required=False, help_text="See /ml/features/.")
    label = LabelInputSerializer(required=False)  # type: ignore[assignment]  # a field named like Field.label
    model_kind = serializers.CharField(required=False, help_text="logistic, hist_gb or lightgbm")
    model_params = serializers.DictField(required=False)
    decision = DecisionInputSerializer(required=False)
    validation = ValidationInputSerializer(required=False)
    seed = serializers.IntegerField(required=False)
    promotion_metric = serializers.CharField(required=False, help_text="auc, log_loss, accuracy or sharpe")
    promotion_margin = serializers.FloatField(required=False)
    drift_threshold = serializers.FloatField(required=False)
    drift_window = serializers.IntegerField(required=False)
    retrain_on_drift = serializers.BooleanField(required=False)
    schedule = ScheduleInputSerializer(required=False, allow_null=True)


class VersionSerializer(serializers.ModelSerializer[ModelVersion]):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    requested_by = serializers.SerializerMethodField()
    replaced = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "number",
            "status",
            "status_display",
            "trigger",
            "requested_by",
            "progress",
            "stage",
            "error",
            "data_start",
            "data_end",
            "n_samples",
            "artifact_sha256",
            "artifact_size",
            "metrics",
            "feature_importances",
            "comparison",
            "replaced",
            "started_at",
            "finished_at",
            "promoted_at",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.EmailField(allow_null=True))
    def get_requested_by(self, obj: ModelVersion) -> str | None:
        return obj.requested_by.email if obj.requested_by_id and obj.requested_by else None

    @extend_schema_field(serializers.IntegerField(allow_null=True, help_text="The number of the version it replaced."))
    def get_replaced(self, obj: ModelVersion) -> int | None:
        return obj.replaced.number if obj.replaced_id and obj.replaced is not None else None


class VersionDetailSerializer(VersionSerializer):
    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "config", "folds", "oos_backtest", "library_versions", "reference"]
        read_only_fields = fields


class PromoteInputSerializer(StrictInputSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class DriftCheckSerializer(serializers.ModelSerializer[DriftCheck]):
    version = serializers.IntegerField(source="version.number", read_only=True)
    retrain = serializers.IntegerField(source="retrain.number", read_only=True, allow_null=True, default=None)

    class Meta:
        model = DriftCheck
        fields = [
            "id",
            "checked_at",
            "version",
            "window_start",
            "window_end",
            "n_bars",
            "max_psi",
            "is_drift",
            "psi",
            "retrain",
        ]
        read_only_fields = fields


class BacktestInputSerializer(StrictInputSerializer):
    instrument_id = serializers.IntegerField(required=False, help_text="Default: the ML strategy's first instrument.")
    start = serializers.DateTimeField(required=False, allow_null=True)
    end = serializers.DateTimeField(required=False, allow_null=True)
    settings = serializers.DictField(required=False, help_text="Engine settings (costs, sizing, exits...).")
    name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    version = serializers.IntegerField(required=False, min_value=0, help_text="0 (default) = the promoted version.")


class DeployInputSerializer(StrictInputSerializer):
    account_id = serializers.IntegerField(help_text="One of your paper trading accounts.")
    capital = serializers.DecimalField(max_digits=28, decimal_places=10)
    name = serializers.CharField(required=False, allow_blank=True, max_length=120)
    settings = serializers.DictField(required=False)
    risk = serializers.DictField(required=False)
    start = serializers.BooleanField(required=False, default=True, help_text="false: leave it a draft.")


class FeatureSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    group = serializers.CharField()
    description = serializers.CharField()
    higher = serializers.BooleanField(help_text="Computed on the higher timeframe.")
