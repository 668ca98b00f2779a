"""Horizontal support/resistance engine behind ``structure.support_resistance``.

One pass over the bars in order. State at bar ``t`` (the list of levels) is built from pivots
confirmed at or before ``t`` and from bars ``0..t``; the outputs for ``t`` are read from that state,
so they are what was known when bar ``t`` closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from apps.marketdata.indicators._structure_common import BoolArray, FloatArray, PivotArrays, volume_bonus


@dataclass(eq=False, slots=True)
class Level:
    """A horizontal level: the running mean of the pivot prices clustered into it."""

    price: float
    first_touch: int
    last_touch: int
    touches: int = 1
    rel_volume_sum: float = 1.0
    qualified_at: int = -1  # bar at which touches reached min_touches; -1 while not qualified
    side: int = 0  # +1 while the close is above (acts as support), -1 while below
    breaks: int = 0
    retests: int = 0
    awaiting_retest: bool = False
    dropped: bool = False  # broken more than max_breaks times: no longer a level

    @property
    def strength(self) -> float:
        return self.touches + self.retests + volume_bonus(self.rel_volume_sum / self.touches)


@dataclass(frozen=True)
class LevelParams:
    tolerance_atr: float
    min_touches: int
    lookback: int
    max_breaks: int


@dataclass
class LevelResult:
    columns: dict[str, FloatArray | BoolArray]
    active: list[Level] = field(default_factory=list)


def _add_pivot(levels: list[Level], price: float, pos: int, rel_volume: float, tol: float) -> Level:
    nearest: Level | None = None
    best = tol
    for level in levels:
        distance = abs(level.price - price)
        if distance <= best:
            nearest, best = level, distance
    if nearest is None:
        nearest = Level(price=price, first_touch=pos, last_touch=pos, rel_volume_sum=rel_volume)
        levels.append(nearest)
        return nearest
    nearest.price = (nearest.price * nearest.touches + price) / (nearest.touches + 1)
    nearest.touches += 1
    nearest.rel_volume_sum += rel_volume
    nearest.last_touch = max(nearest.last_touch, pos)
    return nearest


def _add_pivots_at(
    t: int, levels: list[Level], active: list[Level], events: PivotEvents, close: float, tol: float
) -> None:
    """Cluster the pivots confirmed at ``t`` into ``levels``; a level reaching ``min_touches``
    joins ``active`` with its side taken from this bar's close."""
    for price, pos in events.at[t]:
        level = _add_pivot(levels, price, pos, events.rel_volume[pos], tol)
        if level.qualified_at < 0 and level.touches >= events.min_touches:
            level.qualified_at = t
            level.side = 1 if close >= level.price else -1
            active.append(level)


@dataclass(frozen=True)
class PivotEvents:
    """Pivots by confirmation bar as plain Python values (fast to read in the bar loop)."""

    at: dict[int, list[tuple[float, int]]]
    rel_volume: list[float]
    min_touches: int

    @classmethod
    def build(cls, pivots: PivotArrays, rel_volume: FloatArray, min_touches: int) -> PivotEvents:
        at: dict[int, list[tuple[float, int]]] = {}
        for prices, positions in ((pivots.high, pivots.high_pos), (pivots.low, pivots.low_pos)):
            for t in np.flatnonzero(positions >= 0).tolist():
                at.setdefault(t, []).append((float(prices[t]), int(positions[t])))
        # Highs before lows on a bar confirming both, as the arrays are scanned in that order.
        return cls(at=at, rel_volume=rel_volume.tolist(), min_touches=min_touches)


def _update_level(level: Level, t: int, low: float, high: float, close: float, tol: float) -> str | None:
    """Apply bar ``t`` to a qualified level; returns the name of the event flag it raises, if any."""
    price = level.price
    if level.side > 0:
        if close < price - tol:
            level.side, level.breaks, level.awaiting_retest = -1, level.breaks + 1, True
            return "break_down"
        if level.awaiting_retest and low <= price + tol and close > price:
            level.retests, level.awaiting_retest, level.last_touch = level.retests + 1, False, t
            return "retest_support"
    else:
        if close > price + tol:
            level.side, level.breaks, level.awaiting_retest = 1, level.breaks + 1, True
            return "break_up"
        if level.awaiting_retest and high >= price - tol and close < price:
            level.retests, level.awaiting_retest, level.last_touch = level.retests + 1, False, t
            return "retest_resistance"
    return None


def run_support_resistance(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    atr: FloatArray,
    rel_volume: FloatArray,
    pivots: PivotArrays,
    params: LevelParams,
) -> LevelResult:
    n = len(close)
    out = {name: np.full(n, np.nan) for name in ("support", "support_strength", "resistance", "resistance_strength")}
    flags = {
        name: np.zeros(n, dtype=bool) for name in ("break_up", "break_down", "retest_support", "retest_resistance")
    }
    events = PivotEvents.build(pivots, rel_volume, params.min_touches)
    highs, lows, closes, atrs = high.tolist(), low.tolist(), close.tolist(), atr.tolist()
    levels: list[Level] = []
    active: list[Level] = []
    for t in range(n):
        a = atrs[t]
        if a != a:  # NaN: no ATR yet, so no tolerance
            continue
        tol, c, oldest = params.tolerance_atr * a, closes[t], t - params.lookback
        if t in events.at:
            levels = [level for level in levels if level.last_touch >= oldest and not level.dropped]
            _add_pivots_at(t, levels, active, events, c, tol)
        survivors: list[Level] = []
        support: Level | None = None
        resistance: Level | None = None
        for level in active:
            if level.last_touch < oldest:
                continue
            if level.qualified_at < t:
                event = _update_level(level, t, lows[t], highs[t], c, tol)
                if event is not None:
                    flags[event][t] = True
                    if level.breaks > params.max_breaks:
                        level.dropped = True
                        continue
            survivors.append(level)
            if level.price <= c:
                if support is None or level.price > support.price:
                    support = level
            elif resistance is None or level.price < resistance.price:
                resistance = level
        active = survivors
        if support is not None:
            out["support"][t], out["support_strength"][t] = support.price, support.strength
        if resistance is not None:
            out["resistance"][t], out["resistance_strength"][t] = resistance.price, resistance.strength
    columns: dict[str, FloatArray | BoolArray] = {**out, **flags}
    return LevelResult(columns=columns, active=sorted(active, key=lambda level: level.price))
