"""Oscillator strategies: rsi_mean_reversion, macd_momentum and dual_momentum (EMA + RSI + MACD)."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.marketdata import indicators as ta
from apps.strategies.base import Strategy
from apps.strategies.errors import InvalidParamsError
from apps.strategies.library._signals import crossover, crossunder, ema_settle, no_signals, rising_edge, values
from apps.strategies.library.moving_average import SHORT_HELP
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register


def _check_macd(fast: int, slow: int, field: str) -> None:
    if fast >= slow:
        raise InvalidParamsError(
            f"The MACD fast period ({fast}) must be shorter than its slow period ({slow}).", field=field
        )


@dataclass(frozen=True)
class RsiMeanReversionParams(StrategyParams):
    period: int = param(14, low=2, high=100, help="RSI period, in bars")
    oversold: float = param(30.0, low=5.0, high=50.0, step=1.0, help="Buy when the RSI falls below this level")
    overbought: float = param(70.0, low=50.0, high=95.0, step=1.0, help="Sell when the RSI rises above this level")
    short: bool = param(False, help=SHORT_HELP, optimise=False)

    def check(self) -> None:
        if self.oversold >= self.overbought:
            raise InvalidParamsError(
                f"The oversold level ({self.oversold:g}) must be below the overbought level ({self.overbought:g}).",
                field="params.oversold",
            )


@register
class RsiMeanReversion(Strategy):
    """Mean reversion on the relative strength index (Wilder's RSI of the close).

    **Entry:** buy on the bar where the RSI falls below *oversold* (the market has sold off hard
    and tends to bounce). **Exit:** sell on the bar where the RSI rises above *overbought*. With
    *short* on, it also sells short when the RSI rises above *overbought* and covers when it
    falls below *oversold*.

    **Parameters:** *period* of the RSI; *oversold* and *overbought* levels (30 / 70 classic,
    20 / 80 stricter).

    **When it works:** range-bound markets and liquid instruments that overshoot and come back
    (indices, major currency pairs, crypto in quiet phases). **When it does not:** strong trends,
    where the RSI stays oversold while the price keeps falling: buying every dip of a crash is how
    this strategy loses. Use a stop loss, or wrap it in the higher-timeframe trend filter so it
    only buys dips in an uptrend.
    """

    key = "rsi_mean_reversion"
    name = "RSI mean reversion"
    Params = RsiMeanReversionParams
    params: RsiMeanReversionParams

    def warmup(self) -> int:
        return ema_settle(self.params.period)

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        rsi = ta.rsi(candles["close"], p.period)
        down = crossunder(rsi, p.oversold, size)
        up = crossover(rsi, p.overbought, size)
        none = no_signals(size)
        return candles.assign(
            enter_long=down,
            exit_long=up,
            enter_short=up if p.short else none,
            exit_short=down if p.short else none,
        )


@dataclass(frozen=True)
class MacdMomentumParams(StrategyParams):
    fast: int = param(12, low=2, high=100, help="MACD fast EMA period, in bars")
    slow: int = param(26, low=3, high=200, help="MACD slow EMA period, in bars")
    signal: int = param(9, low=2, high=100, help="Signal line EMA period, in bars")
    short: bool = param(False, help=SHORT_HELP, optimise=False)

    def check(self) -> None:
        _check_macd(self.fast, self.slow, "params.fast")


@register
class MacdMomentum(Strategy):
    """Momentum with the MACD line and its signal line.

    **Entry:** buy on the bar where the MACD line (fast EMA minus slow EMA) crosses above its
    signal line: momentum has turned up. **Exit:** sell on the bar where it crosses back below.
    With *short* on, the downward cross also opens a short, covered on the next upward cross.

    **Parameters:** *fast*, *slow* (the two EMAs of the close, fast shorter) and *signal* (the EMA
    of the MACD line): 12 / 26 / 9 are Appel's originals.

    **When it works:** markets that swing in clear waves of a few dozen bars; it catches the turn
    earlier than a moving-average cross. **When it does not:** flat, low-volatility stretches where
    the MACD hugs its signal line and crosses it every few bars.
    """

    key = "macd_momentum"
    name = "MACD momentum"
    Params = MacdMomentumParams
    params: MacdMomentumParams

    def warmup(self) -> int:
        return ema_settle(self.params.slow) + self.params.signal

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        macd = ta.macd(candles["close"], p.fast, p.slow, p.signal)
        up = crossover(macd["macd"], macd["signal"], size)
        down = crossunder(macd["macd"], macd["signal"], size)
        none = no_signals(size)
        return candles.assign(
            enter_long=up,
            exit_long=down,
            enter_short=down if p.short else none,
            exit_short=up if p.short else none,
        )


@dataclass(frozen=True)
class DualMomentumParams(StrategyParams):
    ema_period: int = param(50, low=5, high=400, help="Trend EMA period: trade only on its side of the price")
    rsi_period: int = param(14, low=2, high=100, help="RSI period, in bars")
    rsi_level: float = param(
        55.0, low=50.0, high=80.0, step=1.0, help="RSI must be above this level to buy (below 100 minus it to short)"
    )
    macd_fast: int = param(12, low=2, high=100, help="MACD fast EMA period")
    macd_slow: int = param(26, low=3, high=200, help="MACD slow EMA period")
    macd_signal: int = param(9, low=2, high=100, help="MACD signal line period")
    short: bool = param(False, help=SHORT_HELP, optimise=False)

    def check(self) -> None:
        _check_macd(self.macd_fast, self.macd_slow, "params.macd_fast")


@register
class DualMomentum(Strategy):
    """Three confirmations before a trade: trend (EMA), momentum (RSI) and acceleration (MACD).

    **Entry:** buy on the bar where all three agree for the first time: the close is above the
    trend EMA, the RSI is above *rsi_level*, and the MACD histogram is positive. **Exit:** sell on
    the bar where the close falls below the EMA or the histogram turns negative, whichever comes
    first. With *short* on, the mirror image (close below the EMA, RSI below 100 - *rsi_level*,
    histogram negative) opens shorts.

    **Parameters:** *ema_period* (trend), *rsi_period* and *rsi_level* (momentum), *macd_fast*,
    *macd_slow*, *macd_signal* (acceleration).

    **When it works:** established trends that pause and resume: the three filters keep it out of
    most false starts. **When it does not:** markets that reverse sharply, because the exit waits
    for the trend or the histogram to break; and quiet ranges, where it rarely trades at all.
    """

    key = "dual_momentum"
    name = "Dual momentum (EMA + RSI + MACD)"
    Params = DualMomentumParams
    params: DualMomentumParams

    def warmup(self) -> int:
        p = self.params
        return max(ema_settle(p.ema_period), ema_settle(p.rsi_period), ema_settle(p.macd_slow) + p.macd_signal)

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        close = values(candles["close"], size)
        ema = values(ta.ema(candles["close"], p.ema_period), size)
        rsi = values(ta.rsi(candles["close"], p.rsi_period), size)
        hist = values(ta.macd(candles["close"], p.macd_fast, p.macd_slow, p.macd_signal)["hist"], size)
        with np.errstate(invalid="ignore"):
            bull = (close > ema) & (rsi > p.rsi_level) & (hist > 0)
            bear = (close < ema) & (rsi < 100.0 - p.rsi_level) & (hist < 0)
            long_broken = (close < ema) | (hist < 0)
            short_broken = (close > ema) | (hist > 0)
        none = no_signals(size)
        return candles.assign(
            enter_long=rising_edge(bull),
            exit_long=rising_edge(long_broken),
            enter_short=rising_edge(bear) if p.short else none,
            exit_short=rising_edge(short_broken) if p.short else none,
        )
