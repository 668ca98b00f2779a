"""Admin of the ML app: the operators' view of ML strategies, their versions and drift.

Everything shown is a fact (configuration, metrics, comparisons, errors) and read-only; changes
go through actions that call the services, audited with the operator as actor:

- ML strategies: "Retrain now" (a training with trigger "admin"), "Roll back" (promote again the
  version the promoted one replaced). The page shows its versions inline and its retraining
  schedule, which an operator sets, changes or turns off on the "Change the schedule" page
  (``ml_schedule_set``, as the owner's page does) or edits as django-celery-beat's Periodic task.
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
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.common.errors import ApplicationError
from apps.ml import services
from apps.ml.forms import ScheduleForm, schedule_initial
from apps.ml.models import DriftCheck, MLStrategy, ModelVersion
from apps.users.models import User


def _pretty(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def _shown(attribute: str, description: str) -> Callable[[Any, Any], SafeString]:
    """A read-only admin column showing a JSON field pretty-printed."""

    @admin.display(description=description)
    def show(admin_obj: Any, obj: Any) -> SafeString:
        return _pretty(getattr(obj, attribute))

    return show


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
        # The promoted version comes with the row (its model file and heavy JSON left out): shown
        # lazily, it would read the whole file.
        return (
            super()
            .get_queryset(request)
            .select_related("owner", "promoted_version")
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
        change = reverse("admin:ml_mlstrategy_schedule", args=[obj.pk])
        if obj.schedule_id is None:
            return format_html('Off · <a href="{}">Change the schedule</a>', change)
        url = reverse("admin:django_celery_beat_periodictask_change", args=[obj.schedule_id])
        next_run = described["next_run"]
        when = f"; next run {next_run:%Y-%m-%d %H:%M} UTC" if next_run else ""
        return format_html(
            '<a href="{}">{}</a>{} · <a href="{}">Change the schedule</a>', url, described["text"], when, change
        )

    def get_urls(self) -> list[URLPattern]:
        schedule = path(
            "<int:pk>/schedule/", self.admin_site.admin_view(self.schedule_view), name="ml_mlstrategy_schedule"
        )
        return [schedule, *super().get_urls()]

    def schedule_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Set, change or turn off the retraining schedule (audited with the operator as actor)."""
        ml_strategy = get_object_or_404(MLStrategy.objects.select_related("schedule__crontab", "owner"), pk=pk)
        here = reverse("admin:ml_mlstrategy_change", args=[pk])
        if not self.has_operate_permission(request):
            messages.error(request, "You may not change retraining schedules.")
            return HttpResponseRedirect(here)
        described = services.ml_schedule_describe(ml_strategy=ml_strategy)
        form = ScheduleForm(request.POST or None, initial=schedule_initial(described))
        if request.method == "POST" and form.is_valid():
            try:
                services.ml_schedule_set(ml_strategy=ml_strategy, schedule=form.schedule_data(), actor=_actor(request))
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                text = services.ml_schedule_describe(ml_strategy=ml_strategy)["text"]
                self.message_user(request, f"“{ml_strategy}”: retraining schedule {text}.", messages.SUCCESS)
                return HttpResponseRedirect(here)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": ml_strategy,
            "title": f"Retraining schedule of “{ml_strategy}”",
            "current": described["text"],
            "form": form,
        }
        return TemplateResponse(request, "admin/ml/mlstrategy/schedule.html", context)

    @admin.display(description="Instruments")
    def instrument_list(self, obj: MLStrategy) -> str:
        return ", ".join(str(i) for i in obj.instruments.order_by("pk"))

    features_pretty = _shown("features", "Features")
    label_pretty = _shown("label", "Label")
    model_params_pretty = _shown("model_params", "Model parameters")
    decision_pretty = _shown("decision", "Decision rule")
    validation_pretty = _shown("validation", "Validation")

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
        # The model file never leaves the database through the admin (nor the replaced version's).
        return (
            super()
            .get_queryset(request)
            .select_related("ml_strategy", "owner", "requested_by", "replaced")
            .defer("artifact", "replaced__artifact")
        )

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

    comparison_pretty = _shown("comparison", "Comparison")
    metrics_pretty = _shown("metrics", "Out-of-sample metrics")
    folds_pretty = _shown("folds", "Walk-forward folds")

    @admin.display(description="Out-of-sample backtest")
    def oos_backtest_metrics(self, obj: ModelVersion) -> SafeString:
        return _pretty((obj.oos_backtest or {}).get("metrics", {}))

    @admin.display(description="Feature importances")
    def importances_pretty(self, obj: ModelVersion) -> SafeString:
        ordered = dict(sorted((obj.feature_importances or {}).items(), key=lambda item: -float(item[1] or 0)))
        return _pretty(ordered)

    config_pretty = _shown("config", "Configuration trained with")
    library_versions_pretty = _shown("library_versions", "Library versions")

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
