"""Glue for ``structure``: prepared input arrays, engine runs, and the chart-facing object lists.

The object lists are plain dicts (floats, ints, pandas Timestamps) describing an engine's final
state; the public ``*_levels`` / ``*_lines`` / ``*_boxes`` functions run the engine on the candles
up to the requested bar, so the lists agree with that bar's row of the per-bar frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from apps.marketdata.indicators._structure_common import (
    FloatArray,
    IntArray,
    PivotArrays,
    check_candles,
    check_pivot_window,
    column,
    confirmed_pivots,
    relative_volume,
    wilder_atr,
)
from apps.marketdata.indicators._structure_confluence import SOURCES, Candidates, fib_strength, side_clusters
from apps.marketdata.indicators._structure_levels import Level, LevelParams, LevelResult, run_support_resistance
from apps.marketdata.indicators._structure_lines import Line, LineParams, SideResult, run_line_side
from apps.marketdata.indicators._structure_zones import Bars, Zone, ZoneParams, ZoneResult, run_supply_demand


@dataclass(frozen=True)
class Prepared:
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    atr: FloatArray
    rel_volume: FloatArray
    pivots: PivotArrays

    @classmethod
    def from_candles(cls, candles: pd.DataFrame, atr_period: int, *, left: int = 5, right: int = 5) -> Prepared:
        check_candles(candles)
        check_pivot_window(left, right)
        high, low, close = column(candles, "high"), column(candles, "low"), column(candles, "close")
        atr = wilder_atr(high, low, close, atr_period)
        return cls(
            open=column(candles, "open"),
            high=high,
            low=low,
            close=close,
            atr=atr,
            rel_volume=relative_volume(column(candles, "volume")),
            pivots=confirmed_pivots(high, low, atr, left, right),
        )


def timestamps(index: pd.Index, positions: IntArray) -> pd.Series:
    """``index[position]`` where position >= 0, else NaT (NaN/None for a non-datetime index)."""
    picked = pd.Series(index.take(np.maximum(positions, 0)), index=index)
    return picked.where(positions >= 0)


def _ts(index: pd.Index, pos: int) -> Any:
    return index[pos]


def pivot_list(prep: Prepared, index: pd.Index) -> list[dict[str, Any]]:
    piv = prep.pivots
    found: list[tuple[int, int, dict[str, Any]]] = []
    for kind, price, pos, strength in (
        ("high", piv.high, piv.high_pos, piv.high_strength),
        ("low", piv.low, piv.low_pos, piv.low_strength),
    ):
        for t in np.flatnonzero(pos >= 0):
            item = {
                "kind": kind,
                "price": float(price[t]),
                "at": _ts(index, int(pos[t])),
                "confirmed_at": _ts(index, int(t)),
                "strength": float(strength[t]),
            }
            found.append((int(pos[t]), 0 if kind == "high" else 1, item))
    return [item for _, _, item in sorted(found, key=lambda row: (row[0], row[1]))]


def run_levels(prep: Prepared, tolerance_atr: float, min_touches: int, lookback: int, max_breaks: int) -> LevelResult:
    if min_touches < 1 or lookback < 1 or max_breaks < 0:
        raise ValueError("min_touches and lookback must be at least 1, max_breaks at least 0")
    params = LevelParams(tolerance_atr=tolerance_atr, min_touches=min_touches, lookback=lookback, max_breaks=max_breaks)
    return run_support_resistance(prep.high, prep.low, prep.close, prep.atr, prep.rel_volume, prep.pivots, params)


def level_list(levels: list[Level], candles: pd.DataFrame) -> list[dict[str, Any]]:
    close = float(candles["close"].iloc[-1])
    index = candles.index
    return [
        {
            "kind": "support" if level.price <= close else "resistance",
            "price": level.price,
            "strength": level.strength,
            "touches": level.touches,
            "retests": level.retests,
            "breaks": level.breaks,
            "first_touch_at": _ts(index, level.first_touch),
            "last_touch_at": _ts(index, level.last_touch),
            "known_since": _ts(index, level.qualified_at),
        }
        for level in levels
    ]


def run_lines(
    prep: Prepared, tolerance_atr: float, max_lines: int, lookback: int, max_anchors: int
) -> tuple[SideResult, SideResult]:
    """(support side, resistance side); the resistance side is in negated prices."""
    if max_lines < 1 or lookback < 1 or max_anchors < 1:
        raise ValueError("max_lines, lookback and max_anchors must be at least 1")
    params = LineParams(tolerance_atr=tolerance_atr, max_lines=max_lines, lookback=lookback, max_anchors=max_anchors)
    piv = prep.pivots
    support = run_line_side(prep.low, prep.close, prep.atr, prep.rel_volume, piv.low, piv.low_pos, params)
    resistance = run_line_side(-prep.high, -prep.close, prep.atr, prep.rel_volume, -piv.high, piv.high_pos, params)
    return support, resistance


def line_list(support: list[Line], resistance: list[Line], index: pd.Index) -> list[dict[str, Any]]:
    end = len(index) - 1
    out: list[dict[str, Any]] = []
    for kind, sign, lines in (("support", 1.0, support), ("resistance", -1.0, resistance)):
        for ln in sorted(lines, key=lambda ln: -ln.value(end)):
            out.append(
                {
                    "kind": kind,
                    "start_at": _ts(index, ln.x1),
                    "start_price": sign * ln.y1,
                    "anchor_at": _ts(index, ln.x2),
                    "anchor_price": sign * ln.y2,
                    "end_at": _ts(index, end),
                    "end_price": sign * ln.value(end),
                    "slope_per_bar": sign * ln.slope + 0.0,  # no -0.0 for a flat line
                    "touches": ln.touches,
                    "bounces": ln.bounces,
                    "strength": ln.strength,
                    "known_since": _ts(index, ln.created),
                }
            )
    return out


def run_zones(
    prep: Prepared, base_max_bars: int, base_range_atr: float, impulse_atr: float, max_zones: int, lookback: int
) -> ZoneResult:
    if base_max_bars < 1 or max_zones < 1 or lookback < 1:
        raise ValueError("base_max_bars, max_zones and lookback must be at least 1")
    params = ZoneParams(
        base_max_bars=base_max_bars,
        base_range_atr=base_range_atr,
        impulse_atr=impulse_atr,
        max_zones=max_zones,
        lookback=lookback,
    )
    bars = Bars(prep.open, prep.high, prep.low, prep.close, prep.atr, prep.rel_volume)
    return run_supply_demand(bars, params)


def zone_list(zones: list[Zone], index: pd.Index) -> list[dict[str, Any]]:
    return [
        {
            "kind": zone.kind,
            "low": zone.low,
            "high": zone.high,
            "start_at": _ts(index, zone.base_start),
            "created_at": _ts(index, zone.created),
            "impulse_atr": zone.impulse,
            "tests": zone.tests,
            "reactions": zone.reactions,
            "fresh": zone.tests == 0,
            "strength": zone.strength,
        }
        for zone in sorted(zones, key=lambda z: (z.kind, z.low))
    ]


def fib_ratios(levels: Sequence[float], extensions: Sequence[float]) -> dict[str, float]:
    """Column name -> ratio; extensions are marked by their ``fib_ext_`` prefix."""
    ratios = {"fib_0": 0.0, "fib_100": 1.0}
    ratios.update({f"fib_{ratio:g}": float(ratio) for ratio in levels})
    ratios.update({f"fib_ext_{ratio:g}": float(ratio) for ratio in extensions})
    return ratios


def _swing(prep: Prepared) -> tuple[FloatArray, FloatArray, IntArray, FloatArray, FloatArray]:
    """(start, end, direction, start position, end position) of the latest confirmed swing."""
    piv = prep.pivots
    high = pd.Series(piv.high).ffill().to_numpy(dtype=np.float64)
    low = pd.Series(piv.low).ffill().to_numpy(dtype=np.float64)
    high_pos = pd.Series(np.where(piv.high_pos >= 0, piv.high_pos, np.nan)).ffill().to_numpy(dtype=np.float64)
    low_pos = pd.Series(np.where(piv.low_pos >= 0, piv.low_pos, np.nan)).ffill().to_numpy(dtype=np.float64)
    known = ~np.isnan(high_pos) & ~np.isnan(low_pos)
    direction = np.where(known, np.where(low_pos < high_pos, 1, -1), 0).astype(np.int64)
    up = direction > 0
    start = np.where(known, np.where(up, low, high), np.nan)
    end = np.where(known, np.where(up, high, low), np.nan)
    return start, end, direction, np.where(up, low_pos, high_pos), np.where(up, high_pos, low_pos)


def fib_frame(prep: Prepared, index: pd.Index, levels: Sequence[float], extensions: Sequence[float]) -> pd.DataFrame:
    start, end, direction, _, _ = _swing(prep)
    out: dict[str, Any] = {}
    for name, ratio in fib_ratios(levels, extensions).items():
        if name.startswith("fib_ext_"):
            out[name] = start + ratio * (end - start)
        else:
            out[name] = end - ratio * (end - start)
    out["swing_direction"] = direction
    return pd.DataFrame(out, index=index)


def fib_list(
    prep: Prepared, index: pd.Index, levels: Sequence[float], extensions: Sequence[float]
) -> list[dict[str, Any]]:
    start, end, direction, start_pos, end_pos = _swing(prep)
    last = len(index) - 1
    if direction[last] == 0:
        return []
    s, e = float(start[last]), float(end[last])
    out: list[dict[str, Any]] = []
    for name, ratio in fib_ratios(levels, extensions).items():
        is_ext = name.startswith("fib_ext_")
        kind = "extension" if is_ext else ("swing" if name in {"fib_0", "fib_100"} else "retracement")
        out.append(
            {
                "name": name,
                "kind": kind,
                "ratio": ratio,
                "price": s + ratio * (e - s) if is_ext else e - ratio * (e - s),
                "strength": fib_strength(ratio),
                "direction": int(direction[last]),
                "swing_start_at": _ts(index, int(start_pos[last])),
                "swing_end_at": _ts(index, int(end_pos[last])),
            }
        )
    return out


def confluence_list(
    candidates: Candidates, prep: Prepared, tolerance_atr: float, min_sources: int
) -> list[dict[str, Any]]:
    last = len(prep.close) - 1
    rows = slice(last, last + 1)
    tol = tolerance_atr * prep.atr
    found: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
    for side_name, side in (("support", 1), ("resistance", -1)):
        clusters = side_clusters(candidates, prep.close, tol, side, rows)
        for j in range(len(candidates.names)):
            if clusters.sources[0, j] < min_sources or np.isnan(clusters.price[0, j]):
                continue
            members = tuple(int(k) for k in clusters.member[0, j] if k >= 0)
            found[(side_name, members)] = {
                "side": side_name,
                "price": float(clusters.price[0, j]),
                "score": float(clusters.score[0, j]),
                "sources": [SOURCES[int(candidates.source[k])] for k in members],
                "members": [
                    {
                        "name": candidates.names[k],
                        "price": float((candidates.low[last, k] + candidates.high[last, k]) / 2),
                    }
                    for k in members
                ],
            }
    return sorted(found.values(), key=lambda item: item["price"])
