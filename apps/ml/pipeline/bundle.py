"""A trained model with everything needed to use it, its storage format, and its signals.

Storage: the :class:`ModelBundle` pickled, zlib-compressed, and identified by the SHA-256 of
those bytes. :func:`bundle_loads` checks the hash before unpickling anything (a corrupt or
tampered artifact is refused without being executed), then the type and the format version.

Signals (:func:`bundle_signals`): features on the candles given, P(label = 1) on the rows whose
features are complete (past the bundle's warm-up, every non-nullable feature present), and the
decision rule: enter long when p >= threshold, exit long when p < exit_threshold; with shorts
allowed, enter short when p <= 1 - threshold and exit short when p > 1 - exit_threshold. A row
inside the warm-up gives no signal, so a backtest over the full history and a deployment's tick
on a window of ``warmup`` bars agree bar for bar.
"""

import hashlib
import pickle
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from apps.ml.pipeline.errors import ModelLoadError
from apps.ml.pipeline.estimators import predict_proba
from apps.ml.pipeline.features import features_build, is_nullable

FORMAT_VERSION = 1
_ROUNDING = 1e-12


@dataclass
class ModelBundle:
    """The fitted ``estimator`` (predict_proba) and how to feed and read it: the features in
    column order, the timeframes, the decision rule (threshold, exit_threshold, allow_short),
    the warm-up in bars, the label it predicts, the model kind and the library versions it was
    trained with."""

    estimator: Any
    features: list[str]
    timeframe: str
    higher_timeframe: str
    decision: dict[str, Any]
    warmup: int
    label: dict[str, Any]
    model_kind: str
    library_versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION


def bundle_dumps(bundle: ModelBundle) -> tuple[bytes, str]:
    """``(data, sha256 hex of data)``: what the registry stores."""
    data = zlib.compress(pickle.dumps(bundle, protocol=5), 6)
    return data, hashlib.sha256(data).hexdigest()


def bundle_loads(data: bytes, sha256: str) -> ModelBundle:
    """The bundle stored as ``data``; ModelLoadError with a readable reason when the bytes do
    not match ``sha256``, do not load, or are not a bundle of this format."""
    if data is None or not isinstance(data, bytes | bytearray | memoryview):
        raise ModelLoadError("The model file is missing.")
    data = bytes(data)
    if hashlib.sha256(data).hexdigest() != (sha256 or "").lower():
        raise ModelLoadError("The model file is corrupt (hash mismatch).")
    try:
        # Only after the hash matched the one the registry stored with the model it wrote itself.
        bundle = pickle.loads(zlib.decompress(data))  # noqa: S301
    except Exception as exc:  # any unpickling failure (a library moved a class, a truncated file)
        raise ModelLoadError(f"The model file could not be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(bundle, ModelBundle):
        raise ModelLoadError(f"The model file holds a {type(bundle).__name__}, not a model bundle.")
    version = getattr(bundle, "format_version", None)
    if version != FORMAT_VERSION:
        raise ModelLoadError(f"The model file has format version {version}; this code reads version {FORMAT_VERSION}.")
    return bundle


def bundle_features(
    bundle: ModelBundle, candles: pd.DataFrame, *, newest: int | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """The features of ``candles`` and the mask of rows a prediction is made for: past the
    warm-up, and among the ``newest`` rows when given (a tick needs its last row only)."""
    start = max(bundle.warmup - 1, 0)
    if newest is not None:
        start = max(start, len(candles) - max(newest, 0))
    X = features_build(
        candles, bundle.features, timeframe=bundle.timeframe, higher_timeframe=bundle.higher_timeframe, start=start
    )
    return X, usable_rows(X, start)


def usable_rows(X: pd.DataFrame, start: int = 0) -> np.ndarray:
    """Rows at or after ``start`` with every non-nullable feature present."""
    required = [name for name in X.columns if not is_nullable(name)]
    mask = np.ones(len(X), dtype=bool) if not required else ~np.isnan(X[required].to_numpy()).any(axis=1)
    mask[: min(start, len(X))] = False
    return mask


def bundle_predict(bundle: ModelBundle, candles: pd.DataFrame, *, newest: int | None = None) -> pd.Series:
    """P(label = 1) per bar of ``candles``; NaN in the warm-up, where features are missing, and
    before the ``newest`` rows when given."""
    X, mask = bundle_features(bundle, candles, newest=newest)
    proba = np.full(len(X), np.nan)
    if mask.any():
        proba[mask] = predict_proba(bundle.estimator, X[mask])
    return pd.Series(proba, index=candles.index, name="proba")


def decision_signals(proba: np.ndarray, decision: dict[str, Any]) -> dict[str, np.ndarray]:
    """The four signal columns of the decision rule (NaN probabilities signal nothing)."""
    threshold = float(decision.get("threshold", 0.55))
    exit_threshold = float(decision.get("exit_threshold", 0.5))
    allow_short = bool(decision.get("allow_short", False))
    known = ~np.isnan(proba)
    p = np.where(known, proba, 0.5)
    off = np.zeros(proba.shape[0], dtype=bool)
    # The mirrored levels up to rounding: 1 - 0.55 is 0.44999999999999996 in floating point,
    # and p = 0.45 must enter short with a 0.55 threshold as p = 0.55 enters long.
    short_entry = 1.0 - threshold + _ROUNDING
    short_exit = 1.0 - exit_threshold + _ROUNDING
    return {
        "enter_long": known & (p >= threshold),
        "exit_long": known & (p < exit_threshold),
        "enter_short": known & (p <= short_entry) if allow_short else off,
        "exit_short": known & (p > short_exit) if allow_short else off.copy(),
    }


def bundle_signals(bundle: ModelBundle, candles: pd.DataFrame, *, newest: int | None = None) -> pd.DataFrame:
    """``candles`` with enter_long / exit_long / enter_short / exit_short and ``proba``.

    ``newest``: predict only the newest rows (the others signal nothing). A tick reads its last
    row only, and on a window longer than the warm-up the rows before it cost most of the time
    (support / resistance blocks and predictions for rows nobody reads)."""
    proba = bundle_predict(bundle, candles, newest=newest).to_numpy()
    return candles.assign(**decision_signals(proba, bundle.decision), proba=proba)
