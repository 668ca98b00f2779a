"""Moving-average crossovers: sma_cross and ema_cross."""

from dataclasses import dataclass

import pandas as pd

from apps.marketdata import indicators as ta
from apps.strategies.base import Strategy
from apps.strategies.errors import InvalidParamsError
from apps.strategies.library._signals import crossover, crossunder, ema_settle, no_signals
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register

SHORT_HELP = "Also trade the mirror image: sell short on the opposite signal (off = long only)"


@dataclass(frozen=True)
class SmaCrossParams(StrategyParams):
    fast: int = param(10, low=2, high=200, help="Fast simple moving average period, in bars")
    slow: int = param(30, low=3, high=500, help="Slow simple moving average period, in bars")
    short: bool = param(False, help=SHORT_HELP, optimise=False)

    def check(self) -> None:
        if self.fast >= self.slow:
            raise InvalidParamsError(
                f"The fast period ({self.fast}) must be shorter than the slow period ({self.slow}).",
                field="params.fast",
            )


def _cross_frame(candles: pd.DataFrame, fast: pd.Series, slow: pd.Series, short: bool) -> pd.DataFrame:
    size = len(candles)
    up = crossover(fast, slow, size)
    down = crossunder(fast, slow, size)
    none = no_signals(size)
    return candles.assign(
        enter_long=up,
        exit_long=down,
        enter_short=down if short else none,
        exit_short=up if short else none,
    )


@register
class SmaCross(Strategy):
    """Trend following with two simple moving averages of the close.

    **Entry:** buy on the bar where the fast SMA crosses above the slow SMA (fast above slow now,
    at or below it on the bar before). **Exit:** sell on the bar where the fast SMA crosses back
    below the slow one. With *short* on, the same crosses open and close short positions.

    **Parameters:** *fast* and *slow* are the two periods in bars (fast must be shorter).

    **When it works:** long, persistent trends (crypto bull runs, trending indices on daily bars):
    it stays in for the whole move. **When it does not:** sideways, choppy markets, where the
    averages cross back and forth and every whipsaw pays fees; it always enters late and gives
    back part of the move before exiting. Add a stop loss or the higher-timeframe filter to cut
    the chop.
    """

    key = "sma_cross"
    name = "SMA cross"
    Params = SmaCrossParams
    params: SmaCrossParams

    def warmup(self) -> int:
        return self.params.slow

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        close = candles["close"]
        p = self.params
        return _cross_frame(candles, ta.sma(close, p.fast), ta.sma(close, p.slow), p.short)


@dataclass(frozen=True)
class EmaCrossParams(StrategyParams):
    fast: int = param(12, low=2, high=200, help="Fast exponential moving average period, in bars")
    slow: int = param(26, low=3, high=500, help="Slow exponential moving average period, in bars")
    short: bool = param(False, help=SHORT_HELP, optimise=False)

    def check(self) -> None:
        if self.fast >= self.slow:
            raise InvalidParamsError(
                f"The fast period ({self.fast}) must be shorter than the slow period ({self.slow}).",
                field="params.fast",
            )


@register
class EmaCross(Strategy):
    """Trend following with two exponential moving averages of the close.

    **Entry:** buy on the bar where the fast EMA crosses above the slow EMA. **Exit:** sell on the
    bar where it crosses back below. With *short* on, the same crosses open and close shorts.

    **Parameters:** *fast* and *slow* are the EMA periods in bars (fast must be shorter).

    **When it works:** trending markets; EMAs weigh recent prices more than SMAs, so it reacts
    faster to a new trend than the SMA cross. **When it does not:** ranges and noisy markets, where
    reacting faster means more whipsaws and more fees. The warm-up is three slow periods, the bars
    an EMA needs to forget where the data started.
    """

    key = "ema_cross"
    name = "EMA cross"
    Params = EmaCrossParams
    params: EmaCrossParams

    def warmup(self) -> int:
        return ema_settle(self.params.slow)

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        close = candles["close"]
        p = self.params
        return _cross_frame(candles, ta.ema(close, p.fast), ta.ema(close, p.slow), p.short)
