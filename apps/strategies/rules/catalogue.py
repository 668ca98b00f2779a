"""What a rule can reference: candle columns and the indicators of the library, with their
arguments (types, defaults, bounds) and outputs. The editor, the validator and the compiler all
read this one table."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from apps.marketdata import indicators as ta
from apps.strategies.library._signals import ema_settle

COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

Args = tuple[float, ...]
Compute = Callable[[pd.DataFrame, Args], pd.DataFrame | pd.Series]


@dataclass(frozen=True)
class Arg:
    name: str
    kind: type  # int or float
    default: float
    low: float
    high: float
    help: str

    def as_dict(self) -> dict[str, Any]:
        kind = "int" if self.kind is int else "float"
        default: float = int(self.default) if self.kind is int else float(self.default)
        return {
            "name": self.name,
            "kind": kind,
            "default": default,
            "low": self.low,
            "high": self.high,
            "help": self.help,
        }


@dataclass(frozen=True)
class RuleIndicator:
    name: str
    label: str
    help: str
    args: tuple[Arg, ...]
    compute: Compute
    warmup: Callable[[Args], int]
    outputs: tuple[str, ...] = ()  # empty: a single series
    check: Callable[[Args], str | None] | None = None  # a message when the args disagree

    @property
    def default_output(self) -> str | None:
        return self.outputs[0] if self.outputs else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "help": self.help,
            "args": [arg.as_dict() for arg in self.args],
            "outputs": list(self.outputs),
            "default_output": self.default_output,
        }


def _period(default: int, low: int = 1, high: int = 1000, name: str = "period", help: str = "Period, in bars") -> Arg:
    return Arg(name, int, default, low, high, help)


def _i(args: Args, position: int) -> int:
    return int(args[position])


def _hlc(candles: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    return candles["high"], candles["low"], candles["close"]


def _macd_check(args: Args) -> str | None:
    return None if args[0] < args[1] else "the fast period must be shorter than the slow period"


_PIVOT_ARGS = (
    _period(5, 1, 50, "left", "Bars on the left of a swing point"),
    _period(5, 1, 50, "right", "Bars on the right that confirm a swing point"),
)


def _indicators() -> dict[str, RuleIndicator]:
    items = [
        RuleIndicator(
            "sma",
            "Simple moving average",
            "Mean of the last n closes.",
            (_period(20),),
            lambda c, a: ta.sma(c["close"], _i(a, 0)),
            lambda a: _i(a, 0),
        ),
        RuleIndicator(
            "ema",
            "Exponential moving average",
            "Moving average weighting recent closes more.",
            (_period(20),),
            lambda c, a: ta.ema(c["close"], _i(a, 0)),
            lambda a: ema_settle(_i(a, 0)),
        ),
        RuleIndicator(
            "wma",
            "Weighted moving average",
            "Linearly weighted mean of the last n closes.",
            (_period(20),),
            lambda c, a: ta.wma(c["close"], _i(a, 0)),
            lambda a: _i(a, 0),
        ),
        RuleIndicator(
            "rsi",
            "Relative strength index",
            "Momentum oscillator from 0 to 100 (30 oversold, 70 overbought).",
            (_period(14, 2, 500),),
            lambda c, a: ta.rsi(c["close"], _i(a, 0)),
            lambda a: ema_settle(_i(a, 0)),
        ),
        RuleIndicator(
            "macd",
            "MACD",
            "Fast EMA minus slow EMA (macd), its EMA (signal) and their difference (hist).",
            (
                _period(12, 2, 200, "fast", "Fast EMA period"),
                _period(26, 3, 400, "slow", "Slow EMA period"),
                _period(9, 1, 200, "signal", "Signal line period"),
            ),
            lambda c, a: ta.macd(c["close"], _i(a, 0), _i(a, 1), _i(a, 2)),
            lambda a: ema_settle(_i(a, 1)) + _i(a, 2),
            ("macd", "signal", "hist"),
            _macd_check,
        ),
        RuleIndicator(
            "bbands",
            "Bollinger bands",
            "SMA of the close (middle) plus and minus k standard deviations.",
            (_period(20, 2), Arg("k", float, 2.0, 0.1, 10.0, "Width in standard deviations")),
            lambda c, a: ta.bbands(c["close"], _i(a, 0), float(a[1])),
            lambda a: _i(a, 0),
            ("middle", "upper", "lower"),
        ),
        RuleIndicator(
            "atr",
            "Average true range",
            "Average bar range including gaps (volatility, in price units).",
            (_period(14),),
            lambda c, a: ta.atr(*_hlc(c), _i(a, 0)),
            lambda a: ema_settle(_i(a, 0)),
        ),
        RuleIndicator(
            "adx",
            "Average directional index",
            "Trend strength from 0 to 100 (above 25: trending).",
            (_period(14, 2, 200),),
            lambda c, a: ta.adx(*_hlc(c), _i(a, 0)),
            lambda a: ema_settle(2 * _i(a, 0)),
        ),
        RuleIndicator(
            "stoch",
            "Stochastic oscillator",
            "Where the close sits in the recent range, 0 to 100 (k and its SMA d).",
            (
                _period(14, 1, 500, "k", "Look-back period"),
                _period(3, 1, 50, "smooth_k", "Smoothing of k"),
                _period(3, 1, 50, "d", "Period of d"),
            ),
            lambda c, a: ta.stoch(*_hlc(c), _i(a, 0), _i(a, 1), _i(a, 2)),
            lambda a: _i(a, 0) + _i(a, 1) + _i(a, 2),
            ("k", "d"),
        ),
        RuleIndicator(
            "cci",
            "Commodity channel index",
            "Distance of the typical price from its mean, in mean deviations.",
            (_period(20, 2, 500),),
            lambda c, a: ta.cci(*_hlc(c), _i(a, 0)),
            lambda a: _i(a, 0),
        ),
        RuleIndicator(
            "willr",
            "Williams %R",
            "Where the close sits in the recent range, -100 to 0.",
            (_period(14, 2, 500),),
            lambda c, a: ta.willr(*_hlc(c), _i(a, 0)),
            lambda a: _i(a, 0),
        ),
        RuleIndicator(
            "mfi",
            "Money flow index",
            "Volume-weighted RSI, 0 to 100.",
            (_period(14, 2, 500),),
            lambda c, a: ta.mfi(*_hlc(c), c["volume"], _i(a, 0)),
            lambda a: _i(a, 0) + 1,
        ),
        RuleIndicator(
            "obv",
            "On-balance volume",
            "Running total of volume, added on up closes and subtracted on down closes.",
            (),
            lambda c, a: ta.obv(c["close"], c["volume"]),
            lambda a: 1,
        ),
        RuleIndicator(
            "vwap",
            "VWAP (daily)",
            "Volume-weighted average price since the start of the UTC day.",
            (),
            lambda c, a: ta.vwap(*_hlc(c), c["volume"], "D"),
            lambda a: 1,
        ),
        RuleIndicator(
            "donchian",
            "Donchian channel",
            "Highest high (upper) and lowest low (lower) of the last n bars, "
            "this one included: compare the close with the previous bar's channel (offset 1) for a breakout.",
            (_period(20),),
            lambda c, a: ta.donchian(c["high"], c["low"], _i(a, 0)),
            lambda a: _i(a, 0),
            ("middle", "upper", "lower"),
        ),
        RuleIndicator(
            "keltner",
            "Keltner channel",
            "EMA of the close (middle) plus and minus k ATRs.",
            (_period(20), _period(10, 1, 500, "atr_n", "ATR period"), Arg("k", float, 2.0, 0.1, 10.0, "Width in ATRs")),
            lambda c, a: ta.keltner(*_hlc(c), _i(a, 0), _i(a, 1), float(a[2])),
            lambda a: ema_settle(max(_i(a, 0), _i(a, 1))),
            ("middle", "upper", "lower"),
        ),
        RuleIndicator(
            "supertrend",
            "SuperTrend",
            "ATR trailing line under (uptrend) or over (downtrend) the price; direction is +1 or -1.",
            (_period(10, 1, 500), Arg("k", float, 3.0, 0.1, 20.0, "Distance in ATRs")),
            lambda c, a: ta.supertrend(*_hlc(c), _i(a, 0), float(a[1])),
            lambda a: ema_settle(_i(a, 0)),
            ("supertrend", "direction"),
        ),
        RuleIndicator(
            "ichimoku",
            "Ichimoku",
            "Tenkan and kijun lines, the two cloud spans as computed on this bar, chikou.",
            (
                _period(9, 1, 500, "tenkan", "Tenkan period"),
                _period(26, 1, 500, "kijun", "Kijun period"),
                _period(52, 1, 1000, "senkou_b", "Senkou B period"),
            ),
            lambda c, a: ta.ichimoku(*_hlc(c), _i(a, 0), _i(a, 1), _i(a, 2)),
            lambda a: max(_i(a, 0), _i(a, 1), _i(a, 2)),
            ("tenkan", "kijun", "senkou_a", "senkou_b", "chikou"),
        ),
        RuleIndicator(
            "pivots",
            "Swing points",
            "Latest confirmed swing high / low (confirmed `right` bars after the swing).",
            _PIVOT_ARGS,
            lambda c, a: ta.pivots(c, _i(a, 0), _i(a, 1)),
            lambda a: 10 * (_i(a, 0) + _i(a, 1)),
            ("last_pivot_high", "last_pivot_low"),
        ),
        RuleIndicator(
            "support_resistance",
            "Support and resistance",
            "Nearest horizontal level below (support) and above "
            "(resistance) the close; break and retest flags are 1 on the bar they happen, else 0.",
            (*_PIVOT_ARGS, Arg("tolerance_atr", float, 0.5, 0.05, 5.0, "Clustering tolerance in ATRs")),
            lambda c, a: ta.support_resistance(c, _i(a, 0), _i(a, 1), float(a[2])),
            lambda a: 500,
            (
                "support",
                "resistance",
                "support_strength",
                "resistance_strength",
                "break_up",
                "break_down",
                "retest_support",
                "retest_resistance",
            ),
        ),
        RuleIndicator(
            "trendlines",
            "Trendlines",
            "Value on this bar of the nearest support and resistance trendlines; "
            "breakout and bounce flags are 1 on the bar they happen, else 0.",
            (*_PIVOT_ARGS, Arg("tolerance_atr", float, 0.25, 0.05, 5.0, "Touch tolerance in ATRs")),
            lambda c, a: ta.trendlines(c, _i(a, 0), _i(a, 1), tolerance_atr=float(a[2])),
            lambda a: 300,
            (
                "support_line",
                "resistance_line",
                "support_line_strength",
                "resistance_line_strength",
                "breakout_up",
                "breakout_down",
                "bounce_support",
                "bounce_resistance",
            ),
        ),
        RuleIndicator(
            "supply_demand_zones",
            "Supply and demand zones",
            "Bounds of the nearest demand zone (below) and supply "
            "zone (above); in_demand / in_supply are 1 while the close is inside, tested flags 1 when a test starts.",
            (
                _period(3, 1, 10, "base_max_bars", "Most base candles in a zone"),
                Arg("impulse_atr", float, 1.5, 0.2, 10.0, "Impulse candle body in ATRs"),
            ),
            lambda c, a: ta.supply_demand_zones(c, _i(a, 0), float(a[1])),
            lambda a: 200,
            (
                "demand_low",
                "demand_high",
                "supply_low",
                "supply_high",
                "demand_strength",
                "supply_strength",
                "zone_strength",
                "in_demand",
                "in_supply",
                "demand_tested",
                "supply_tested",
            ),
        ),
        RuleIndicator(
            "fibonacci",
            "Fibonacci levels",
            "Retracements and extensions of the latest confirmed swing "
            "(fib_0 = swing end, fib_100 = swing start); swing_direction is +1 up, -1 down.",
            _PIVOT_ARGS,
            lambda c, a: ta.fibonacci(c, _i(a, 0), _i(a, 1)),
            lambda a: 10 * (_i(a, 0) + _i(a, 1)),
            (
                "fib_0.618",
                "fib_0",
                "fib_0.236",
                "fib_0.382",
                "fib_0.5",
                "fib_0.786",
                "fib_100",
                "fib_ext_1.272",
                "fib_ext_1.618",
                "swing_direction",
            ),
        ),
        RuleIndicator(
            "confluence",
            "Confluence zones",
            "Nearest price zones below / above the close where several kinds of "
            "structure agree, their scores and number of agreeing sources.",
            (
                Arg("tolerance_atr", float, 0.5, 0.05, 5.0, "Agreement tolerance in ATRs"),
                _period(2, 1, 4, "min_sources", "Sources that must agree"),
            ),
            lambda c, a: ta.confluence(c, float(a[0]), _i(a, 1)),
            lambda a: 500,
            (
                "confluence_support",
                "confluence_resistance",
                "confluence_support_score",
                "confluence_resistance_score",
                "confluence_support_sources",
                "confluence_resistance_sources",
                "confluence_score",
            ),
        ),
    ]
    return {item.name: item for item in items}


INDICATORS: dict[str, RuleIndicator] = _indicators()


def rule_indicators() -> list[dict[str, Any]]:
    """What the rule editor offers: every indicator with its label, help, arguments (name, kind,
    default, low, high, help) and outputs (the first is the default)."""
    return [item.as_dict() for item in INDICATORS.values()]
