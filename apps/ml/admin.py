"""Admin of the ML app: the operators' view of ML strategies, their versions and drift.

Everything shown is a fact (configuration, metrics, comparisons, errors) and read-only; changes
go through actions that call the services, audited with the operator as actor:

- ML strategies: "Retrain now" (a training with trigger "admin"), "Roll back" (promote again the
  version the promoted one replaced). The page shows its versions inline and links to its
  retraining schedule (django-celery-beat's Periodic task, editable there).
- Model versions: filter by status to see failed trainings with their error; "Promote" (a
  rejected or retired version), "Retrain" (its ML strategy), "Cancel" (queued or running). The
  model file itself is never shown or editable: only its size and SHA-256.
- Drift checks: read-only.
"""

import json
from collections.abc import Callable
from typing import Any, cast

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.common.errors import ApplicationError
from apps.ml import services
from apps.ml.models import DriftCheck, MLStrategy, ModelVersion
from apps.users.models import User


def _pretty(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def _run(
    admin_obj: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any], call: Callable[[Any], Any], done: str
) -> None:
    ok = 0
    for obj in queryset:
        try:
            call(obj)
        except ApplicationError as exc:
            admin_obj.message_user(request, f"#{obj.pk} “{obj}”: {exc.message}", messages.ERROR)
        else:
            ok += 1
    if ok:
        admin_obj.message_user(request, f"{ok} {done}.", messages.SUCCESS)


def _actor(request: HttpRequest) -> User:
    return cast(User, request.user)  # the admin site only lets staff in


class _Facts(admin.ModelAdmin):
    """Rows are read-only facts; the actions change things through the services, which needs the
    model's change right (``operate``)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting goes through the owner (the portal or the API): it is refused while deployed.
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        opts = self.model._meta
        return bool(request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))


def _metric(metrics: dict[str, Any] | None, key: str) -> str:
    value = (metrics or {}).get(key)
    return "-" if value is None else f"{float(value):.4f}"


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    fk_name = "ml_strategy"
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-number",)
    fields = ("number", "status", "trigger", "auc", "log_loss", "outcome", "n_samples", "finished_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return super().get_queryset(request).defer("artifact", "reference", "oos_backtest", "folds")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="AUC")
    def auc(self, obj: ModelVersion) -> str:
        return _metric(obj.metrics, "auc")

    @admin.display(description="Log loss")
    def log_loss(self, obj: ModelVersion) -> str:
        return _metric(obj.metrics, "log_loss")

    @admin.display(description="Comparison / error")
    def outcome(self, obj: ModelVersion) -> str:
        return obj.error or (obj.comparison or {}).get("reason", "")


@admin.register(MLStrategy)
class MLStrategyAdmin(_Facts):
    list_display = (
        "id",
        "name",
        "owner_email",
        "timeframe",
        "model_kind",
        "promoted",
        "versions",
        "schedule_text",
        "updated_at",
    )
    list_filter = ("model_kind", "timeframe", "retrain_on_drift", "promotion_metric")
    search_fields = ("=id", "name", "owner__email")
    list_select_related = ("owner", "promoted_version", "schedule", "schedule__crontab")
    ordering = ("-updated_at",)
    actions = ("retrain_now", "roll_back")
    inlines = (ModelVersionInline,)
    fields = (
        "owner",
        "name",
        "description",
        "instrument_list",
        "timeframe",
        "higher_timeframe",
        "features_pretty",
        "label_pretty",
        "model_kind",
        "model_params_pretty",
        "decision_pretty",
        "validation_pretty",
        "seed",
        "promotion_metric",
        "promotion_margin",
        "drift_threshold",
        "drift_window",
        "retrain_on_drift",
        "promoted_version",
        "schedule_link",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[MLStrategy]:
        return (
            super()
            .get_queryset(request)
            .defer("promoted_version__artifact", "promoted_version__reference", "promoted_version__oos_backtest")
            .annotate(versions_count=Count("versions"))
        )

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: MLStrategy) -> str:
        return obj.owner.email

    @admin.display(description="Promoted")
    def promoted(self, obj: MLStrategy) -> str:
        version = obj.promoted_version
        if version is None:
            return "-"
        return f"v{version.number} (AUC {_metric(version.metrics, 'auc')})"

    @admin.display(description="Versions", ordering="versions_count")
    def versions(self, obj: MLStrategy) -> int:
        return int(getattr(obj, "versions_count", 0))

    @admin.display(description="Schedule")
    def schedule_text(self, obj: MLStrategy) -> str:
        return str(services.ml_schedule_describe(ml_strategy=obj)["text"])

    @admin.display(description="Retraining schedule")
    def schedule_link(self, obj: MLStrategy) -> SafeString:
        described = services.ml_schedule_describe(ml_strategy=obj)
        if obj.schedule_id is None:
            return format_html("{}", "Off (the owner sets it on the ML strategy's page or with the API)")
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.schedule_id])
        next_run = described["next_run"]
        when = f"; next run {next_run:%Y-%m-%d %H:%M} UTC" if next_run else ""
        return format_html('<a href="{}">{}</a>{}', url, described["text"], when)

    @admin.display(description="Instruments")
    def instrument_list(self, obj: MLStrategy) -> str:
        return ", ".join(str(i) for i in obj.instruments.order_by("pk"))

    @admin.display(description="Features")
    def features_pretty(self, obj: MLStrategy) -> SafeString:
        return _pretty(obj.features)

    @admin.display(description="Label")
    def label_pretty(self, obj: MLStrategy) -> SafeString:
        return _pretty(obj.label)

    @admin.display(description="Model parameters")
    def model_params_pretty(self, obj: MLStrategy) -> SafeString:
        return _pretty(obj.model_params)

    @admin.display(description="Decision rule")
    def decision_pretty(self, obj: MLStrategy) -> SafeString:
        return _pretty(obj.decision)

    @admin.display(description="Validation")
    def validation_pretty(self, obj: MLStrategy) -> SafeString:
        return _pretty(obj.validation)

    @admin.action(description="Retrain now", permissions=["operate"])
    def retrain_now(self, request: HttpRequest, queryset: QuerySet[MLStrategy]) -> None:
        _run(
            self,
            request,
            queryset,
            lambda o: services.training_start(ml_strategy=o, trigger="admin", requested_by=_actor(request)),
            "trainings queued",
        )

    @admin.action(description="Roll back to the previously promoted version", permissions=["operate"])
    def roll_back(self, request: HttpRequest, queryset: QuerySet[MLStrategy]) -> None:
        _run(
            self,
            request,
            queryset,
            lambda o: services.version_rollback(ml_strategy=o, actor=_actor(request)),
            "rolled back",
        )


@admin.register(ModelVersion)
class ModelVersionAdmin(_Facts):
    list_display = (
        "id",
        "ml_strategy",
        "number",
        "owner_email",
        "status",
        "trigger",
        "auc",
        "log_loss",
        "error_short",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "trigger", "ml_strategy__model_kind")
    search_fields = ("=id", "=ml_strategy__id", "ml_strategy__name", "owner__email", "error")
    list_select_related = ("ml_strategy", "owner")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("promote", "retrain", "cancel")
    fields = (
        "ml_strategy",
        "number",
        "owner",
        "status",
        "trigger",
        "requested_by",
        "progress",
        "stage",
        "error",
        "comparison_pretty",
        "metrics_pretty",
        "folds_pretty",
        "oos_backtest_metrics",
        "importances_pretty",
        "config_pretty",
        "data_start",
        "data_end",
        "n_samples",
        "artifact_size",
        "artifact_sha256",
        "library_versions_pretty",
        "replaced",
        "started_at",
        "finished_at",
        "promoted_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        # The model file never leaves the database through the admin.
        return super().get_queryset(request).defer("artifact")

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: ModelVersion) -> str:
        return obj.owner.email

    @admin.display(description="AUC")
    def auc(self, obj: ModelVersion) -> str:
        return _metric(obj.metrics, "auc")

    @admin.display(description="Log loss")
    def log_loss(self, obj: ModelVersion) -> str:
        return _metric(obj.metrics, "log_loss")

    @admin.display(description="Error")
    def error_short(self, obj: ModelVersion) -> str:
        return obj.error[:120]

    @admin.display(description="Comparison")
    def comparison_pretty(self, obj: ModelVersion) -> SafeString:
        return _pretty(obj.comparison)

    @admin.display(description="Out-of-sample metrics")
    def metrics_pretty(self, obj: ModelVersion) -> SafeString:
        return _pretty(obj.metrics)

    @admin.display(description="Walk-forward folds")
    def folds_pretty(self, obj: ModelVersion) -> SafeString:
        return _pretty(obj.folds)

    @admin.display(description="Out-of-sample backtest")
    def oos_backtest_metrics(self, obj: ModelVersion) -> SafeString:
        return _pretty((obj.oos_backtest or {}).get("metrics", {}))

    @admin.display(description="Feature importances")
    def importances_pretty(self, obj: ModelVersion) -> SafeString:
        ordered = dict(sorted((obj.feature_importances or {}).items(), key=lambda item: -float(item[1] or 0)))
        return _pretty(ordered)

    @admin.display(description="Configuration trained with")
    def config_pretty(self, obj: ModelVersion) -> SafeString:
        return _pretty(obj.config)

    @admin.display(description="Library versions")
    def library_versions_pretty(self, obj: ModelVersion) -> SafeString:
        return _pretty(obj.library_versions)

    @admin.action(description="Promote selected versions (rejected or retired)", permissions=["operate"])
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        _run(
            self,
            request,
            queryset,
            lambda o: services.version_promote(version=o, actor=_actor(request), reason="Promoted by an operator."),
            "promoted",
        )

    @admin.action(description="Retrain their ML strategies now", permissions=["operate"])
    def retrain(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        strategies = MLStrategy.objects.filter(pk__in=queryset.values_list("ml_strategy_id", flat=True))
        _run(
            self,
            request,
            strategies,
            lambda o: services.training_start(ml_strategy=o, trigger="admin", requested_by=_actor(request)),
            "trainings queued",
        )

    @admin.action(description="Cancel selected trainings (queued or running)", permissions=["operate"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        _run(self, request, queryset, lambda o: services.training_cancel(version=o, actor=_actor(request)), "cancelled")


@admin.register(DriftCheck)
class DriftCheckAdmin(_Facts):
    list_display = ("id", "ml_strategy", "version_number", "checked_at", "max_psi", "is_drift", "n_bars", "retrain")
    list_filter = ("is_drift",)
    search_fields = ("=id", "=ml_strategy__id", "ml_strategy__name", "ml_strategy__owner__email")
    list_select_related = ("ml_strategy", "version", "retrain")
    date_hierarchy = "checked_at"
    fields = (
        "ml_strategy",
        "version",
        "checked_at",
        "window_start",
        "window_end",
        "n_bars",
        "max_psi",
        "is_drift",
        "psi_pretty",
        "retrain",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[DriftCheck]:
        return super().get_queryset(request).defer("version__artifact", "retrain__artifact")

    @admin.display(description="Version")
    def version_number(self, obj: DriftCheck) -> str:
        return f"v{obj.version.number}"

    @admin.display(description="PSI per feature")
    def psi_pretty(self, obj: DriftCheck) -> SafeString:
        ordered = dict(sorted((obj.psi or {}).items(), key=lambda item: -float(item[1] or 0)))
        return _pretty(ordered)
