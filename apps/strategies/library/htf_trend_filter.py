"""htf_trend_filter: any strategy, entering only with the higher-timeframe trend."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.marketdata import indicators as ta
from apps.strategies.base import Strategy, signals
from apps.strategies.errors import StrategyComputeError
from apps.strategies.library._signals import ema_settle, falling_edge, no_signals, values
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register, strategy_class
from apps.strategies.timeframes import (
    TimeframeMismatch,
    align_closed,
    check_higher,
    higher_candles,
    infer_base_seconds,
    seconds,
)

# Strategies it can wrap: the pre-built ones, itself excepted. A fixed list (rather than whatever
# is registered when this module is imported) keeps the parameter's choices stable for forms, the
# API schema and the optimiser; tests check it names every other public library strategy.
MEMBER_KEYS: tuple[str, ...] = (
    "sma_cross",
    "ema_cross",
    "rsi_mean_reversion",
    "macd_momentum",
    "bollinger_bounce",
    "donchian_breakout",
    "vwap_reversion",
    "opening_range_breakout",
    "trendline_bounce",
    "supply_demand_zone",
    "fibonacci_retracement",
    "dual_momentum",
    "multi_confluence",
    "composite",
)
HIGHER_TIMEFRAMES: tuple[str, ...] = ("15m", "30m", "1h", "4h", "1d", "1w")
# When the strategy is not told its candles' timeframe, warmup() assumes 1-minute candles: the
# most base bars one higher-timeframe bar can hold.
_WORST_BASE = 60


@dataclass(frozen=True)
class HtfTrendFilterParams(StrategyParams):
    member: str = param("sma_cross", choices=MEMBER_KEYS, help="The strategy to filter (with its defaults)")
    higher_timeframe: str = param("1d", choices=HIGHER_TIMEFRAMES, help="The higher timeframe that sets the trend")
    ma_kind: str = param("ema", choices=("sma", "ema"), help="Moving average of the higher-timeframe closes")
    ma_period: int = param(50, low=5, high=400, help="Period of that moving average, in higher-timeframe bars")
    exit_on_flip: bool = param(False, help="Also close a position when the higher-timeframe trend turns against it")


@register
class HtfTrendFilter(Strategy):
    """Let another strategy trade only in the direction of the higher-timeframe trend.

    The candles are resampled to *higher_timeframe* (say, daily bars out of hourly ones). The
    trend is up while the higher-timeframe close is above its *ma_kind* moving average of
    *ma_period* bars, down while it is below. With the same timeframe as the candles, the trend
    is simply the close against its average on the same bar. Only **closed** higher-timeframe
    bars count: during a day, the hourly bars see yesterday's daily close and average, never
    today's unfinished bar (a day's values are used from the first bar at or after its end).

    **Entry:** the *member* strategy's long entries while the trend is up, and its short entries
    while it is down; the others are dropped. **Exit:** the member's own exits, plus (with
    *exit_on_flip*) an exit on the bar where the trend stops agreeing with the position. Stops
    and targets are the member's.

    **Parameters:** *member* (run with its default parameters), *higher_timeframe*, *ma_kind*,
    *ma_period*, *exit_on_flip*.

    **When it works:** it removes the trades that fight the larger trend, the classic cure for a
    mean-reversion strategy buying dips in a bear market. **When it does not:** at trend turns the
    filter lags by a whole higher-timeframe average, and in sideways markets it flips often and
    filters at random. The higher timeframe must be at least the candles' own and a whole number
    of them (4h on 1h candles, not 4h on 6h); the member runs with its default parameters.
    """

    key = "htf_trend_filter"
    name = "Higher-timeframe trend filter"
    Params = HtfTrendFilterParams
    params: HtfTrendFilterParams

    def member(self) -> Strategy:
        inner = strategy_class(self.params.member)()
        inner.timeframe = self.timeframe
        return inner

    def warmup(self) -> int:
        p = self.params
        base = seconds(self.timeframe) if self.timeframe else _WORST_BASE
        ratio = max(seconds(p.higher_timeframe) // base, 1)
        period = ema_settle(p.ma_period) if p.ma_kind == "ema" else p.ma_period
        return max(self.member().warmup(), (period + 1) * ratio)

    def trend(self, candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(up, down) booleans on the candles' bars, from closed higher-timeframe bars only."""
        p = self.params
        size = len(candles)
        base = infer_base_seconds(candles.index, self.timeframe)
        try:
            resample = check_higher(p.higher_timeframe, base)
        except TimeframeMismatch as exc:
            raise StrategyComputeError(str(exc)) from exc
        frame = higher_candles(candles, p.higher_timeframe) if resample else candles
        average = ta.sma if p.ma_kind == "sma" else ta.ema
        htf = pd.DataFrame({"close": frame["close"], "ma": average(frame["close"], p.ma_period)}, index=frame.index)
        if resample:
            htf = align_closed(htf, p.higher_timeframe, candles.index)
        close, ma = values(htf["close"], size), values(htf["ma"], size)
        with np.errstate(invalid="ignore"):
            return close > ma, close < ma

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        inner = signals(self.member(), candles)
        up, down = self.trend(candles)
        flip = self.params.exit_on_flip
        none = no_signals(len(candles))
        return candles.assign(
            enter_long=inner["enter_long"].to_numpy() & up,
            exit_long=inner["exit_long"].to_numpy() | (falling_edge(up) if flip else none),
            enter_short=inner["enter_short"].to_numpy() & down,
            exit_short=inner["exit_short"].to_numpy() | (falling_edge(down) if flip else none),
            stop_price=inner["stop_price"].to_numpy(),
            target_price=inner["target_price"].to_numpy(),
        )
