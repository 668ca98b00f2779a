"""What a model learns to predict, per bar, and when that outcome becomes known.

``forward``: 1 when ``close[t + horizon] / close[t] - 1 > threshold``, else 0; known at
``t + horizon``.

``triple_barrier``: from the close of bar t, an upper barrier at ``close * (1 + target)``, a
lower one at ``close * (1 - stop)``, and a time barrier ``horizon`` bars ahead. Bars t+1 ..
t+horizon are scanned in order: a high at or above the upper barrier first gives 1, a low at or
below the lower one first gives 0, both in the same bar give 0 (the stop counts first, as in the
backtest engine, which cannot know the order inside a bar); neither by the time barrier gives
``close[t + horizon] > close[t]``. Known at the touching bar, or at ``t + horizon``.

The last ``horizon`` bars have no label (NaN, ``end`` -1): their future is not in the data.
``end`` is what purging needs (:mod:`apps.ml.pipeline.splits`): a training sample whose outcome
is known only inside a test block has seen that block.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from apps.ml.pipeline.errors import MLInputError

LABEL_KINDS = ("forward", "triple_barrier")
MAX_HORIZON = 1000


@dataclass(frozen=True)
class LabelSpec:
    """The label: ``kind`` (``forward`` / ``triple_barrier``), ``horizon`` in bars, the forward
    return ``threshold`` (forward), and the ``stop`` / ``target`` fractions (triple barrier)."""

    kind: str = "forward"
    horizon: int = 12
    threshold: float = 0.0
    stop: float = 0.01
    target: float = 0.02

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LabelSpec":
        """Validate untrusted input; MLInputError naming ``label.<name>``."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise MLInputError("The label must be an object.", field="label")
        unknown = sorted(set(data) - {"kind", "horizon", "threshold", "stop", "target"})
        if unknown:
            raise MLInputError(
                f"Unknown label setting(s): {', '.join(map(str, unknown))}.", field=f"label.{unknown[0]}"
            )
        kind = data.get("kind", "forward")
        if kind not in LABEL_KINDS:
            raise MLInputError(f"The label kind must be one of {', '.join(LABEL_KINDS)}.", field="label.kind")
        horizon = data.get("horizon", 12)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= MAX_HORIZON:
            raise MLInputError(
                f"The horizon must be a whole number of bars, 1 to {MAX_HORIZON}.", field="label.horizon"
            )
        return cls(
            kind=kind,
            horizon=horizon,
            threshold=_fraction(data, "threshold", 0.0, low=-0.5, high=0.5),
            stop=_fraction(data, "stop", 0.01, low=1e-5, high=0.5),
            target=_fraction(data, "target", 0.02, low=1e-5, high=5.0),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.kind == "forward":
            return f"return over {self.horizon} bars above {self.threshold:.4%}"
        return f"target {self.target:.2%} before stop {self.stop:.2%} within {self.horizon} bars"


def _fraction(data: Mapping[str, Any], name: str, default: float, *, low: float, high: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MLInputError(f"The {name} must be a number.", field=f"label.{name}")
    if not low <= value <= high:
        raise MLInputError(f"The {name} must be between {low:g} and {high:g}.", field=f"label.{name}")
    return float(value)


@dataclass
class Labels:
    """``y``: 1.0 / 0.0 / NaN per bar (candles' index); ``end``: the bar position at which the
    outcome is known (int64, -1 where ``y`` is NaN)."""

    y: pd.Series
    end: np.ndarray


def labels_build(candles: pd.DataFrame, spec: LabelSpec) -> Labels:
    """The labels of ``spec`` on ``candles`` (sorted by open time; high, low, close)."""
    close = candles["close"].to_numpy(dtype=np.float64)
    size = close.shape[0]
    y = np.full(size, np.nan)
    end = np.full(size, -1, dtype=np.int64)
    n = spec.horizon
    if size > n:
        if spec.kind == "forward":
            y[: size - n] = np.where(close[n:] / close[: size - n] - 1.0 > spec.threshold, 1.0, 0.0)
            end[: size - n] = np.arange(n, size, dtype=np.int64)
        else:
            high = candles["high"].to_numpy(dtype=np.float64)
            low = candles["low"].to_numpy(dtype=np.float64)
            _triple_barrier(close, high, low, n, spec.stop, spec.target, y, end)
    return Labels(y=pd.Series(y, index=candles.index, name="label"), end=end)


@njit(cache=True)
def _triple_barrier(
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    horizon: int,
    stop: float,
    target: float,
    y: np.ndarray,
    end: np.ndarray,
) -> None:
    size = close.shape[0]
    for t in range(size - horizon):
        upper = close[t] * (1.0 + target)
        lower = close[t] * (1.0 - stop)
        label = -1.0
        at = t + horizon
        for j in range(t + 1, t + horizon + 1):
            if low[j] <= lower:
                label = 0.0
                at = j
                break
            if high[j] >= upper:
                label = 1.0
                at = j
                break
        if label < 0.0:
            label = 1.0 if close[t + horizon] > close[t] else 0.0
        y[t] = label
        end[t] = at
