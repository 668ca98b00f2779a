"""Reads of the backtests app that leave it. Every job is owner-scoped here and nowhere else:
another user's job does not exist for you (NotFound, 404).

List querysets leave out the heavy JSON (curves, per-window results, simulations), which only the
detail reads need, and join the instrument that every list shows.
"""

from collections.abc import Mapping
from typing import Any

from django.db.models import Model, QuerySet

from apps.backtests.models import Backtest, BacktestTrade, MonteCarlo, Optimisation, OptimisationTrial, WalkForward
from apps.backtests.research import optimise as research
from apps.common.errors import NotFound, ValidationFailed
from apps.users.models import User


def _pk(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _get[M: Model](queryset: QuerySet[M], pk: Any, what: str) -> M:
    key = _pk(pk)
    job = queryset.filter(pk=key).first() if key is not None else None
    if job is None:
        raise NotFound(f"No such {what}.")
    return job


def _run_filters[M: Model](queryset: QuerySet[M], filters: Mapping[str, Any] | None) -> QuerySet[M]:
    filters = filters or {}
    if status := filters.get("status"):
        queryset = queryset.filter(status=status)
    if strategy_key := filters.get("strategy_key"):
        queryset = queryset.filter(strategy_key=strategy_key)
    if (instrument := _pk(filters.get("instrument"))) is not None:
        queryset = queryset.filter(instrument_id=instrument)
    return queryset


# --- backtests ----------------------------------------------------------------------------------


def backtest_list_for_user(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Backtest]:
    """The user's backtests, newest first. Filters: status, strategy_key, instrument (id)."""
    queryset = (
        Backtest.objects.filter(owner=user)
        .select_related("instrument")
        .defer("equity", "lookahead", "rules", "settings")
        .order_by("-created_at", "-id")
    )
    return _run_filters(queryset, filters)


def backtest_get_for_user(*, user: User, backtest_id: Any) -> Backtest:
    return _get(Backtest.objects.filter(owner=user).select_related("instrument", "rule_set"), backtest_id, "backtest")


def backtest_trades(*, backtest: Backtest) -> QuerySet[BacktestTrade]:
    """The backtest's trades in order (the caller has the backtest from a *_for_user read)."""
    return BacktestTrade.objects.filter(backtest=backtest).order_by("number")


# --- optimisations ------------------------------------------------------------------------------


def optimisation_list_for_user(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[Optimisation]:
    queryset = (
        Optimisation.objects.filter(owner=user)
        .select_related("instrument")
        .defer("best_metrics", "rules", "settings", "chunks_done")
        .order_by("-created_at", "-id")
    )
    return _run_filters(queryset, filters)


def optimisation_get_for_user(*, user: User, optimisation_id: Any) -> Optimisation:
    return _get(Optimisation.objects.filter(owner=user).select_related("instrument"), optimisation_id, "optimisation")


def optimisation_trials(*, optimisation: Optimisation, feasible_only: bool = False) -> QuerySet[OptimisationTrial]:
    trials = OptimisationTrial.objects.filter(optimisation=optimisation)
    if feasible_only:
        trials = trials.filter(is_feasible=True)
    return trials.order_by("number")


def optimisation_heatmap(*, optimisation: Optimisation, x: str, y: str) -> dict[str, Any]:
    """The objective over two parameters (see `research.optimise.heatmap`); ValidationFailed
    naming ``x``/``y`` for a parameter the optimisation did not vary or store."""
    names = set(optimisation.best_params or {}) | set(optimisation.params or {})
    for field, value in (("x", x), ("y", y)):
        if not value or value not in names:
            raise ValidationFailed(
                f"Unknown parameter '{value}'.", extra={"fields": {field: [f"Pick one of {', '.join(sorted(names))}."]}}
            )
    rows = OptimisationTrial.objects.filter(optimisation=optimisation).values_list("number", "params", "value")
    trials = [
        research.TrialResult(number=number, params=params, value=value, is_feasible=value is not None)
        for number, params, value in rows
    ]
    return research.heatmap(trials, x, y)


# --- walk-forwards and Monte Carlo --------------------------------------------------------------


def walk_forward_list_for_user(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[WalkForward]:
    queryset = (
        WalkForward.objects.filter(owner=user)
        .select_related("instrument")
        .defer("windows", "equity", "rules", "settings")
        .order_by("-created_at", "-id")
    )
    return _run_filters(queryset, filters)


def walk_forward_get_for_user(*, user: User, walk_forward_id: Any) -> WalkForward:
    return _get(WalkForward.objects.filter(owner=user).select_related("instrument"), walk_forward_id, "walk-forward")


def monte_carlo_list_for_user(*, user: User, filters: Mapping[str, Any] | None = None) -> QuerySet[MonteCarlo]:
    queryset = (
        MonteCarlo.objects.filter(owner=user)
        .select_related("backtest", "backtest__instrument")
        .defer("results", "backtest__equity", "backtest__lookahead", "backtest__metrics")
        .order_by("-created_at", "-id")
    )
    filters = filters or {}
    if status := filters.get("status"):
        queryset = queryset.filter(status=status)
    if (backtest := _pk(filters.get("backtest"))) is not None:
        queryset = queryset.filter(backtest_id=backtest)
    return queryset


def monte_carlo_get_for_user(*, user: User, monte_carlo_id: Any) -> MonteCarlo:
    return _get(
        MonteCarlo.objects.filter(owner=user).select_related("backtest", "backtest__instrument"),
        monte_carlo_id,
        "Monte Carlo",
    )
