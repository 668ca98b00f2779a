"""Trendline engine behind ``structure.trendlines``.

Written once for support lines (through pivot lows, below price). Resistance lines run the same
code on negated prices: ``-high`` plays the role of the low and a line under ``-price`` is a line
over ``price``, so breaks, bounces and "nearest" mirror exactly. Bars are processed in order and a
line exists from the bar that confirmed its second pivot, so nothing is known before it could be.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from apps.marketdata.indicators._structure_common import BoolArray, FloatArray, IntArray, volume_bonus


@dataclass(eq=False, slots=True)
class Line:
    """``value(t) = y1 + slope * (t - x1)`` in signed (possibly negated) price units."""

    x1: int
    y1: float
    x2: int
    y2: float
    slope: float
    created: int
    touches: int
    rel_volume_sum: float
    last_touch: int
    bounces: int = 0
    in_touch: bool = False

    def value(self, t: int) -> float:
        return self.y1 + self.slope * (t - self.x1)

    @property
    def strength(self) -> float:
        return self.touches + volume_bonus(self.rel_volume_sum / self.touches)


@dataclass(frozen=True)
class LineParams:
    tolerance_atr: float
    max_lines: int
    lookback: int
    max_anchors: int


@dataclass
class SideResult:
    value: FloatArray
    strength: FloatArray
    breaks: BoolArray
    bounces: BoolArray
    lines: list[Line]


Pivot = tuple[int, float, float]  # (pivot bar, signed price, relative volume)


def _candidate(
    anchor: Pivot, pivot: Pivot, between: list[Pivot], low: FloatArray, t: int, tol: float
) -> tuple[int, float] | None:
    """Touch count and relative-volume sum of the line anchor -> pivot, or None when some bar
    from the anchor to ``t`` has its low more than ``tol`` under the line."""
    (j, q, rv_j), (i, p, rv_i) = anchor, pivot
    slope = (p - q) / (i - j)
    touches, rv_sum = 2, rv_j + rv_i
    for k, price, rv in between:
        offset = price - (q + slope * (k - j))
        if offset < -tol:
            return None
        if offset <= tol:
            touches, rv_sum = touches + 1, rv_sum + rv
    line_values = q + slope * np.arange(t - j + 1, dtype=np.float64)
    if np.any(low[j : t + 1] < line_values - tol):
        return None
    return touches, rv_sum


def _is_duplicate(lines: list[Line], anchor: Pivot, pivot: Pivot, tol: float) -> bool:
    return any(
        abs(ln.value(anchor[0]) - anchor[1]) <= tol and abs(ln.value(pivot[0]) - pivot[1]) <= tol for ln in lines
    )


def _add_pivot(lines: list[Line], history: deque[Pivot], pivot: Pivot, low: FloatArray, t: int, tol: float) -> None:
    """Count the new pivot as a touch of the lines it lies on, then open at most one new line:
    the valid one through an earlier pivot with the most touches (the longest on a tie)."""
    i, p, rv = pivot
    for ln in lines:
        if abs(p - ln.value(i)) <= tol:
            ln.touches, ln.rel_volume_sum, ln.last_touch = ln.touches + 1, ln.rel_volume_sum + rv, i
    best: tuple[int, Pivot, float] | None = None
    earlier = list(history)
    for n_anchor in range(len(earlier) - 1, -1, -1):
        anchor = earlier[n_anchor]
        if anchor[0] >= i or _is_duplicate(lines, anchor, pivot, tol):
            continue
        found = _candidate(anchor, pivot, earlier[n_anchor + 1 :], low, t, tol)
        if found is not None and (best is None or found[0] >= best[0]):
            best = (found[0], anchor, found[1])
    if best is not None:
        touches, (j, q, _), rv_sum = best
        slope = (p - q) / (i - j)
        lines.append(Line(j, q, i, p, slope, t, touches, rv_sum, last_touch=i))
    history.append(pivot)


def run_line_side(
    low: FloatArray,
    close: FloatArray,
    atr: FloatArray,
    rel_volume: FloatArray,
    pivot_price: FloatArray,
    pivot_pos: IntArray,
    params: LineParams,
) -> SideResult:
    """Support lines under ``low``/``close``; call with negated highs/closes for resistance."""
    n = len(close)
    value, strength = np.full(n, np.nan), np.full(n, np.nan)
    breaks, bounces = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    confirmed = {t: (int(pivot_pos[t]), float(pivot_price[t])) for t in np.flatnonzero(pivot_pos >= 0).tolist()}
    lows, closes, atrs, rel_volumes = low.tolist(), close.tolist(), atr.tolist(), rel_volume.tolist()
    lines: list[Line] = []
    history: deque[Pivot] = deque(maxlen=params.max_anchors)
    for t in range(n):
        if atrs[t] != atrs[t]:  # NaN: no ATR yet, so no tolerance to judge lines with
            if t in confirmed:
                pos, price = confirmed[t]
                history.append((pos, price, rel_volumes[pos]))
            continue
        tol, oldest = params.tolerance_atr * atrs[t], t - params.lookback
        if t in confirmed:
            while history and history[0][0] < oldest:
                history.popleft()
            pos, price = confirmed[t]
            _add_pivot(lines, history, (pos, price, rel_volumes[pos]), low, t, tol)
            if len(lines) > params.max_lines:
                lines.sort(key=lambda ln: (ln.strength, ln.last_touch), reverse=True)
                del lines[params.max_lines :]
        lo, c = lows[t], closes[t]
        survivors: list[Line] = []
        best: Line | None = None
        best_value = -np.inf
        for ln in lines:
            v = ln.y1 + ln.slope * (t - ln.x1)
            if ln.last_touch < oldest:
                continue
            if ln.created < t:
                if c < v - tol:
                    breaks[t] = True
                    continue
                touching = lo <= v + tol
                if touching and not ln.in_touch and c >= v:
                    bounces[t], ln.bounces = True, ln.bounces + 1
                ln.in_touch = touching
            survivors.append(ln)
            if v > best_value:
                best, best_value = ln, v
        lines = survivors
        if best is not None:
            value[t], strength[t] = best_value, best.strength
    return SideResult(value, strength, breaks, bounces, lines)
