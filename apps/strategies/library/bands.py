"""Band and channel strategies: bollinger_bounce, donchian_breakout, vwap_reversion."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.marketdata import indicators as ta
from apps.strategies.base import Strategy
from apps.strategies.library._signals import crossover, crossunder, ema_settle, no_signals, rising_edge, values
from apps.strategies.library.moving_average import SHORT_HELP
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register


@dataclass(frozen=True)
class BollingerBounceParams(StrategyParams):
    period: int = param(20, low=5, high=200, help="Bollinger band period (the middle band is its SMA)")
    width: float = param(2.0, low=0.5, high=4.0, step=0.1, help="Band width in standard deviations")
    exit_at: str = param(
        "middle", choices=("middle", "opposite"), help="Take profit at the middle band or at the opposite band"
    )
    short: bool = param(False, help=SHORT_HELP, optimise=False)


@register
class BollingerBounce(Strategy):
    """Mean reversion off the Bollinger bands.

    **Entry:** buy on the bar where the close comes back above the lower band after closing at
    or below it (the stretch is over and price turns back toward its average). **Exit:** sell
    when the close reaches the middle band (*exit_at* = middle) or the upper band (*exit_at* =
    opposite). With *short* on: sell short when the close comes back below the upper band, cover
    at the middle (or lower) band.

    **Parameters:** *period* of the bands' SMA and standard deviation, *width* in standard
    deviations (2 is Bollinger's default), *exit_at*.

    **When it works:** ranges and oscillating markets with stable volatility. **When it does
    not:** breakouts and trends, where price "walks the band" and a re-entry inside the band is
    only a pause before the next leg; volatility expansions widen the bands after the entry.
    """

    key = "bollinger_bounce"
    name = "Bollinger band bounce"
    Params = BollingerBounceParams
    params: BollingerBounceParams

    def warmup(self) -> int:
        return self.params.period

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        close = values(candles["close"], size)
        bands = ta.bbands(candles["close"], p.period, p.width)
        lower, middle, upper = (values(bands[name], size) for name in ("lower", "middle", "upper"))
        long_target = middle if p.exit_at == "middle" else upper
        short_target = middle if p.exit_at == "middle" else lower
        with np.errstate(invalid="ignore"):
            exit_long = close >= long_target
            exit_short = close <= short_target
        enter_long = crossover(close, lower, size) & ~exit_long
        enter_short = crossunder(close, upper, size) & ~exit_short
        none = no_signals(size)
        return candles.assign(
            enter_long=enter_long,
            exit_long=exit_long,
            enter_short=enter_short if p.short else none,
            exit_short=exit_short if p.short else none,
        )


@dataclass(frozen=True)
class DonchianBreakoutParams(StrategyParams):
    entry_period: int = param(20, low=5, high=400, help="Buy above the highest high of this many previous bars")
    exit_period: int = param(10, low=2, high=400, help="Sell below the lowest low of this many previous bars")
    source: str = param(
        "donchian",
        choices=("donchian", "levels"),
        help="Breakout of the Donchian channel, or of a support/resistance level found from swing points",
    )
    short: bool = param(False, help=SHORT_HELP, optimise=False)


@register
class DonchianBreakout(Strategy):
    """Breakout trading, the Turtle way (Donchian channel) or off support/resistance levels.

    **Entry (source = donchian):** buy on the bar whose close first rises above the highest high
    of the previous *entry_period* bars. **Entry (source = levels):** buy on the bar whose close
    breaks up through an active resistance level (clustered swing highs / lows, see the
    indicator library's support_resistance). **Exit (both):** sell on the bar whose close first
    falls below the lowest low of the previous *exit_period* bars. With *short* on, downside
    breakouts open shorts, covered above the *exit_period* high.

    **Parameters:** *entry_period*, *exit_period* (shorter than the entry period lets winners
    go sooner), *source*.

    **When it works:** markets that trend after breaking out of a range (commodities, crypto,
    currencies in the classic Turtle rules). **When it does not:** ranges with false breakouts,
    where it buys the top of the range again and again; many small losses are normal and the few
    large trends pay for them.
    """

    key = "donchian_breakout"
    name = "Donchian / support-resistance breakout"
    Params = DonchianBreakoutParams
    params: DonchianBreakoutParams

    def warmup(self) -> int:
        p = self.params
        channel = max(p.entry_period, p.exit_period) + 1
        return max(channel, 200) if p.source == "levels" else channel

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        close = values(candles["close"], size)
        entry = ta.donchian(candles["high"], candles["low"], p.entry_period)
        exit_ = ta.donchian(candles["high"], candles["low"], p.exit_period)
        # The channel at t includes bar t: compare with the channel of the bars before it.
        prior_high = values(entry["upper"].shift(1), size)
        prior_low = values(entry["lower"].shift(1), size)
        exit_low = values(exit_["lower"].shift(1), size)
        exit_high = values(exit_["upper"].shift(1), size)
        with np.errstate(invalid="ignore"):
            if p.source == "levels":
                levels = ta.support_resistance(candles)
                up = levels["break_up"].to_numpy(dtype=bool)
                down = levels["break_down"].to_numpy(dtype=bool)
            else:
                up = rising_edge(close > prior_high)
                down = rising_edge(close < prior_low)
            exit_long = rising_edge(close < exit_low)
            exit_short = rising_edge(close > exit_high)
        none = no_signals(size)
        return candles.assign(
            enter_long=up & ~exit_long,
            exit_long=exit_long,
            enter_short=(down & ~exit_short) if p.short else none,
            exit_short=exit_short if p.short else none,
        )


@dataclass(frozen=True)
class VwapReversionParams(StrategyParams):
    anchor: str = param("D", choices=("D", "W"), help="VWAP session: D = each UTC day, W = each week (Monday)")
    distance: float = param(
        1.5, low=0.25, high=5.0, step=0.25, help="Buy this many ATRs below the VWAP (sell short as far above)"
    )
    atr_period: int = param(14, low=2, high=100, help="ATR period used to measure the distance")
    short: bool = param(False, help=SHORT_HELP, optimise=False)


@register
class VwapReversion(Strategy):
    """Reversion to the session's volume-weighted average price (VWAP).

    **Entry:** buy on the bar whose close first falls more than *distance* ATRs below the
    session VWAP (the typical price averaged by volume since the session began). **Exit:** sell
    when the close gets back to the VWAP. With *short* on: sell short *distance* ATRs above the
    VWAP, cover at the VWAP.

    **Parameters:** *anchor* (the VWAP restarts every UTC day or every week), *distance* in ATRs,
    *atr_period*.

    **When it works:** liquid intraday markets where institutions benchmark against the VWAP and
    price is pulled back to it. **When it does not:** trend days, where price leaves the VWAP and
    never returns (the session end is then the only exit, so use a stop loss or a time exit), and
    on daily or longer bars, where a daily VWAP is just the bar's own typical price. Needs volume:
    on data without volume (forex quotes) the VWAP is undefined and it never trades.
    """

    key = "vwap_reversion"
    name = "VWAP reversion"
    Params = VwapReversionParams
    params: VwapReversionParams

    def warmup(self) -> int:
        return ema_settle(self.params.atr_period)

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        close = values(candles["close"], size)
        vwap = values(ta.vwap(candles["high"], candles["low"], candles["close"], candles["volume"], p.anchor), size)
        atr = values(ta.atr(candles["high"], candles["low"], candles["close"], p.atr_period), size)
        with np.errstate(invalid="ignore"):
            stretched_down = close < vwap - p.distance * atr
            stretched_up = close > vwap + p.distance * atr
            exit_long = close >= vwap
            exit_short = close <= vwap
        none = no_signals(size)
        return candles.assign(
            enter_long=rising_edge(stretched_down),
            exit_long=exit_long,
            enter_short=rising_edge(stretched_up) if p.short else none,
            exit_short=exit_short if p.short else none,
        )
