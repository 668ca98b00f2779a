"""The operations console for backtests and research jobs: lists with the owner's e-mail, the
strategy, the instrument, the status, the progress and key metrics; filters by status, strategy
and timeframe; search by id and owner e-mail. Results are facts (read-only); changes go through
actions that call the services: "Re-run" (backtests) and "Cancel" (every kind), audited when staff
act on someone else's job.
"""

import json
from collections.abc import Callable
from typing import Any, ClassVar, cast

from django.contrib import admin, messages
from django.db.models import FloatField, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.backtests import services
from apps.backtests.models import Backtest, MonteCarlo, Optimisation, OptimisationTrial, WalkForward
from apps.common.errors import ApplicationError
from apps.users.models import User


def _pretty(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def _metric(value: Any, *, percent: bool = False) -> str:
    if value is None or not isinstance(value, int | float):
        return "-"
    return f"{value * 100:.2f} %" if percent else f"{value:.2f}"


class JobAdmin(admin.ModelAdmin):
    """Shared by every job kind: read-only rows, owner e-mail, progress, the cancel action."""

    list_filter: ClassVar[Any] = ("status", "strategy_key", "timeframe")
    search_fields = ("=id", "owner__email", "name")
    list_select_related: ClassVar[Any] = ("owner", "instrument")
    date_hierarchy = "created_at"
    actions = ["cancel_jobs"]
    cancel: ClassVar[Callable[..., Any]]
    # Big JSON columns that lists must not load (a detail page loads them when it shows them).
    heavy_fields: ClassVar[tuple[str, ...]] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer(*self.heavy_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        # The rows are read-only facts, but cancelling or re-running is a change: it needs that right.
        opts = self.model._meta
        return bool(request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: Any) -> str:
        return str(obj.owner.email)

    @admin.display(description="Progress", ordering="progress")
    def progress_percent(self, obj: Any) -> str:
        return f"{obj.progress * 100:.0f} %"

    @admin.action(description="Cancel the selected jobs (queued or running)", permissions=["operate"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        done = 0
        for job in queryset.filter(status__in=["queued", "running"]):
            try:
                type(self).cancel(job, cast(User, request.user))
            except ApplicationError as exc:
                self.message_user(request, f"#{job.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"Cancelled {done} job(s).", messages.SUCCESS)


@admin.register(Backtest)
class BacktestAdmin(JobAdmin):
    list_display = (
        "id",
        "owner_email",
        "strategy_key",
        "instrument",
        "timeframe",
        "status",
        "progress_percent",
        "total_return",
        "sharpe",
        "max_drawdown",
        "trades",
        "is_lookahead_biased",
        "created_at",
    )
    list_filter = ("status", "strategy_key", "timeframe", "is_lookahead_biased")
    actions = ["cancel_jobs", "rerun_backtests"]
    heavy_fields = ("equity", "lookahead")
    readonly_fields = (
        "owner",
        "name",
        "strategy_key",
        "params",
        "rule_set",
        "rules",
        "instrument",
        "timeframe",
        "start_at",
        "end_at",
        "settings",
        "status",
        "progress",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "rerun_of",
        "metrics_table",
        "candles_count",
        "duration_ms",
        "timings",
        "is_lookahead_biased",
        "lookahead",
    )
    fields = readonly_fields

    @staticmethod
    def cancel(job: Backtest, actor: User) -> Backtest:
        return services.backtest_cancel(backtest=job, actor=actor)

    @admin.display(description="Return")
    def total_return(self, obj: Backtest) -> str:
        return _metric((obj.metrics or {}).get("total_return"), percent=True)

    @admin.display(description="Sharpe")
    def sharpe(self, obj: Backtest) -> str:
        return _metric((obj.metrics or {}).get("sharpe"))

    @admin.display(description="Max DD")
    def max_drawdown(self, obj: Backtest) -> str:
        return _metric((obj.metrics or {}).get("max_drawdown"), percent=True)

    @admin.display(description="Trades")
    def trades(self, obj: Backtest) -> str:
        count = (obj.metrics or {}).get("trades")
        return "-" if count is None else str(count)

    @admin.display(description="Metrics")
    def metrics_table(self, obj: Backtest) -> SafeString:
        return _pretty(obj.metrics)

    @admin.action(description="Re-run the selected backtests", permissions=["operate"])
    def rerun_backtests(self, request: HttpRequest, queryset: QuerySet[Backtest]) -> None:
        done = 0
        for backtest in queryset.select_related("owner"):
            try:
                services.backtest_rerun(backtest=backtest, actor=cast(User, request.user))
            except ApplicationError as exc:
                self.message_user(request, f"#{backtest.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"Queued {done} re-run(s).", messages.SUCCESS)


class OptimisationTrialInline(admin.TabularInline):
    model = OptimisationTrial
    fields = ("number", "params", "value", "is_feasible", "error")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    ordering = ("-value", "number")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[OptimisationTrial]:
        # The best 100: an optimisation may hold thousands of trials; the API pages through all.
        best = super().get_queryset(request).filter(value__isnull=False).order_by("-value", "number")
        ids = list(best.values_list("pk", flat=True)[:100])
        return super().get_queryset(request).filter(pk__in=ids)


@admin.register(Optimisation)
class OptimisationAdmin(JobAdmin):
    list_display = (
        "id",
        "owner_email",
        "strategy_key",
        "instrument",
        "timeframe",
        "method",
        "objective",
        "status",
        "progress_percent",
        "trials_done",
        "n_trials",
        "best_value",
        "created_at",
    )
    list_filter = ("status", "strategy_key", "timeframe", "method", "objective")
    inlines = [OptimisationTrialInline]
    readonly_fields = (
        "owner",
        "name",
        "strategy_key",
        "params",
        "instrument",
        "timeframe",
        "start_at",
        "end_at",
        "settings",
        "method",
        "objective",
        "space",
        "min_trades",
        "n_trials",
        "seed",
        "status",
        "progress",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "study_name",
        "chunks_total",
        "chunks_done",
        "trials_done",
        "best_params",
        "best_value",
        "best_metrics",
    )
    fields = readonly_fields

    @staticmethod
    def cancel(job: Optimisation, actor: User) -> Optimisation:
        return services.optimisation_cancel(optimisation=job, actor=actor)


@admin.register(WalkForward)
class WalkForwardAdmin(JobAdmin):
    list_display = (
        "id",
        "owner_email",
        "strategy_key",
        "instrument",
        "timeframe",
        "mode",
        "windows_count",
        "status",
        "progress_percent",
        "oos_return",
        "created_at",
    )
    list_filter = ("status", "strategy_key", "timeframe", "mode")
    heavy_fields = ("equity", "windows")
    readonly_fields = (
        "owner",
        "name",
        "strategy_key",
        "params",
        "instrument",
        "timeframe",
        "start_at",
        "end_at",
        "settings",
        "mode",
        "windows_count",
        "train_ratio",
        "method",
        "objective",
        "space",
        "min_trades",
        "n_trials",
        "status",
        "progress",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "metrics",
        "windows",
    )
    fields = readonly_fields

    @staticmethod
    def cancel(job: WalkForward, actor: User) -> WalkForward:
        return services.walk_forward_cancel(walk_forward=job, actor=actor)

    @admin.display(description="OOS return")
    def oos_return(self, obj: WalkForward) -> str:
        return _metric((obj.metrics or {}).get("total_return"), percent=True)


@admin.register(MonteCarlo)
class MonteCarloAdmin(JobAdmin):
    list_display = (
        "id",
        "owner_email",
        "backtest",
        "method",
        "simulations",
        "status",
        "progress_percent",
        "probability_of_loss",
        "created_at",
    )
    list_filter = ("status", "method")
    search_fields = ("=id", "=backtest__id", "owner__email")
    list_select_related = ("owner", "backtest")
    heavy_fields = ("results", "backtest__equity", "backtest__lookahead")
    readonly_fields = (
        "owner",
        "backtest",
        "method",
        "simulations",
        "noise",
        "seed",
        "loss_threshold",
        "status",
        "progress",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "results_json",
    )
    fields = readonly_fields

    @staticmethod
    def cancel(job: MonteCarlo, actor: User) -> MonteCarlo:
        return services.monte_carlo_cancel(monte_carlo=job, actor=actor)

    def get_queryset(self, request: HttpRequest) -> QuerySet[MonteCarlo]:
        # The one number the list shows, read in the list's query: reading obj.results would load
        # the deferred JSON (histograms, sample paths) with one more query per row.
        return (
            super()
            .get_queryset(request)
            .annotate(probability_of_loss_value=Cast(KT("results__probability_of_loss"), FloatField()))
        )

    @admin.display(description="P(loss)", ordering="probability_of_loss_value")
    def probability_of_loss(self, obj: MonteCarlo) -> str:
        return _metric(getattr(obj, "probability_of_loss_value", None), percent=True)

    @admin.display(description="Results")
    def results_json(self, obj: MonteCarlo) -> SafeString:
        return _pretty(obj.results)
