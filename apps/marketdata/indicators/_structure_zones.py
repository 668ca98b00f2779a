"""Supply/demand zone engine behind ``structure.supply_demand_zones``.

Bars are processed in order. A zone is created on the bar of its impulse candle, from that candle
and the base candles before it, so it appears on the row where the impulse closed; tests and
invalidations of a zone are decided by each later bar as it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apps.marketdata.indicators._structure_common import BoolArray, FloatArray, volume_bonus


@dataclass(eq=False, slots=True)
class Zone:
    kind: str  # "demand" or "supply"
    low: float
    high: float
    base_start: int
    created: int  # the impulse bar
    impulse: float  # impulse body in ATRs of the bar before it
    rel_volume: float  # impulse volume over its 20-bar mean
    tests: int = 0
    reactions: int = 0
    in_touch: bool = False

    @property
    def strength(self) -> float:
        return (self.impulse + volume_bonus(self.rel_volume)) / (1 + self.tests)


@dataclass(frozen=True)
class ZoneParams:
    base_max_bars: int
    base_range_atr: float
    impulse_atr: float
    max_zones: int
    lookback: int


@dataclass
class ZoneResult:
    columns: dict[str, FloatArray | BoolArray]
    zones: list[Zone]


@dataclass(frozen=True)
class Bars:
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    atr: FloatArray
    rel_volume: FloatArray


def _impulse_zone(bars: Bars, t: int, base_run: int, params: ZoneParams) -> Zone | None:
    """The zone created by bar ``t`` if it is an impulse leaving a base of ``base_run`` candles."""
    if base_run < 1 or t < 1:
        return None
    atr_before = bars.atr[t - 1]
    o, c = float(bars.open[t]), float(bars.close[t])
    body = abs(c - o)
    if np.isnan(atr_before) or body < params.impulse_atr * atr_before:
        return None
    start = t - min(base_run, params.base_max_bars)
    base_low, base_high = float(bars.low[start:t].min()), float(bars.high[start:t].max())
    if c > o and c > base_high:
        kind = "demand"
    elif c < o and c < base_low:
        kind = "supply"
    else:
        return None
    return Zone(kind, base_low, base_high, start, t, body / float(atr_before), float(bars.rel_volume[t]))


def _update_zone(zone: Zone, low: float, high: float, close: float) -> tuple[bool, bool]:
    """Apply one bar; returns (still valid, test started on this bar)."""
    if zone.kind == "demand":
        if close < zone.low:
            return False, False
        touching = low <= zone.high
    else:
        if close > zone.high:
            return False, False
        touching = high >= zone.low
    started = touching and not zone.in_touch
    if started:
        zone.tests += 1
    elif zone.in_touch and not touching:
        zone.reactions += 1
    zone.in_touch = touching
    return True, started


def _nearest(zones: list[Zone], kind: str) -> Zone | None:
    if kind == "demand":
        demand = [z for z in zones if z.kind == "demand"]
        return max(demand, key=lambda z: (z.high, z.created)) if demand else None
    supply = [z for z in zones if z.kind == "supply"]
    return min(supply, key=lambda z: (z.low, -z.created)) if supply else None


def _new_columns(n: int) -> dict[str, FloatArray | BoolArray]:
    columns: dict[str, FloatArray | BoolArray] = {}
    for name in ("demand_low", "demand_high", "demand_strength", "supply_low", "supply_high", "supply_strength"):
        columns[name] = np.full(n, np.nan)
    columns["zone_strength"] = np.full(n, np.nan)
    for name in ("in_demand", "in_supply", "demand_tested", "supply_tested"):
        columns[name] = np.zeros(n, dtype=bool)
    return columns


def _write_row(columns: dict[str, FloatArray | BoolArray], t: int, zones: list[Zone], close: float) -> None:
    if not zones:
        return
    inside: list[float] = []
    for kind in ("demand", "supply"):
        zone = _nearest(zones, kind)
        if zone is None:
            continue
        columns[f"{kind}_low"][t], columns[f"{kind}_high"][t] = zone.low, zone.high
        columns[f"{kind}_strength"][t] = zone.strength
        if zone.low <= close <= zone.high:
            columns[f"in_{kind}"][t] = True
            inside.append(zone.strength)
    if inside:
        columns["zone_strength"][t] = max(inside)


def run_supply_demand(bars: Bars, params: ZoneParams) -> ZoneResult:
    n = len(bars.close)
    columns = _new_columns(n)
    base = (bars.high - bars.low) <= params.base_range_atr * bars.atr  # NaN ATR compares False
    lows, highs, closes, is_base = bars.low.tolist(), bars.high.tolist(), bars.close.tolist(), base.tolist()
    zones: list[Zone] = []
    base_run = 0  # consecutive base candles ending at the previous bar
    for t in range(n):
        lo, hi, c = lows[t], highs[t], closes[t]
        survivors: list[Zone] = []
        for zone in zones:
            if zone.created < t - params.lookback:
                continue
            valid, started = _update_zone(zone, lo, hi, c)
            if valid:
                survivors.append(zone)
                if started:
                    columns[f"{zone.kind}_tested"][t] = True
        zones = survivors
        created = _impulse_zone(bars, t, base_run, params) if base_run else None
        if created is not None:
            zones.append(created)
            same = [z for z in zones if z.kind == created.kind]
            if len(same) > params.max_zones:
                zones.remove(min(same, key=lambda z: z.created))
        _write_row(columns, t, zones, c)
        base_run = base_run + 1 if is_base[t] else 0
    return ZoneResult(columns=columns, zones=zones)
