"""Equity and drawdown curves downsampled for charts, keeping their shape.

A million-bar backtest has a million-point equity curve; a chart needs a few thousand. Plain
decimation (every k-th point) would drop the bottom of the worst drawdown, so each bucket of
consecutive bars keeps the two bars where the drawdown is deepest and shallowest, in time order.
Within a bucket whose running peak does not change, the drawdown is the equity over a constant,
so those are also the equity's lowest and highest bars; where new highs are made the last
shallowest bar (drawdown 0) is the highest of them. The deepest drawdown, every new equity high
and the extremes in between all survive. Pure NumPy/pandas, no Django.
"""

import math
from typing import Any

import numpy as np
import pandas as pd

MAX_POINTS = 5000
_PER_BUCKET = 2


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in values.tolist()]


def curve_points(drawdown: np.ndarray, *, max_points: int = MAX_POINTS) -> np.ndarray:
    """Positions to keep: all of them when they fit, else per bucket the argmin and argmax of
    the drawdown, plus the first and last bar (at most ``max_points``)."""
    n = len(drawdown)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // _PER_BUCKET)
    size = math.ceil(n / buckets)
    flat = np.full(buckets * size, np.nan)
    flat[:n] = np.where(np.isfinite(drawdown), drawdown, np.nan)
    grid = flat.reshape(buckets, size)
    valid = ~np.all(np.isnan(grid), axis=1)
    rows = grid[valid]
    base = np.arange(buckets)[valid] * size
    lows = base + np.argmin(np.where(np.isnan(rows), np.inf, rows), axis=1)
    # The LAST shallowest bar: where several new highs fall in one bucket (drawdown 0 at
    # each), the last one is the highest.
    flipped = np.where(np.isnan(rows), -np.inf, rows)[:, ::-1]
    highs = base + size - 1 - np.argmax(flipped, axis=1)
    keep = np.unique(np.concatenate([np.array([0, n - 1]), lows, highs]))
    return keep[keep < n]


def curves_downsample(
    *, equity: pd.Series, drawdown: pd.Series, benchmark: pd.Series | None = None, max_points: int = MAX_POINTS
) -> dict[str, Any]:
    """``{"t": [epoch ms], "equity": [...], "drawdown": [...], "benchmark": [...], "points": n,
    "bars": N}`` for charts, at most about ``max_points`` points (see the module docstring).

    Preconditions: the series share one DatetimeIndex (aware UTC). NaN/inf become null.
    """
    index = pd.DatetimeIndex(equity.index)
    eq = equity.to_numpy(dtype=np.float64)
    dd = drawdown.reindex(index).to_numpy(dtype=np.float64)
    keep = curve_points(dd, max_points=max_points)
    stamps = index[keep]
    millis = (stamps.tz_convert("UTC") if stamps.tz is not None else stamps.tz_localize("UTC")).as_unit("ms").asi8
    result: dict[str, Any] = {
        "t": millis.tolist(),
        "equity": _floats(eq[keep]),
        "drawdown": _floats(dd[keep]),
        "points": len(keep),
        "bars": len(index),
    }
    if benchmark is not None:
        result["benchmark"] = _floats(benchmark.reindex(index).to_numpy(dtype=np.float64)[keep])
    return result
