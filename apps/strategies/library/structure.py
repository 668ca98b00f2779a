"""Price-structure strategies: trendline_bounce, supply_demand_zone, fibonacci_retracement,
multi_confluence.

They read the structure functions of the indicator library (trendlines, supply_demand_zones,
fibonacci, confluence), which report on row t only what was known once bar t had closed (a swing
point appears on the bar that confirms it, ``right`` bars later), so these strategies do not peek
either. They are heavier than the indicator strategies: the structure engines walk the bars one by
one (tens of milliseconds per 10,000 bars; confluence runs all four).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.marketdata import indicators as ta
from apps.strategies.base import Strategy
from apps.strategies.library._signals import crossover, crossunder, no_signals, rising_edge, values
from apps.strategies.library.moving_average import SHORT_HELP
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register

ATR_PERIOD = 14


def _atr(candles: pd.DataFrame) -> np.ndarray:
    return values(ta.atr(candles["high"], candles["low"], candles["close"], ATR_PERIOD), len(candles))


def _assemble(
    candles: pd.DataFrame,
    *,
    enter_long: np.ndarray,
    exit_long: np.ndarray,
    enter_short: np.ndarray,
    exit_short: np.ndarray,
    short: bool,
    stops: tuple[np.ndarray, np.ndarray],
    targets: tuple[np.ndarray, np.ndarray],
) -> pd.DataFrame:
    """The output frame: entries that coincide with their own exit are dropped, shorts only when
    enabled, stop and target prices on the entry bars only."""
    size = len(candles)
    enter_long = enter_long & ~exit_long
    enter_short = enter_short & ~exit_short if short else no_signals(size)
    stop = np.where(enter_long, stops[0], np.where(enter_short, stops[1], np.nan))
    target = np.where(enter_long, targets[0], np.where(enter_short, targets[1], np.nan))
    return candles.assign(
        enter_long=enter_long,
        exit_long=exit_long,
        enter_short=enter_short,
        exit_short=exit_short if short else no_signals(size),
        stop_price=stop,
        target_price=target,
    )


@dataclass(frozen=True)
class TrendlineBounceParams(StrategyParams):
    left: int = param(5, low=2, high=20, help="Bars on the left of a swing point")
    right: int = param(3, low=1, high=20, help="Bars on the right that confirm a swing point (its delay)")
    tolerance_atr: float = param(
        0.25, low=0.05, high=2.0, step=0.05, help="How close to the line counts as a touch, in ATRs"
    )
    lookback: int = param(300, low=50, high=2000, step=10, help="Forget lines not touched for this many bars")
    min_strength: float = param(
        2.0, low=0.0, high=10.0, step=0.5, help="Trade only lines at least this strong (touches + volume bonus)"
    )
    short: bool = param(False, help=SHORT_HELP, optimise=False)


@register
class TrendlineBounce(Strategy):
    """Buy the bounce off a rising support trendline; sell at resistance or when the line breaks.

    Support lines are drawn through confirmed swing lows, resistance lines through swing highs
    (the indicator library's trendlines: a line must not be cut by the bars between its anchors,
    and it breaks when a close lands beyond it).

    **Entry:** buy on a bar that touches the nearest support line (within *tolerance_atr* ATRs)
    and closes above it, when the line's strength is at least *min_strength*. The stop is placed
    *tolerance_atr* ATRs below the line. **Exit:** sell when the support line breaks or price
    bounces down from a resistance line. With *short* on, the mirror image off resistance lines.

    **Parameters:** *left*/*right* (swing point size; *right* is also the confirmation delay),
    *tolerance_atr*, *lookback*, *min_strength*.

    **When it works:** orderly trends with regular pullbacks, where many traders watch the same
    line. **When it does not:** violent markets that slice through lines, and the first bars after
    a swing (a line needs two confirmed swing points, so it is drawn late).
    """

    key = "trendline_bounce"
    name = "Trendline bounce"
    Params = TrendlineBounceParams
    params: TrendlineBounceParams

    def warmup(self) -> int:
        return self.params.lookback

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        lines = ta.trendlines(
            candles, p.left, p.right, tolerance_atr=p.tolerance_atr, lookback=p.lookback, atr_period=ATR_PERIOD
        )
        atr = _atr(candles)
        support = values(lines["support_line"], size)
        resistance = values(lines["resistance_line"], size)
        with np.errstate(invalid="ignore"):
            strong_support = values(lines["support_line_strength"], size) >= p.min_strength
            strong_resistance = values(lines["resistance_line_strength"], size) >= p.min_strength
        bounce_up = lines["bounce_support"].to_numpy(dtype=bool)
        bounce_down = lines["bounce_resistance"].to_numpy(dtype=bool)
        break_down = lines["breakout_down"].to_numpy(dtype=bool)
        break_up = lines["breakout_up"].to_numpy(dtype=bool)
        return _assemble(
            candles,
            enter_long=bounce_up & strong_support,
            exit_long=break_down | bounce_down,
            enter_short=bounce_down & strong_resistance,
            exit_short=break_up | bounce_up,
            short=p.short,
            stops=(support - p.tolerance_atr * atr, resistance + p.tolerance_atr * atr),
            targets=(np.full(size, np.nan), np.full(size, np.nan)),
        )


@dataclass(frozen=True)
class SupplyDemandZoneParams(StrategyParams):
    base_max_bars: int = param(3, low=1, high=6, help="Most base candles a zone is drawn from")
    impulse_atr: float = param(
        1.5, low=0.5, high=5.0, step=0.1, help="Body size, in ATRs, of the candle that leaves the base"
    )
    base_range_atr: float = param(0.8, low=0.2, high=2.0, step=0.1, help="Largest range, in ATRs, of a base candle")
    min_strength: float = param(
        1.0, low=0.0, high=10.0, step=0.5, help="Trade only zones at least this strong (impulse + volume, per test)"
    )
    short: bool = param(False, help=SHORT_HELP, optimise=False)


@register
class SupplyDemandZone(Strategy):
    """Buy when price returns to a demand zone, sell at the next supply zone.

    A demand zone is the range of a few quiet "base" candles that price left with a strong up
    candle (an impulse of at least *impulse_atr* ATRs): buyers overwhelmed sellers there, and
    unfilled orders may still rest in it. Supply zones mirror this. (Indicator library:
    supply_demand_zones; a zone exists only from the impulse bar on, and is void once a close
    lands beyond it.)

    **Entry:** buy on the bar where price comes back into an active demand zone (a test) and
    still closes at or above its low, if the zone's strength is at least *min_strength* (fresh
    zones are stronger; each test halves the score or more). Stop: the zone's low. Target: the
    low of the nearest supply zone above, when there is one. **Exit:** sell when price tests a
    supply zone. With *short* on, the mirror image from supply zones.

    **Parameters:** *base_max_bars*, *impulse_atr*, *base_range_atr* (how zones are found),
    *min_strength*.

    **When it works:** markets that respect prior imbalances, on a timeframe where impulses are
    clear (1h and above). **When it does not:** strong trends that run through zones, and very
    noisy low timeframes that produce a zone every few bars.
    """

    key = "supply_demand_zone"
    name = "Supply/demand zone"
    Params = SupplyDemandZoneParams
    params: SupplyDemandZoneParams

    def warmup(self) -> int:
        return 200

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        zones = ta.supply_demand_zones(candles, p.base_max_bars, p.impulse_atr, p.base_range_atr, atr_period=ATR_PERIOD)
        close = values(candles["close"], size)
        demand_low, demand_high = values(zones["demand_low"], size), values(zones["demand_high"], size)
        supply_low, supply_high = values(zones["supply_low"], size), values(zones["supply_high"], size)
        demand_test = zones["demand_tested"].to_numpy(dtype=bool)
        supply_test = zones["supply_tested"].to_numpy(dtype=bool)
        with np.errstate(invalid="ignore"):
            long_ok = demand_test & (close >= demand_low) & (values(zones["demand_strength"], size) >= p.min_strength)
            short_ok = supply_test & (close <= supply_high) & (values(zones["supply_strength"], size) >= p.min_strength)
        return _assemble(
            candles,
            enter_long=long_ok,
            exit_long=supply_test,
            enter_short=short_ok,
            exit_short=demand_test,
            short=p.short,
            stops=(demand_low, supply_high),
            targets=(supply_low, demand_high),
        )


@dataclass(frozen=True)
class FibonacciRetracementParams(StrategyParams):
    left: int = param(5, low=2, high=20, help="Bars on the left of a swing point")
    right: int = param(5, low=1, high=20, help="Bars on the right that confirm a swing point (its delay)")
    level: float = param(0.618, choices=(0.382, 0.5, 0.618), help="Retracement level to buy at")
    short: bool = param(False, help=SHORT_HELP, optimise=False)


@register
class FibonacciRetracement(Strategy):
    """Buy the pullback to a Fibonacci retracement of the last swing up.

    The swing runs between the last confirmed swing low and swing high (indicator library:
    fibonacci). In an up swing (the low came first), the retracement levels lie between them.

    **Entry:** in an up swing, buy on the first bar that trades down to the chosen *level*
    (its low at or below it) and closes back above it: the pullback was rejected. Stop: the swing
    low (where the swing is invalidated). Target: the swing high. **Exit:** sell when the close
    breaks below the swing low or reaches the swing high, or when the swing turns down. With
    *short* on, the mirror image in a down swing (sell the rally to the level, stop at the swing
    high, target the swing low).

    **Parameters:** *left*/*right* (swing point size; *right* is also the confirmation delay),
    *level* (0.382 shallow, 0.5, 0.618 the "golden" one).

    **When it works:** trending markets with measured pullbacks. **When it does not:** deep
    corrections that run through every level, and ranges without clear swings; the swing points
    are confirmed *right* bars late, so a level can be reached before it is known.
    """

    key = "fibonacci_retracement"
    name = "Fibonacci retracement"
    Params = FibonacciRetracementParams
    params: FibonacciRetracementParams

    def warmup(self) -> int:
        return 10 * (self.params.left + self.params.right) + ATR_PERIOD

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        fib = ta.fibonacci(candles, p.left, p.right, levels=(p.level,), extensions=())
        level = values(fib[f"fib_{p.level:g}"], size)
        swing_end = values(fib["fib_0"], size)
        swing_start = values(fib["fib_100"], size)
        direction = values(fib["swing_direction"], size)
        close = values(candles["close"], size)
        low = values(candles["low"], size)
        high = values(candles["high"], size)
        with np.errstate(invalid="ignore"):
            rejected_down = (direction == 1) & (low <= level) & (close > level) & (close < swing_end)
            rejected_up = (direction == -1) & (high >= level) & (close < level) & (close > swing_end)
        # In an up swing the start is the low (stop) and the end the high (target); mirrored down.
        # A long also ends when the swing turns down (and a short when it turns up).
        up_swing, down_swing = direction == 1, direction == -1
        exit_long = up_swing & (crossunder(close, swing_start, size) | crossover(close, swing_end, size))
        exit_short = down_swing & (crossover(close, swing_start, size) | crossunder(close, swing_end, size))
        return _assemble(
            candles,
            enter_long=rising_edge(rejected_down),
            exit_long=exit_long | rising_edge(down_swing),
            enter_short=rising_edge(rejected_up),
            exit_short=exit_short | rising_edge(up_swing),
            short=p.short,
            stops=(swing_start, swing_start),
            targets=(swing_end, swing_end),
        )


@dataclass(frozen=True)
class MultiConfluenceParams(StrategyParams):
    tolerance_atr: float = param(
        0.5, low=0.1, high=2.0, step=0.1, help="How close, in ATRs, levels of different sources must be to agree"
    )
    min_sources: int = param(2, low=2, high=4, help="Sources that must agree (levels, trendlines, zones, Fibonacci)")
    min_score: float = param(2.5, low=1.0, high=8.0, step=0.5, help="Least confluence score to trade")
    proximity_atr: float = param(
        0.5, low=0.1, high=3.0, step=0.1, help="How close, in ATRs, price must come to the zone"
    )
    short: bool = param(False, help=SHORT_HELP, optimise=False)


@register
class MultiConfluence(Strategy):
    """Trade reactions at price zones where several kinds of structure agree.

    A confluence zone is a price where at least *min_sources* of support/resistance levels,
    trendlines, supply/demand zones and Fibonacci levels lie within *tolerance_atr* ATRs of each
    other (indicator library: confluence); its score grows with the number and strength of the
    agreeing sources.

    **Entry:** buy on the first bar whose low comes within *proximity_atr* ATRs of the nearest
    confluence support scoring at least *min_score*, and that closes up (close above open) and
    above the zone. Stop: *proximity_atr* ATRs below the zone. Target: the nearest confluence
    resistance. **Exit:** sell on the first bar whose high comes within *proximity_atr* ATRs of
    a confluence resistance. With *short* on, the mirror image from confluence resistance.

    **Parameters:** *tolerance_atr*, *min_sources* (how zones are found), *min_score*,
    *proximity_atr*.

    **When it works:** mature markets with well-defined structure on 1h and higher timeframes;
    few trades, but at prices many participants watch. **When it does not:** trending breakouts
    (the zone gives way), and young markets without history. The slowest strategy of the library:
    it runs all four structure engines.
    """

    key = "multi_confluence"
    name = "Multi-confluence"
    Params = MultiConfluenceParams
    params: MultiConfluenceParams

    def warmup(self) -> int:
        return 500

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        zones = ta.confluence(candles, p.tolerance_atr, p.min_sources)
        atr = _atr(candles)
        close, open_ = values(candles["close"], size), values(candles["open"], size)
        low, high = values(candles["low"], size), values(candles["high"], size)
        support = values(zones["confluence_support"], size)
        resistance = values(zones["confluence_resistance"], size)
        near = p.proximity_atr * atr
        with np.errstate(invalid="ignore"):
            support_ok = values(zones["confluence_support_score"], size) >= p.min_score
            resistance_ok = values(zones["confluence_resistance_score"], size) >= p.min_score
            at_support = (low - support <= near) & (close > support) & (close > open_)
            at_resistance = (resistance - high <= near) & (close < resistance) & (close < open_)
            reach_resistance = resistance - high <= near
            reach_support = low - support <= near
        return _assemble(
            candles,
            enter_long=rising_edge(at_support & support_ok),
            exit_long=rising_edge(reach_resistance),
            enter_short=rising_edge(at_resistance & resistance_ok),
            exit_short=rising_edge(reach_support),
            short=p.short,
            stops=(support - near, resistance + near),
            targets=(resistance, support),
        )
