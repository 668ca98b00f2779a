"""What the ML pages show, prepared from the models and selectors: formatted metrics, version
rows, the configuration summary and the JSON the page script starts from."""

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.urls import reverse

from apps.ml.models import MLStrategy, ModelVersion

DASH = "–"  # noqa: RUF001 - an en dash, for "no value"


def number(value: Any, digits: int = 4) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return DASH
    return f"{x:.{digits}f}" if math.isfinite(x) else DASH


def percent(value: Any, *, signed: bool = False, digits: int = 2) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return DASH
    if not math.isfinite(x):
        return DASH
    return f"{x * 100:+.{digits}f}%" if signed else f"{x * 100:.{digits}f}%"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return DASH
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def metric_cells(metrics: Mapping[str, Any] | None) -> dict[str, str]:
    m = metrics or {}
    return {
        "auc": number(m.get("auc")),
        "log_loss": number(m.get("log_loss")),
        "accuracy": percent(m.get("accuracy")),
        "sharpe": number(m.get("sharpe"), 2),
        "total_return": percent(m.get("total_return"), signed=True),
        "max_drawdown": percent(m.get("max_drawdown")),
        "trades": str(m.get("trades")) if m.get("trades") is not None else DASH,
        "base_rate": percent(m.get("base_rate")),
    }


def version_row(version: ModelVersion, *, can_promote: bool) -> dict[str, Any]:
    """One line of the versions table."""
    comparison = version.comparison or {}
    return {
        "version": version,
        "number": version.number,
        "status": version.status,
        "status_display": version.get_status_display(),
        "trigger": version.get_trigger_display(),
        "metrics": metric_cells(version.metrics),
        "duration": duration(version.started_at, version.finished_at),
        "reason": comparison.get("reason", "") if version.status == ModelVersion.Status.REJECTED else "",
        "error": version.error if version.status == ModelVersion.Status.FAILED else "",
        "can_promote": can_promote
        and version.status in (ModelVersion.Status.REJECTED, ModelVersion.Status.RETIRED)
        and bool(version.artifact_sha256),
    }


def version_payload(version: ModelVersion | None) -> dict[str, Any] | None:
    """The same keys as the "ml.progress" / "ml.version" events, for the page script and the
    status poll."""
    if version is None:
        return None
    return {
        "ml_strategy": version.ml_strategy_id,
        "version": version.pk,
        "number": version.number,
        "status": version.status,
        "progress": version.progress,
        "stage": version.stage,
        "error": version.error,
        "metrics": version.metrics or {},
        "comparison": version.comparison or {},
        "finished": version.status not in ModelVersion.ACTIVE,
    }


def label_text(label: Mapping[str, Any]) -> str:
    horizon = label.get("horizon")
    if label.get("kind") == "triple_barrier":
        return (
            f"Triple barrier: target {percent(label.get('target'))} before stop {percent(label.get('stop'))} "
            f"within {horizon} bars"
        )
    return f"Forward return over {horizon} bars above {percent(label.get('threshold'), digits=3)}"


def decision_text(decision: Mapping[str, Any]) -> str:
    text = f"Enter long when P ≥ {decision.get('threshold')}, exit when P < {decision.get('exit_threshold')}"
    if decision.get("allow_short"):
        text += "; shorts mirrored"
    return text


def config_summary(ml: MLStrategy, *, catalogue_labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, text) rows of the configuration card."""
    validation = ml.validation or {}
    params = ", ".join(f"{k}={v}" for k, v in sorted((ml.model_params or {}).items())) or "defaults"
    features = [catalogue_labels.get(name, name) for name in ml.features or []]
    return [
        ("Model", f"{ml.get_model_kind_display()} ({params})"),
        ("Label", label_text(ml.label or {})),
        ("Decision", decision_text(ml.decision or {})),
        ("Features", f"{len(features)}: " + ", ".join(features)),
        (
            "Validation",
            f"{validation.get('n_splits')} purged walk-forward splits, embargo {validation.get('embargo')} bars, "
            f"newest {validation.get('history_bars')} bars, seed {ml.seed}",
        ),
        ("Promotion", f"Beat the promoted version's {ml.get_promotion_metric_display()} by {ml.promotion_margin:g}"),
        (
            "Drift",
            f"PSI ≥ {ml.drift_threshold:g} over the newest {ml.drift_window} bars"
            + ("; retrains on drift" if ml.retrain_on_drift else "; alerts only"),
        ),
    ]


def page_config(ml: MLStrategy, active: ModelVersion | None) -> dict[str, Any]:
    return {
        "mlStrategy": ml.pk,
        "statusUrl": reverse("ml:status", args=[ml.pk]),
        "active": version_payload(active),
    }


def worst_features(psi: Mapping[str, Any] | None, *, labels: Mapping[str, str], limit: int = 5) -> list[dict[str, Any]]:
    """The most shifted features of a drift check, largest PSI first."""
    values: list[tuple[float, str]] = []
    for name, value in (psi or {}).items():
        try:
            x = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            values.append((x, name))
    values.sort(key=lambda item: -item[0])
    return [{"name": name, "label": labels.get(name, name), "psi": x} for x, name in values[:limit]]


def data_range(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return DASH
    return f"{start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M}"


def first_test_start(folds: Sequence[Mapping[str, Any]] | None) -> Any:
    """Where the out-of-sample period of a version begins (its first fold's test block)."""
    for fold in folds or []:
        test = fold.get("test")
        if isinstance(test, list | tuple) and test:
            return test[0]
    return None
