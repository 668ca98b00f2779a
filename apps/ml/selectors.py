"""Reads of the ML app. Owner scoping lives here: another user's ML strategy or version is
NotFound, exactly as a missing one. A version's artifact (the model file, up to megabytes) is
never read by a listing: every queryset here defers it.
"""

from typing import Any

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery

from apps.common.errors import NotFound
from apps.marketdata.models import Instrument
from apps.ml.models import DriftCheck, MLStrategy, ModelVersion
from apps.ml.pipeline import features as pipeline_features
from apps.strategies.models import Deployment

# Heavy JSON a list does not show (the detail of one version reads them).
_VERSION_HEAVY = ("artifact", "reference", "oos_backtest", "folds")


def _newest_version(field: str) -> Subquery:
    return Subquery(ModelVersion.objects.filter(ml_strategy=OuterRef("pk")).order_by("-number").values(field)[:1])


def _newest_check(field: str) -> Subquery:
    return Subquery(
        DriftCheck.objects.filter(ml_strategy=OuterRef("pk")).order_by("-checked_at", "-pk").values(field)[:1]
    )


def ml_strategies_for(*, user: Any) -> QuerySet[MLStrategy]:
    """The user's ML strategies, newest change first, annotated with ``versions_count``,
    ``last_number`` / ``last_status`` / ``last_error`` (the newest version), ``drift_max_psi`` /
    ``drift_is_drift`` / ``drift_checked_at`` (the newest drift check); the promoted version
    (without its heavy fields), the schedule and the instruments come with them."""
    return (
        MLStrategy.objects.filter(owner_id=getattr(user, "pk", None))
        .select_related("promoted_version", "schedule", "schedule__crontab")
        .defer(*(f"promoted_version__{name}" for name in _VERSION_HEAVY))
        .prefetch_related(Prefetch("instruments", queryset=Instrument.objects.order_by("pk")))
        .annotate(
            versions_count=Count("versions", distinct=True),
            last_number=_newest_version("number"),
            last_status=_newest_version("status"),
            last_error=_newest_version("error"),
            drift_max_psi=_newest_check("max_psi"),
            drift_is_drift=_newest_check("is_drift"),
            drift_checked_at=_newest_check("checked_at"),
        )
        .order_by("-updated_at", "-pk")
    )


def ml_strategy_get(*, user: Any, pk: Any) -> MLStrategy:
    """One of the user's ML strategies (annotated as in the list); NotFound otherwise."""
    try:
        key = int(pk)
    except (TypeError, ValueError):
        raise NotFound("No such ML strategy.") from None
    found = ml_strategies_for(user=user).filter(pk=key).first()
    if found is None:
        raise NotFound("No such ML strategy.")
    return found


def versions_for(*, ml_strategy: MLStrategy) -> QuerySet[ModelVersion]:
    """The ML strategy's versions, newest first, without the artifact."""
    return (
        ModelVersion.objects.filter(ml_strategy_id=ml_strategy.pk)
        .defer("artifact")
        .select_related("requested_by", "replaced")
        .defer("replaced__artifact", "replaced__reference", "replaced__oos_backtest", "replaced__folds")
        .order_by("-number")
    )


def version_get(*, user: Any, ml_strategy_id: Any, number: Any) -> ModelVersion:
    """Version ``number`` of one of the user's ML strategies (without the artifact); NotFound
    otherwise."""
    try:
        strategy_key, number_key = int(ml_strategy_id), int(number)
    except (TypeError, ValueError):
        raise NotFound("No such model version.") from None
    found = (
        ModelVersion.objects.filter(
            ml_strategy_id=strategy_key, ml_strategy__owner_id=getattr(user, "pk", None), number=number_key
        )
        .defer("artifact")
        .select_related("ml_strategy", "requested_by", "replaced")
        .defer("replaced__artifact", "replaced__reference", "replaced__oos_backtest", "replaced__folds")
        .first()
    )
    if found is None:
        raise NotFound("No such model version.")
    return found


def metrics_history(*, ml_strategy: MLStrategy) -> list[dict[str, Any]]:
    """Out-of-sample metrics of every trained version, oldest first (the metrics-over-time chart):
    ``[{"number", "finished_at", "status", "auc", "log_loss", "accuracy", "sharpe"}]``."""
    rows = (
        ModelVersion.objects.filter(ml_strategy_id=ml_strategy.pk, status__in=ModelVersion.FINISHED_OK)
        .order_by("number")
        .values("number", "finished_at", "status", "metrics")
    )
    history = []
    for row in rows:
        metrics = row["metrics"] or {}
        history.append(
            {
                "number": row["number"],
                "finished_at": row["finished_at"],
                "status": row["status"],
                **{key: metrics.get(key) for key in ("auc", "log_loss", "accuracy", "sharpe")},
            }
        )
    return history


def drift_history(*, ml_strategy: MLStrategy, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` drift checks, oldest first (the drift chart):
    ``[{"checked_at", "max_psi", "is_drift", "psi": {feature: value}, "version"}]`` (version =
    its number)."""
    rows = list(
        DriftCheck.objects.filter(ml_strategy_id=ml_strategy.pk)
        .order_by("-checked_at", "-pk")
        .values("checked_at", "max_psi", "is_drift", "psi", "version__number")[: max(int(limit), 0)]
    )
    rows.reverse()
    return [
        {
            "checked_at": row["checked_at"],
            "max_psi": row["max_psi"],
            "is_drift": row["is_drift"],
            "psi": row["psi"],
            "version": row["version__number"],
        }
        for row in rows
    ]


def drift_checks_for(*, ml_strategy: MLStrategy) -> QuerySet[DriftCheck]:
    """The ML strategy's drift checks, newest first (the API's paginated list)."""
    return (
        DriftCheck.objects.filter(ml_strategy_id=ml_strategy.pk)
        .select_related("version", "retrain")
        .only(
            "pk",
            "ml_strategy_id",
            "checked_at",
            "window_start",
            "window_end",
            "n_bars",
            "psi",
            "max_psi",
            "is_drift",
            "version__number",
            "retrain__number",
            "created_at",
        )
        .order_by("-checked_at", "-pk")
    )


def feature_catalogue() -> list[dict[str, Any]]:
    """Every selectable feature: ``[{"name", "label", "group", "description", "higher"}]``."""
    return list(pipeline_features.feature_catalogue())


def ml_deployments(*, ml_strategy: MLStrategy) -> QuerySet[Deployment]:
    """The owner's deployments trading this ML strategy, newest first."""
    return (
        Deployment.objects.filter(owner_id=ml_strategy.owner_id, strategy_key="ml", params__model=ml_strategy.pk)
        .select_related("account")
        .prefetch_related("instruments")
        .order_by("-created_at", "-pk")
    )


def ml_strategy_by_id(*, pk: int) -> MLStrategy | None:
    """Any user's ML strategy by id (operators' and tasks' use; never for a user's request)."""
    return MLStrategy.objects.filter(pk=pk).first()
