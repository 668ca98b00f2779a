"""Shared pieces of the price-structure indicators: Wilder ATR, relative volume, confirmed pivots.

Every array built here holds, at position ``t``, a value computed from rows ``0..t`` only. The
structure engines are built on these arrays and process bars strictly in order, so they inherit
the no-look-ahead property.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
type At = int | str | pd.Timestamp | None  # a bar: position, index label, or None for the last

REQUIRED_COLUMNS = ("open", "high", "low", "close", "volume")
RELATIVE_VOLUME_WINDOW = 20


def check_candles(candles: pd.DataFrame) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in candles.columns]
    if missing:
        raise ValueError(f"candles lack columns: {', '.join(missing)}")


def check_pivot_window(left: int, right: int) -> None:
    if left < 1 or right < 1:
        raise ValueError("left and right must be at least 1")


def column(candles: pd.DataFrame, name: str) -> FloatArray:
    return np.asarray(candles[name].to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def wilder_atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    """Average true range with Wilder smoothing; NaN for the first ``period - 1`` bars.

    Seeded with the plain mean of the first ``period`` true ranges, then
    ``atr[t] = atr[t-1] + (tr[t] - atr[t-1]) / period``: a strictly sequential recurrence, so a
    prefix of the candles gives bit-identical values.
    """
    if period < 1:
        raise ValueError("atr_period must be at least 1")
    n = len(close)
    out = np.full(n, np.nan)
    if n < period:
        return out
    prev_close = np.concatenate(([np.nan], close[:-1]))
    # fmax ignores the NaN previous close on the first bar: its true range is high - low.
    true_range = np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))
    value = float(np.mean(true_range[:period]))
    out[period - 1] = value
    for t in range(period, n):
        value += (float(true_range[t]) - value) / period
        out[t] = value
    return out


def relative_volume(volume: FloatArray, window: int = RELATIVE_VOLUME_WINDOW) -> FloatArray:
    """Volume divided by its trailing mean (bars ``t-window+1..t``); 1.0 where undefined."""
    mean = pd.Series(volume).rolling(window, min_periods=1).mean().to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = volume / mean
    rel[~np.isfinite(rel)] = 1.0
    return np.asarray(rel, dtype=np.float64)


def volume_bonus(mean_relative_volume: float) -> float:
    """Strength bonus in [0, 1] for touches on heavy volume: 0.5 at average volume, 1 at twice it."""
    return min(1.0, 0.5 * max(mean_relative_volume, 0.0))


@dataclass(frozen=True)
class PivotArrays:
    """Pivots by confirmation bar: entry ``t`` describes the pivot confirmed at bar ``t``.

    ``high[t]`` is the swing-high price (NaN when none is confirmed at ``t``), ``high_pos[t]`` the
    position of the pivot bar itself (``t - right``, or -1), ``high_strength[t]`` its prominence in
    ATR units. Same for lows.
    """

    high: FloatArray
    high_pos: IntArray
    high_strength: FloatArray
    low: FloatArray
    low_pos: IntArray
    low_strength: FloatArray


def confirmed_pivots(high: FloatArray, low: FloatArray, atr: FloatArray, left: int, right: int) -> PivotArrays:
    """Swing highs/lows, each reported on the bar that confirms it (``right`` bars after the pivot).

    The pivot bar ``p = t - right`` is a swing high when its high is strictly above the ``left``
    highs before it and at least the ``right`` highs after it (on a flat top the first bar wins).
    Every rolling window used here ends at ``t``, so nothing after ``t`` is read.
    """
    n = len(high)
    idx = np.arange(n, dtype=np.int64)
    span = left + right + 1

    def detect(values: pd.Series, sign: float, other: pd.Series) -> tuple[FloatArray, IntArray, FloatArray]:
        signed = values * sign
        candidate = signed.shift(right)
        left_best = signed.shift(right + 1).rolling(left).max()
        right_best = signed.rolling(right).max()
        is_pivot = ((candidate > left_best) & (candidate >= right_best)).to_numpy(dtype=bool)
        price = np.where(is_pivot, values.shift(right).to_numpy(dtype=np.float64), np.nan)
        pos = np.where(is_pivot, idx - right, -1).astype(np.int64)
        # Prominence: distance from the pivot to the opposite extreme of its own window, in ATRs.
        opposite = (other * -sign).rolling(span).max().to_numpy(dtype=np.float64) * -sign
        with np.errstate(invalid="ignore", divide="ignore"):
            strength = np.where(is_pivot, np.abs(price - opposite) / atr, np.nan)
        return price, pos, strength

    h = pd.Series(high)
    lo = pd.Series(low)
    high_price, high_pos, high_strength = detect(h, 1.0, lo)
    low_price, low_pos, low_strength = detect(lo, -1.0, h)
    return PivotArrays(high_price, high_pos, high_strength, low_price, low_pos, low_strength)


def resolve_position(index: pd.Index, at: At) -> int:
    """Position of ``at`` in ``index``: an int position (negative counts from the end), an index
    label (Timestamp or ISO string), or ``None`` for the last bar."""
    n = len(index)
    if n == 0:
        raise ValueError("no candles")
    if at is None:
        return n - 1
    if isinstance(at, int | np.integer) and not isinstance(at, bool):
        pos = int(at) + (n if at < 0 else 0)
        if not 0 <= pos < n:
            raise IndexError(f"bar position {at} outside 0..{n - 1}")
        return pos
    label = pd.Timestamp(at)
    tz = getattr(index, "tz", None)
    if tz is not None and label.tzinfo is None:
        label = label.tz_localize(tz)
    loc = index.get_loc(label)
    if not isinstance(loc, int | np.integer):
        raise KeyError(f"{at!r} does not identify a single bar")
    return int(loc)
