"""Indicators a chart (or an API client) asks for by name: `sma:20,bbands:20:2,macd:12:26:9`.

A spec is `name[:param[:param...]]`; missing trailing parameters take their defaults. Each
indicator knows which pane it belongs to ("price": drawn over the candles; "own": a sub-pane)
and how many bars before the first shown bar it needs (`warmup`) so the value at that bar is
the one a chart of the whole history shows:

- windowed indicators (SMA, WMA, Bollinger, Donchian, CCI, Williams %R, MFI, Stochastic) are
  exact after their window: warm-up = window - 1 (or the sum of their chained windows);
- recursive ones (EMA, RSI, MACD, ATR, ADX, Keltner, SuperTrend) never fully forget their seed,
  so they get `RECURSIVE_WARMUP` x period extra bars: the seed's weight is then below
  (1 - 1/n)^(20 n) < e^-20 (2e-9), far under a price tick;
- VWAP restarts every session: warm-up reaches back to the start of the anchor period;
- OBV is cumulative from the first returned bar (its level is arbitrary anyway, its shape is
  what a chart shows), so it needs none.

Pure pandas, no Django: the API and the chart page both go through `parse` and `compute`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from apps.marketdata import indicators as ta

RECURSIVE_WARMUP = 20
MAX_WARMUP = 12_000  # a weekly VWAP on 1m bars needs 10,079
MAX_INDICATORS = 12
MAX_PERIOD = 1000

Columns = dict[str, pd.Series]


@dataclass(frozen=True)
class Param:
    name: str
    kind: type
    default: Any
    low: float = 1
    high: float = MAX_PERIOD
    choices: tuple[str, ...] = ()

    def parse(self, raw: str, indicator: str) -> Any:
        where = f"{indicator}: {self.name}"
        if self.choices:
            if raw not in self.choices:
                raise ValueError(f"{where} must be one of {', '.join(self.choices)}, got {raw!r}")
            return raw
        try:
            value = self.kind(raw)
        except ValueError:
            kind = "an integer" if self.kind is int else "a number"
            raise ValueError(f"{where} must be {kind}, got {raw!r}") from None
        if not (self.low <= value <= self.high) or (self.kind is float and not math.isfinite(value)):
            raise ValueError(f"{where} must be between {self.low:g} and {self.high:g}, got {raw!r}")
        return value


def _n(default: int) -> Param:
    return Param("n", int, default)


def _k(default: float) -> Param:
    return Param("k", float, default, low=0.01, high=10)


@dataclass(frozen=True)
class IndicatorDef:
    key: str
    label: str
    pane: str  # "price" (over the candles) or "own" (a sub-pane)
    params: tuple[Param, ...]
    compute: Callable[[pd.DataFrame, dict[str, Any]], Columns]
    warmup: Callable[[dict[str, Any], int], int]  # (params, timeframe seconds) -> bars


def _one(series: pd.Series) -> Columns:
    return {"value": series}


def _cols(frame: pd.DataFrame) -> Columns:
    return {str(c): frame[c] for c in frame.columns}


def _rec(period_bars: int, n: int) -> int:
    return period_bars + RECURSIVE_WARMUP * n


def _ichimoku(c: pd.DataFrame, p: dict[str, Any]) -> Columns:
    """The lines as charts draw them at bar t: senkou spans computed `kijun` bars earlier,
    chikou = the close `kijun` bars later (null for the newest `kijun` bars)."""
    frame = ta.ichimoku(c["high"], c["low"], c["close"], p["tenkan"], p["kijun"], p["senkou_b"])
    shift = p["kijun"]
    return {
        "tenkan": frame["tenkan"],
        "kijun": frame["kijun"],
        "senkou_a": frame["senkou_a"].shift(shift),
        "senkou_b": frame["senkou_b"].shift(shift),
        "chikou": frame["chikou"].shift(-shift),
    }


_ANCHOR_SECONDS = {"D": 86_400, "W": 7 * 86_400}


def _vwap_warmup(p: dict[str, Any], tf_seconds: int) -> int:
    return max(0, math.ceil(_ANCHOR_SECONDS[p["anchor"]] / tf_seconds) - 1)


REGISTRY: dict[str, IndicatorDef] = {
    d.key: d
    for d in [
        IndicatorDef("sma", "SMA", "price", (_n(20),), lambda c, p: _one(ta.sma(c["close"], p["n"])),
                     lambda p, s: p["n"] - 1),
        IndicatorDef("ema", "EMA", "price", (_n(20),), lambda c, p: _one(ta.ema(c["close"], p["n"])),
                     lambda p, s: _rec(p["n"] - 1, p["n"])),
        IndicatorDef("wma", "WMA", "price", (_n(20),), lambda c, p: _one(ta.wma(c["close"], p["n"])),
                     lambda p, s: p["n"] - 1),
        IndicatorDef("bbands", "Bollinger", "price", (_n(20), _k(2.0)),
                     lambda c, p: _cols(ta.bbands(c["close"], p["n"], p["k"])), lambda p, s: p["n"] - 1),
        IndicatorDef("donchian", "Donchian", "price", (_n(20),),
                     lambda c, p: _cols(ta.donchian(c["high"], c["low"], p["n"])), lambda p, s: p["n"] - 1),
        IndicatorDef("keltner", "Keltner", "price", (_n(20), Param("atr_n", int, 10), _k(2.0)),
                     lambda c, p: _cols(ta.keltner(c["high"], c["low"], c["close"], p["n"], p["atr_n"], p["k"])),
                     lambda p, s: _rec(max(p["n"] - 1, p["atr_n"]), max(p["n"], p["atr_n"]))),
        IndicatorDef("supertrend", "SuperTrend", "price", (_n(10), _k(3.0)),
                     lambda c, p: _cols(ta.supertrend(c["high"], c["low"], c["close"], p["n"], p["k"])),
                     lambda p, s: _rec(p["n"], p["n"])),
        IndicatorDef("vwap", "VWAP", "price", (Param("anchor", str, "D", choices=("D", "W")),),
                     lambda c, p: _one(ta.vwap(c["high"], c["low"], c["close"], c["volume"], p["anchor"])),
                     _vwap_warmup),
        IndicatorDef("ichimoku", "Ichimoku", "price",
                     (Param("tenkan", int, 9), Param("kijun", int, 26), Param("senkou_b", int, 52)),
                     _ichimoku, lambda p, s: p["senkou_b"] - 1 + p["kijun"]),
        IndicatorDef("rsi", "RSI", "own", (_n(14),), lambda c, p: _one(ta.rsi(c["close"], p["n"])),
                     lambda p, s: _rec(p["n"], p["n"])),
        IndicatorDef("macd", "MACD", "own",
                     (Param("fast", int, 12), Param("slow", int, 26), Param("signal", int, 9)),
                     lambda c, p: _cols(ta.macd(c["close"], p["fast"], p["slow"], p["signal"])),
                     lambda p, s: _rec(p["slow"] + p["signal"] - 2, p["slow"])),
        IndicatorDef("stoch", "Stochastic", "own",
                     (Param("k", int, 14), Param("smooth_k", int, 3), Param("d", int, 3)),
                     lambda c, p: _cols(ta.stoch(c["high"], c["low"], c["close"], p["k"], p["smooth_k"], p["d"])),
                     lambda p, s: p["k"] + p["smooth_k"] + p["d"] - 3),
        IndicatorDef("atr", "ATR", "own", (_n(14),),
                     lambda c, p: _one(ta.atr(c["high"], c["low"], c["close"], p["n"])),
                     lambda p, s: _rec(p["n"], p["n"])),
        IndicatorDef("adx", "ADX", "own", (_n(14),),
                     lambda c, p: _one(ta.adx(c["high"], c["low"], c["close"], p["n"])),
                     lambda p, s: _rec(2 * p["n"] - 1, p["n"])),
        IndicatorDef("cci", "CCI", "own", (_n(20),),
                     lambda c, p: _one(ta.cci(c["high"], c["low"], c["close"], p["n"])), lambda p, s: p["n"] - 1),
        IndicatorDef("willr", "Williams %R", "own", (_n(14),),
                     lambda c, p: _one(ta.willr(c["high"], c["low"], c["close"], p["n"])), lambda p, s: p["n"] - 1),
        IndicatorDef("obv", "OBV", "own", (), lambda c, p: _one(ta.obv(c["close"], c["volume"])), lambda p, s: 0),
        IndicatorDef("mfi", "MFI", "own", (_n(14),),
                     lambda c, p: _one(ta.mfi(c["high"], c["low"], c["close"], c["volume"], p["n"])),
                     lambda p, s: p["n"]),
    ]
}  # fmt: skip


@dataclass(frozen=True)
class IndicatorSpec:
    text: str  # as the client wrote it: the key of its result
    definition: IndicatorDef
    params: dict[str, Any]

    def warmup(self, timeframe_seconds: int) -> int:
        return min(MAX_WARMUP, self.definition.warmup(self.params, timeframe_seconds))


def _probe_frame() -> pd.DataFrame:
    index = pd.date_range("2020-01-01", periods=3, freq="h", tz="UTC")
    values = np.array([1.0, 2.0, 1.5])
    return pd.DataFrame({"open": values, "high": values + 1, "low": values - 1, "close": values, "volume": values},
                        index=index)  # fmt: skip


def parse_one(text: str) -> IndicatorSpec:
    name, *raw = text.strip().split(":")
    name = name.strip().lower()
    definition = REGISTRY.get(name)
    if definition is None:
        raise ValueError(f"unknown indicator {name!r}; use one of {', '.join(REGISTRY)}")
    if len(raw) > len(definition.params):
        names = ", ".join(p.name for p in definition.params) or "none"
        raise ValueError(
            f"{name} takes at most {len(definition.params)} parameter(s) ({names}), got {len(raw)} in {text!r}"
        )
    params = {p.name: p.default for p in definition.params}
    for param, value in zip(definition.params, raw, strict=False):
        params[param.name] = param.parse(value.strip(), name)
    try:
        # Constraints between parameters (MACD's fast < slow ...) live in the library: ask it.
        definition.compute(_probe_frame(), params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    return IndicatorSpec(text=text.strip(), definition=definition, params=params)


def parse(text: str) -> list[IndicatorSpec]:
    """`sma:20,ema:50` -> specs, in order, duplicates dropped. Raises ValueError naming the
    offending item."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if len(items) > MAX_INDICATORS:
        raise ValueError(f"at most {MAX_INDICATORS} indicators per request, got {len(items)}")
    specs: dict[str, IndicatorSpec] = {}
    for item in items:
        spec = parse_one(item)
        specs.setdefault(spec.text, spec)
    return list(specs.values())


def warmup_bars(specs: Sequence[IndicatorSpec], timeframe_seconds: int) -> int:
    return max((s.warmup(timeframe_seconds) for s in specs), default=0)


def _json_floats(series: pd.Series) -> list[float | None]:
    values = series.to_numpy(dtype=np.float64)
    return [None if math.isnan(v) else v for v in values.tolist()]


def compute(candles: pd.DataFrame, specs: Sequence[IndicatorSpec], *, keep_last: int) -> dict[str, dict[str, Any]]:
    """Each spec over all of `candles` (warm-up included), reported for the last `keep_last`
    rows: {spec text: {name, label, pane, params, series: {column: [float | None]}}}."""
    out: dict[str, dict[str, Any]] = {}
    first = max(0, len(candles) - keep_last)
    for spec in specs:
        columns = spec.definition.compute(candles, spec.params) if len(candles) else {}
        out[spec.text] = {
            "name": spec.definition.key,
            "label": spec.definition.label,
            "pane": spec.definition.pane,
            "params": spec.params,
            "series": {name: _json_floats(col.iloc[first:]) for name, col in columns.items()},
        }
    return out
