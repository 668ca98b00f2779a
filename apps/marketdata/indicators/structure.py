"""Price structure: pivots, horizontal support/resistance, trendlines, supply/demand zones,
Fibonacci levels and their confluence.

Every per-bar function takes candles (columns open, high, low, close, volume; UTC DatetimeIndex of
open times) and returns a DataFrame on the same index whose row ``t`` holds what was known once bar
``t`` had closed. Each has a companion that lists the objects themselves (levels, lines, zones) as
of one bar, for a chart: ``pivot_points``, ``support_resistance_levels``, ``trendline_lines``,
``supply_demand_zone_boxes``, ``fibonacci_levels``, ``confluence_levels``. Their ``at`` argument is
an int position (negative from the end), an index label, or None for the last bar.

No look-ahead, one argument for all of them: a pivot is reported on its confirmation bar (``right``
bars after the swing), ATR and relative volume are trailing, and every engine walks the bars in
order, deciding row ``t`` from its state after bar ``t`` before looking at bar ``t + 1``. So the
rows ``0..t`` computed from candles ``0..t`` equal those rows computed from the whole series, and
``tests/marketdata/test_structure.py`` checks exactly that on real candles. The listing companions
run the same engine on ``candles[:at + 1]`` and report its final state.

Strength scores (all documented on the functions): levels and lines score their pivot touches plus
a volume bonus in [0, 1] (0.5 at average volume on the touching bars, 1 at twice it); zones score
the impulse size in ATRs plus the same bonus, divided by ``1 + tests`` because every revisit uses
up resting orders; Fibonacci levels score 2 for the classic ratios and 1 otherwise.

Heavier helpers live in ``_structure_common``, ``_structure_levels``, ``_structure_lines``,
``_structure_zones``, ``_structure_confluence`` and ``_structure_objects`` of this package.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from apps.marketdata.indicators import _structure_objects as objects
from apps.marketdata.indicators._structure_common import At, resolve_position
from apps.marketdata.indicators._structure_confluence import Candidates, build_candidates, side_best
from apps.marketdata.indicators._structure_objects import Prepared

__all__ = [
    "DEFAULT_EXTENSIONS",
    "DEFAULT_FIB_LEVELS",
    "confluence",
    "confluence_levels",
    "fibonacci",
    "fibonacci_levels",
    "pivot_points",
    "pivots",
    "supply_demand_zone_boxes",
    "supply_demand_zones",
    "support_resistance",
    "support_resistance_levels",
    "trendline_lines",
    "trendlines",
]

DEFAULT_FIB_LEVELS = (0.236, 0.382, 0.5, 0.618, 0.786)
DEFAULT_EXTENSIONS = (1.272, 1.618)


def pivots(candles: pd.DataFrame, left: int = 5, right: int = 5, *, atr_period: int = 14) -> pd.DataFrame:
    """Swing highs and lows, each reported on the bar that confirms it.

    Bar ``p`` is a swing high when its high is strictly above the ``left`` highs before it and at
    least the ``right`` highs after it (a flat top counts once, at its first bar); lows mirror this.
    That needs bar ``p + right``, so the pivot appears on row ``p + right``, never on row ``p``.

    Columns:
        pivot_high / pivot_low: price of the swing confirmed on this row, else NaN.
        pivot_high_at / pivot_low_at: timestamp of the swing bar itself (NaT when none).
        pivot_high_strength / pivot_low_strength: prominence, the distance from the swing to the
            opposite extreme of its ``left + 1 + right`` window in ATRs (Wilder, ``atr_period``).
        last_pivot_high / last_pivot_low: the latest confirmed swing prices, forward-filled.
    """
    prep = Prepared.from_candles(candles, atr_period, left=left, right=right)
    piv, index = prep.pivots, candles.index
    frame = pd.DataFrame(
        {
            "pivot_high": piv.high,
            "pivot_low": piv.low,
            "pivot_high_at": objects.timestamps(index, piv.high_pos),
            "pivot_low_at": objects.timestamps(index, piv.low_pos),
            "pivot_high_strength": piv.high_strength,
            "pivot_low_strength": piv.low_strength,
        },
        index=index,
    )
    frame["last_pivot_high"] = frame["pivot_high"].ffill()
    frame["last_pivot_low"] = frame["pivot_low"].ffill()
    return frame


def pivot_points(
    candles: pd.DataFrame, at: At = None, left: int = 5, right: int = 5, *, atr_period: int = 14
) -> list[dict[str, Any]]:
    """Swings confirmed by bar ``at``, oldest first: kind ("high"/"low"), price, at (swing bar),
    confirmed_at, strength (prominence in ATRs, as in ``pivots``)."""
    prefix = candles.iloc[: resolve_position(candles.index, at) + 1]
    return objects.pivot_list(Prepared.from_candles(prefix, atr_period, left=left, right=right), prefix.index)


def support_resistance(
    candles: pd.DataFrame,
    left: int = 5,
    right: int = 5,
    tolerance_atr: float = 0.5,
    min_touches: int = 2,
    lookback: int = 500,
    *,
    max_breaks: int = 2,
    atr_period: int = 14,
) -> pd.DataFrame:
    """Horizontal levels from clustered confirmed pivots, with breaks and retests.

    Algorithm, bar by bar: every pivot (high or low) confirmed on this bar joins the nearest level
    within ``tolerance_atr`` x ATR (the level price becomes the mean of its pivots) or opens a new
    level. A level with ``min_touches`` pivots is active from that bar on, on the side of the
    close it had then. An active level breaks when a close lands beyond it by more than the
    tolerance (its role flips: broken resistance becomes support); the first later bar that comes
    back within the tolerance and closes on the new side is its retest. A level is dropped when its
    last touch (pivot bar or retest) is more than ``lookback`` bars old, or at its
    ``max_breaks + 1``-th break: a price that is sliced through again and again is no level.

    Strength: pivot touches + retests + a volume bonus in [0, 1] (0.5 at the average relative
    volume of the touching pivot bars, 1 at twice the 20-bar mean).

    Columns:
        support / resistance: nearest active level at/below and above the close, else NaN.
        support_strength / resistance_strength: their strengths.
        break_up / break_down: an active level was closed through upwards / downwards on this bar.
        retest_support / retest_resistance: a broken level was retested from above / below.
    """
    prep = Prepared.from_candles(candles, atr_period, left=left, right=right)
    result = objects.run_levels(prep, tolerance_atr, min_touches, lookback, max_breaks)
    return pd.DataFrame(result.columns, index=candles.index)


def support_resistance_levels(
    candles: pd.DataFrame,
    at: At = None,
    left: int = 5,
    right: int = 5,
    tolerance_atr: float = 0.5,
    min_touches: int = 2,
    lookback: int = 500,
    *,
    max_breaks: int = 2,
    atr_period: int = 14,
) -> list[dict[str, Any]]:
    """Active levels at bar ``at``, by price: kind (support when at/below that bar's close),
    price, strength, touches, retests, breaks, first_touch_at, last_touch_at, known_since."""
    prefix = candles.iloc[: resolve_position(candles.index, at) + 1]
    prep = Prepared.from_candles(prefix, atr_period, left=left, right=right)
    result = objects.run_levels(prep, tolerance_atr, min_touches, lookback, max_breaks)
    return objects.level_list(result.active, prefix)


def trendlines(
    candles: pd.DataFrame,
    left: int = 5,
    right: int = 5,
    max_lines: int = 3,
    tolerance_atr: float = 0.25,
    lookback: int = 300,
    *,
    max_anchors: int = 6,
    atr_period: int = 14,
) -> pd.DataFrame:
    """Support lines through pivot lows and resistance lines through pivot highs.

    Algorithm, bar by bar, per side: a pivot confirmed on this bar counts as a touch of every line
    it lies on (within ``tolerance_atr`` x ATR). Then, pairing it with each of the last
    ``max_anchors`` pivots of that side (within ``lookback``), a candidate line is valid when no
    bar from the earlier pivot to this bar has its low (high for resistance) more than the
    tolerance beyond the line; the valid candidate with most touches (pivots in between within the
    tolerance count) is opened, unless an existing line already passes through both pivots. At
    most ``max_lines`` lines per side are kept (the strongest). A line breaks, and is dropped, when
    a close lands beyond it by more than the tolerance, and is dropped when its last touch is more
    than ``lookback`` bars old. A line appears on the bar that confirmed its second pivot.

    Strength: pivot touches (the two anchors included) + a volume bonus in [0, 1] (0.5 at the
    average relative volume of the touching pivot bars, 1 at twice the 20-bar mean).

    Columns:
        support_line / resistance_line: value on this bar of the nearest active line (the highest
            support line, the lowest resistance line), else NaN.
        support_line_strength / resistance_line_strength: their strengths.
        breakout_up / breakout_down: a resistance / support line was closed through.
        bounce_support / bounce_resistance: a bar came within the tolerance of a line (the first
            bar of such a touch) and closed on the line's side of it.
    """
    prep = Prepared.from_candles(candles, atr_period, left=left, right=right)
    support, resistance = objects.run_lines(prep, tolerance_atr, max_lines, lookback, max_anchors)
    frame = pd.DataFrame(
        {
            "support_line": support.value,
            "support_line_strength": support.strength,
            "resistance_line": -resistance.value,
            "resistance_line_strength": resistance.strength,
            "breakout_up": resistance.breaks,
            "breakout_down": support.breaks,
            "bounce_support": support.bounces,
            "bounce_resistance": resistance.bounces,
        },
        index=candles.index,
    )
    return frame


def trendline_lines(
    candles: pd.DataFrame,
    at: At = None,
    left: int = 5,
    right: int = 5,
    max_lines: int = 3,
    tolerance_atr: float = 0.25,
    lookback: int = 300,
    *,
    max_anchors: int = 6,
    atr_period: int = 14,
) -> list[dict[str, Any]]:
    """Active lines at bar ``at``: kind ("support"/"resistance"), start_at/start_price (first
    anchor), anchor_at/anchor_price (second anchor), end_at/end_price (bar ``at`` and the line's
    value there), slope_per_bar, touches, bounces, strength, known_since."""
    prefix = candles.iloc[: resolve_position(candles.index, at) + 1]
    prep = Prepared.from_candles(prefix, atr_period, left=left, right=right)
    support, resistance = objects.run_lines(prep, tolerance_atr, max_lines, lookback, max_anchors)
    return objects.line_list(support.lines, resistance.lines, prefix.index)


def supply_demand_zones(
    candles: pd.DataFrame,
    base_max_bars: int = 3,
    impulse_atr: float = 1.5,
    base_range_atr: float = 0.8,
    max_zones: int = 10,
    lookback: int = 1000,
    *,
    atr_period: int = 14,
) -> pd.DataFrame:
    """Base-and-impulse supply and demand zones.

    Algorithm, bar by bar: a base candle has a range of at most ``base_range_atr`` x ATR. A bar
    whose body is at least ``impulse_atr`` x the ATR of the bar before it, following at least one
    base candle and closing beyond the base, is an impulse; the zone spans the low to the high of
    the last ``base_max_bars`` (or fewer) base candles: demand for an up impulse, supply for a
    down one. The zone exists from the impulse bar on, as that candle must have closed. Each later
    bar that enters the zone after being outside it is a test (fresh = no tests yet); leaving it
    again in the impulse's direction is a reaction. A demand zone is void once a close lands below
    it (supply: above), or ``lookback`` bars after its impulse; at most ``max_zones`` per kind
    (the newest).

    Strength: (impulse body in ATRs + a volume bonus in [0, 1], 0.5 at the 20-bar mean volume on
    the impulse bar and 1 at twice it) / (1 + tests).

    Columns:
        demand_low / demand_high / demand_strength: the highest active demand zone (else NaN).
        supply_low / supply_high / supply_strength: the lowest active supply zone (else NaN).
        in_demand / in_supply: the close lies inside that zone.
        zone_strength: strength of the zone the close lies in (the stronger if both), else NaN.
        demand_tested / supply_tested: a test of some active zone started on this bar.
    """
    prep = Prepared.from_candles(candles, atr_period)
    result = objects.run_zones(prep, base_max_bars, base_range_atr, impulse_atr, max_zones, lookback)
    return pd.DataFrame(result.columns, index=candles.index)


def supply_demand_zone_boxes(
    candles: pd.DataFrame,
    at: At = None,
    base_max_bars: int = 3,
    impulse_atr: float = 1.5,
    base_range_atr: float = 0.8,
    max_zones: int = 10,
    lookback: int = 1000,
    *,
    atr_period: int = 14,
) -> list[dict[str, Any]]:
    """Active zones at bar ``at``: kind ("demand"/"supply"), low, high, start_at (first base
    candle), created_at (impulse bar), impulse_atr, tests, reactions, fresh, strength."""
    prefix = candles.iloc[: resolve_position(candles.index, at) + 1]
    prep = Prepared.from_candles(prefix, atr_period)
    result = objects.run_zones(prep, base_max_bars, base_range_atr, impulse_atr, max_zones, lookback)
    return objects.zone_list(result.zones, prefix.index)


def fibonacci(
    candles: pd.DataFrame,
    left: int = 5,
    right: int = 5,
    levels: Sequence[float] = DEFAULT_FIB_LEVELS,
    extensions: Sequence[float] = DEFAULT_EXTENSIONS,
) -> pd.DataFrame:
    """Fibonacci retracements and extensions of the latest confirmed swing.

    The swing runs between the last confirmed pivot high and the last confirmed pivot low (see
    ``pivots``): up (+1) when the low came first, down (-1) otherwise. With ``start`` and ``end``
    its first and last point, retracement ``r`` is ``end - r * (end - start)`` and extension ``e``
    is ``start + e * (end - start)``, beyond the end in the swing's direction. A swing from 100 up
    to 200 gives fib_0.5 = 150 and fib_ext_1.618 = 261.8. Nothing changes until the next pivot is
    confirmed, so the levels never use a bar after the row they are on.

    Columns: fib_0 (swing end), fib_100 (swing start), fib_<r> for each retracement (e.g.
    fib_0.618), fib_ext_<e> for each extension (e.g. fib_ext_1.618), swing_direction (+1, -1, 0
    before both a high and a low are known). Levels are NaN while the direction is 0.
    """
    prep = Prepared.from_candles(candles, 14, left=left, right=right)
    return objects.fib_frame(prep, candles.index, levels, extensions)


def fibonacci_levels(
    candles: pd.DataFrame,
    at: At = None,
    left: int = 5,
    right: int = 5,
    levels: Sequence[float] = DEFAULT_FIB_LEVELS,
    extensions: Sequence[float] = DEFAULT_EXTENSIONS,
) -> list[dict[str, Any]]:
    """Fibonacci levels at bar ``at``: name (the ``fibonacci`` column), kind ("swing",
    "retracement", "extension"), ratio, price, strength (2 for the swing ends and 0.382, 0.5,
    0.618, 1.618; 1 otherwise), direction, swing_start_at, swing_end_at. Empty before a swing."""
    prefix = candles.iloc[: resolve_position(candles.index, at) + 1]
    prep = Prepared.from_candles(prefix, 14, left=left, right=right)
    return objects.fib_list(prep, prefix.index, levels, extensions)


def confluence(candles: pd.DataFrame, tolerance_atr: float = 0.5, min_sources: int = 2, **params: Any) -> pd.DataFrame:
    """Price zones where several structure sources agree.

    Candidates on each bar: the nearest S/R support and resistance, the nearest support and
    resistance trendline values, the nearest demand and supply zones (as intervals) and every
    Fibonacci level, all from the per-bar columns of the functions above (``params`` go to every
    one of them that takes that keyword, e.g. ``left=3, right=3, lookback=300``; their own
    tolerances stay at their defaults). Around each candidate, each source (sr, trendline, zone,
    fib) contributes its strongest candidate lying within ``tolerance_atr`` x ATR (intervals:
    gap between them); a cluster with at least ``min_sources`` sources is a confluence zone, priced
    at the mean midpoint of its members. Candidates with midpoint at/below the close form support
    clusters, the others resistance clusters. Row ``t`` only reads row ``t`` of look-ahead-free
    columns, so it is look-ahead free too.

    Score: sum over the agreeing sources of ``1 + min(strength, 5) / 5``, between the number of
    sources and twice that.

    Columns: confluence_support / confluence_resistance (price of the nearest qualifying cluster
    below/above the close, else NaN), confluence_support_score / confluence_resistance_score,
    confluence_support_sources / confluence_resistance_sources (number of agreeing sources),
    confluence_score (the larger of the two scores, NaN when neither side has a cluster).
    """
    prep = Prepared.from_candles(candles, int(params.get("atr_period", 14)))
    candidates = _component_frames(candles, params)
    tol = tolerance_atr * prep.atr
    out: dict[str, np.ndarray] = {}
    for name, side in (("support", 1), ("resistance", -1)):
        best = side_best(candidates, prep.close, tol, side, min_sources)
        out[f"confluence_{name}"] = best["price"]
        out[f"confluence_{name}_score"] = best["score"]
        out[f"confluence_{name}_sources"] = best["sources"].astype(np.int64)
    out["confluence_score"] = np.fmax(out["confluence_support_score"], out["confluence_resistance_score"])
    return pd.DataFrame(out, index=candles.index)


def confluence_levels(
    candles: pd.DataFrame, at: At = None, tolerance_atr: float = 0.5, min_sources: int = 2, **params: Any
) -> list[dict[str, Any]]:
    """Every qualifying confluence cluster at bar ``at``, by price: side ("support"/"resistance"),
    price, score, sources (names), members (candidate name and price per source)."""
    prefix = candles.iloc[: resolve_position(candles.index, at) + 1]
    prep = Prepared.from_candles(prefix, int(params.get("atr_period", 14)))
    candidates = _component_frames(prefix, params)
    return objects.confluence_list(candidates, prep, tolerance_atr, min_sources)


def _component_frames(candles: pd.DataFrame, params: dict[str, Any]) -> Candidates:
    """Run the four sources with the ``params`` each accepts; unknown keywords are an error."""
    parts: dict[str, Callable[..., pd.DataFrame]] = {
        "sr": support_resistance,
        "lines": trendlines,
        "zones": supply_demand_zones,
        "fib": fibonacci,
    }
    accepted = {name: set(inspect.signature(func).parameters) - {"candles"} for name, func in parts.items()}
    unknown = set(params) - set().union(*accepted.values())
    if unknown:
        raise TypeError(f"confluence() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    frames = {
        name: func(candles, **{k: v for k, v in params.items() if k in accepted[name]}) for name, func in parts.items()
    }
    fib_params = {k: v for k, v in params.items() if k in accepted["fib"]}
    ratios = objects.fib_ratios(
        fib_params.get("levels", DEFAULT_FIB_LEVELS), fib_params.get("extensions", DEFAULT_EXTENSIONS)
    )
    return build_candidates(frames["sr"], frames["lines"], frames["zones"], frames["fib"], ratios)
