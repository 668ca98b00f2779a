"""Training: features and labels, purged walk-forward out-of-sample metrics, the backtest of
the out-of-sample signals, the final fit, importances and the drift reference.

Samples are the bars with a known label and complete features (every non-nullable feature
present; the tree models take the nullable ones as NaN, the logistic one imputes them). Several
instruments' candles can be pooled: their samples are merged in time order and split by time
(:mod:`apps.ml.pipeline.splits`), and the out-of-sample backtest runs on the first instrument.

Reproducible: the estimators are seeded and deterministic, the label shuffle (the leakage
check's ``shuffle_labels``) uses its own seeded generator, and nothing depends on the clock, so
the same candles, configuration and seed give the same folds, metrics and model.
"""

import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from apps.backtests.engine import run_backtest
from apps.marketdata import timeframes as market_timeframes
from apps.ml.pipeline.bundle import ModelBundle, decision_signals, usable_rows
from apps.ml.pipeline.drift import reference_distribution
from apps.ml.pipeline.errors import MLInputError
from apps.ml.pipeline.estimators import (
    estimator_build,
    estimator_fit,
    feature_importances,
    model_kind_validate,
    model_params_validate,
    predict_proba,
)
from apps.ml.pipeline.features import DEFAULT_FEATURES, features_build, features_validate, features_warmup
from apps.ml.pipeline.labels import Labels, LabelSpec, labels_build
from apps.ml.pipeline.splits import MAX_SPLITS, Split, purged_walk_forward
from apps.strategies.base import Strategy

Progress = Callable[[float, str], None]
MAX_EQUITY_POINTS = 500
MAX_EMBARGO = 10_000
_DECISION_KEYS = ("threshold", "exit_threshold", "allow_short")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training needs besides the candles (JSON round trip: ``from_dict`` /
    ``as_dict``). ``embargo`` is in bars of ``timeframe``; ``min_train`` is the fewest
    training samples a fold may have; ``fee`` and ``cash`` are the out-of-sample backtest's."""

    features: tuple[str, ...] = DEFAULT_FEATURES
    label: LabelSpec = field(default_factory=LabelSpec)
    model_kind: str = "hist_gb"
    model_params: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(
        default_factory=lambda: {"threshold": 0.55, "exit_threshold": 0.5, "allow_short": False}
    )
    n_splits: int = 5
    embargo: int = 12
    seed: int = 42
    timeframe: str = "1h"
    higher_timeframe: str = ""
    fee: float = 0.001
    cash: float = 10_000.0
    min_train: int = 200

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Validate untrusted input (an MLStrategy's configuration: ``validation`` may hold
        n_splits / embargo / min_train; keys the pipeline does not use, such as instruments or
        history_bars, are ignored). MLInputError naming the field."""
        if not isinstance(data, Mapping):
            raise MLInputError("The configuration must be an object.", field="config")
        validation = data.get("validation") or {}
        if not isinstance(validation, Mapping):
            raise MLInputError("The validation settings must be an object.", field="validation")
        timeframe = data.get("timeframe", "1h")
        higher = data.get("higher_timeframe") or ""
        features = tuple(
            features_validate(data.get("features", DEFAULT_FEATURES), timeframe=timeframe, higher_timeframe=higher)
        )
        kind = model_kind_validate(data.get("model_kind", "hist_gb"))
        return cls(
            features=features,
            label=LabelSpec.from_dict(data.get("label")),
            model_kind=kind,
            model_params=model_params_validate(kind, data.get("model_params")),
            decision=decision_validate(data.get("decision")),
            n_splits=_integer(validation, data, "n_splits", 5, 2, MAX_SPLITS),
            embargo=_integer(validation, data, "embargo", 12, 0, MAX_EMBARGO),
            min_train=_integer(validation, data, "min_train", 200, 10, 10_000_000),
            seed=_integer({}, data, "seed", 42, 0, 2**32 - 1, prefix=""),
            timeframe=timeframe,
            higher_timeframe=higher,
            fee=_number(data, "fee", 0.001, 0.0, 0.1),
            cash=_number(data, "cash", 10_000.0, 1.0, 1e15),
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = list(self.features)
        data["label"] = self.label.as_dict()
        return data


def decision_validate(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """threshold in [0.5, 0.99], exit_threshold in [0.01, threshold], allow_short a bool;
    MLInputError(field="decision.<name>")."""
    data = data or {}
    if not isinstance(data, Mapping):
        raise MLInputError("The decision rule must be an object.", field="decision")
    for key in data:
        if key not in _DECISION_KEYS:
            raise MLInputError(f"Unknown decision setting {key!r}.", field=f"decision.{key}")
    threshold = _number(data, "threshold", 0.55, 0.5, 0.99, prefix="decision.")
    exit_threshold = _number(data, "exit_threshold", min(0.5, threshold), 0.01, threshold, prefix="decision.")
    allow_short = data.get("allow_short", False)
    if not isinstance(allow_short, bool):
        raise MLInputError("allow_short must be true or false.", field="decision.allow_short")
    return {"threshold": threshold, "exit_threshold": exit_threshold, "allow_short": allow_short}


def _number(data: Mapping[str, Any], name: str, default: float, low: float, high: float, *, prefix: str = "") -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MLInputError(f"{name} must be a number.", field=prefix + name)
    if not low <= value <= high:
        raise MLInputError(f"{name} must be between {low:g} and {high:g}.", field=prefix + name)
    return float(value)


def _integer(
    nested: Mapping[str, Any],
    data: Mapping[str, Any],
    name: str,
    default: int,
    low: int,
    high: int,
    *,
    prefix: str = "validation.",
) -> int:
    value = nested.get(name, data.get(name, default))
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MLInputError(f"{name} must be a whole number from {low} to {high}.", field=prefix + name)
    return value


@dataclass
class TrainResult:
    """What a training produced (JSON-ready except ``bundle`` and the datetimes)."""

    bundle: ModelBundle
    metrics: dict[str, Any]
    folds: list[dict[str, Any]]
    oos_backtest: dict[str, Any]
    feature_importances: dict[str, float]
    reference: dict[str, Any]
    data_start: datetime
    data_end: datetime
    n_samples: int
    library_versions: dict[str, str]
    base_rate: float
    oos_proba: pd.Series = field(repr=False, default_factory=lambda: pd.Series(dtype=np.float64))
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Samples:
    """The pooled samples in time order."""

    X: pd.DataFrame
    y: np.ndarray
    times: np.ndarray
    ends: np.ndarray
    source: np.ndarray  # which candles frame each sample came from


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("numpy", "pandas", "scikit-learn", "lightgbm", "numba"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = ""
    return versions


def train(
    candles: pd.DataFrame | Sequence[pd.DataFrame],
    config: TrainConfig,
    *,
    progress: Progress | None = None,
    shuffle_labels: bool = False,
) -> TrainResult:
    """Train ``config`` on ``candles`` (one frame, or several instruments' frames to pool).

    Raises MLInputError: bad candles ("candles"), too little history for the splits
    ("history"), labels of one class only, overall or in a fold's training set ("label").
    ``progress(fraction, stage)`` is called at each stage and fold.
    """
    report = progress or (lambda fraction, stage: None)
    frames = [candles] if isinstance(candles, pd.DataFrame) else list(candles)
    if not frames or any(len(frame) == 0 for frame in frames):
        raise MLInputError("There are no candles to train on.", field="history")
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    report(0.0, "Building features")
    samples = _pool([_frame_samples(frame, config) for frame in frames])
    _check_classes(samples.y, config.label, where="")
    if shuffle_labels:
        samples.y = np.random.default_rng(config.seed).permutation(samples.y)
    timings["features"], clock = _lap(clock)
    splits = purged_walk_forward(
        samples.times,
        samples.ends,
        n_splits=config.n_splits,
        embargo=config.embargo,
        min_train=config.min_train,
        bar_ns=market_timeframes.seconds(config.timeframe) * 1_000_000_000,
    )
    oos, folds, last_model = _walk_forward(samples, splits, config, report)
    tested = np.concatenate([split.test for split in splits])
    metrics = {
        **_scores(samples.y[tested], oos[tested]),
        "base_rate": float(samples.y.mean()),
        "n_oos": int(tested.size),
    }
    timings["validation"], clock = _lap(clock)
    report(0.72, "Backtesting the out-of-sample signals")
    oos_backtest = _oos_backtest(frames[0], samples, oos, config)
    metrics.update(
        {key: oos_backtest["metrics"].get(key) for key in ("total_return", "sharpe", "max_drawdown", "trades")}
    )
    timings["backtest"], clock = _lap(clock)
    report(0.8, "Fitting the final model")
    final = _fit(config, samples, np.arange(samples.y.size), where="")
    timings["final_fit"], clock = _lap(clock)
    report(0.9, "Feature importances and drift reference")
    # LightGBM's gain comes from the final model itself; permutation importance needs data the
    # model has not seen: the last fold's model on its test block.
    last_test = splits[-1].test
    explained = final if config.model_kind == "lightgbm" else last_model
    importances = feature_importances(
        config.model_kind, explained, samples.X.iloc[last_test], samples.y[last_test], seed=config.seed
    )
    reference = reference_distribution(samples.X)
    timings["importances"], clock = _lap(clock)
    versions = library_versions()
    first = samples.source == 0
    report(1.0, "Done")
    return TrainResult(
        bundle=_bundle(config, final, versions),
        metrics=metrics,
        folds=folds,
        oos_backtest=oos_backtest,
        feature_importances=importances,
        reference=reference,
        data_start=min(pd.Timestamp(frame.index[0]) for frame in frames).to_pydatetime(),
        data_end=max(pd.Timestamp(frame.index[-1]) for frame in frames).to_pydatetime(),
        n_samples=int(samples.y.size),
        library_versions=versions,
        base_rate=float(samples.y.mean()),
        oos_proba=pd.Series(oos[first], index=pd.DatetimeIndex(samples.times[first], tz="UTC"), name="proba").dropna(),
        timings=timings,
    )


def _lap(clock: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - clock, now


def _walk_forward(
    samples: "_Samples", splits: list[Split], config: TrainConfig, report: Progress
) -> tuple[np.ndarray, list[dict[str, Any]], Any]:
    """Out-of-sample probabilities (NaN outside the test blocks), the fold records, and the
    last fold's model."""
    oos = np.full(samples.y.size, np.nan)
    folds: list[dict[str, Any]] = []
    model: Any = None
    for k, split in enumerate(splits):
        report(0.1 + 0.6 * k / len(splits), f"Fold {k + 1} of {len(splits)}")
        model = _fit(config, samples, split.train, where=f" in the training set of fold {k + 1}")
        oos[split.test] = predict_proba(model, samples.X.iloc[split.test])
        folds.append(_fold_record(samples, split, oos))
    return oos, folds, model


def _bundle(config: TrainConfig, estimator: Any, versions: dict[str, str]) -> ModelBundle:
    return ModelBundle(
        estimator=estimator,
        features=list(config.features),
        timeframe=config.timeframe,
        higher_timeframe=config.higher_timeframe,
        decision=dict(config.decision),
        warmup=features_warmup(config.features, timeframe=config.timeframe, higher_timeframe=config.higher_timeframe),
        label=config.label.as_dict(),
        model_kind=config.model_kind,
        library_versions=versions,
    )


def _frame_samples(candles: pd.DataFrame, config: TrainConfig) -> tuple[pd.DataFrame, Labels, np.ndarray]:
    X = features_build(candles, config.features, timeframe=config.timeframe, higher_timeframe=config.higher_timeframe)
    labels = labels_build(candles, config.label)
    keep = usable_rows(X) & ~np.isnan(labels.y.to_numpy())
    return X, labels, keep


def _pool(built: list[tuple[pd.DataFrame, Labels, np.ndarray]]) -> _Samples:
    parts_X, ys, times, ends, sources = [], [], [], [], []
    for number, (X, labels, keep) in enumerate(built):
        index_ns = pd.DatetimeIndex(X.index).as_unit("ns").asi8
        parts_X.append(X[keep])
        ys.append(labels.y.to_numpy()[keep])
        times.append(index_ns[keep])
        ends.append(index_ns[labels.end[keep]])
        sources.append(np.full(int(keep.sum()), number, dtype=np.int64))
    time_all = np.concatenate(times)
    order = np.argsort(time_all, kind="stable")
    X_all = pd.concat(parts_X).reset_index(drop=True).iloc[order].reset_index(drop=True)
    return _Samples(
        X=X_all,
        y=np.concatenate(ys)[order],
        times=time_all[order],
        ends=np.concatenate(ends)[order],
        source=np.concatenate(sources)[order],
    )


def _check_classes(y: np.ndarray, spec: LabelSpec, *, where: str) -> None:
    if y.size == 0:
        raise MLInputError("No bar has both a label and complete features: use more history.", field="history")
    present = set(np.unique(y).tolist())
    for value, name in ((1.0, "1 (up)"), (0.0, "0 (not up)")):
        if value not in present:
            hint = (
                "lower the threshold or use a longer horizon"
                if value == 1.0
                else "raise the threshold or use a shorter horizon"
            )
            if spec.kind == "triple_barrier":
                hint = "change the stop / target or the horizon"
            raise MLInputError(
                f"The labels have one class only{where}: no bar is labelled {name} ({spec.describe()}); {hint}.",
                field="label",
            )


def _fit(config: TrainConfig, samples: _Samples, rows: np.ndarray, *, where: str) -> Any:
    y = samples.y[rows]
    _check_classes(y, config.label, where=where)
    estimator = estimator_build(config.model_kind, config.model_params, seed=config.seed)
    return estimator_fit(estimator, samples.X.iloc[rows], y.astype(np.int64))


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import log_loss, roc_auc_score

    if y.size == 0:
        return {"accuracy": None, "log_loss": None, "auc": None}
    both = np.unique(y).size == 2
    return {
        "accuracy": float(np.mean((p >= 0.5) == (y == 1.0))),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0.0, 1.0])),
        "auc": float(roc_auc_score(y, p)) if both else None,
    }


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").isoformat()


def _fold_record(samples: _Samples, split: Split, oos: np.ndarray) -> dict[str, Any]:
    train_t, test_t = samples.times[split.train], samples.times[split.test]
    return {
        "train": [_iso(train_t[0]), _iso(train_t[-1])],
        "test": [_iso(test_t[0]), _iso(test_t[-1])],
        "n_train": int(split.train.size),
        "n_test": int(split.test.size),
        **_scores(samples.y[split.test], oos[split.test]),
        "base_rate": float(samples.y[split.test].mean()),
    }


def _oos_backtest(candles: pd.DataFrame, samples: _Samples, oos: np.ndarray, config: TrainConfig) -> dict[str, Any]:
    """Backtest the decision rule's signals from the out-of-sample probabilities over the first
    instrument's candles of the test period (bars without a probability signal nothing)."""
    mine = (samples.source == 0) & ~np.isnan(oos)
    if not mine.any():
        return {"metrics": {}, "equity": []}
    index_ns = pd.DatetimeIndex(candles.index).as_unit("ns").asi8
    first = int(np.searchsorted(index_ns, samples.times[mine][0], side="left"))
    last = int(np.searchsorted(index_ns, samples.times[mine][-1], side="left"))
    window = candles.iloc[first : last + 1]
    proba = np.full(len(window), np.nan)
    proba[np.searchsorted(index_ns[first : last + 1], samples.times[mine])] = oos[mine]
    signals = pd.DataFrame(decision_signals(proba, config.decision), index=window.index)
    result = run_backtest(
        _PrecomputedSignals(signals),
        window[["open", "high", "low", "close", "volume"]],
        cash=config.cash,
        fee=config.fee,
        allow_short=bool(config.decision.get("allow_short", False)),
        timeframe=config.timeframe,
    )
    equity = result.equity
    points = np.unique(np.linspace(0, len(equity) - 1, min(len(equity), MAX_EQUITY_POINTS)).round().astype(np.int64))
    stamps = pd.DatetimeIndex(equity.index).as_unit("ms").asi8[points]
    values = equity.to_numpy()[points]
    return {
        "metrics": {key: _json_number(value) for key, value in result.metrics.items()},
        "equity": [[int(ms), float(value)] for ms, value in zip(stamps, values, strict=True)],
        "start": _iso(index_ns[first]),
        "end": _iso(index_ns[last]),
    }


def _json_number(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


class _PrecomputedSignals(Strategy):
    """Replays signals computed beforehand (the out-of-sample predictions' decisions)."""

    key = "ml_oos_signals"
    name = "ML out-of-sample signals"
    is_public = False

    def __init__(self, signals: pd.DataFrame) -> None:
        super().__init__()
        self._signals = signals

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        aligned = self._signals.reindex(candles.index, fill_value=False)
        return candles.assign(**{column: aligned[column].to_numpy() for column in aligned.columns})
