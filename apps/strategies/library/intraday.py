"""Intraday strategies: opening_range_breakout."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.strategies.base import Strategy
from apps.strategies.errors import InvalidParamsError, StrategyComputeError
from apps.strategies.library._signals import no_signals, values
from apps.strategies.library.moving_average import SHORT_HELP
from apps.strategies.params import StrategyParams, param
from apps.strategies.registry import register
from apps.strategies.timeframes import infer_base_seconds

_NS = 1_000_000_000
_DAY = 86_400


@dataclass(frozen=True)
class OpeningRangeBreakoutParams(StrategyParams):
    range_minutes: int = param(30, low=5, high=720, step=5, help="Length of the opening range, in minutes")
    session_start: int = param(
        0,
        low=0,
        high=1439,
        step=15,
        help="When a new session begins, in minutes after 00:00 UTC (0 = the UTC day)",
        optimise=False,
    )
    session_minutes: int = param(
        1440, low=30, high=1440, step=15, help="Close any position this many minutes after the session's first bar"
    )
    reward: float = param(
        2.0, low=0.5, high=10.0, step=0.5, help="Profit target, in opening-range widths beyond the breakout level"
    )
    short: bool = param(False, help=SHORT_HELP, optimise=False)

    def check(self) -> None:
        if self.range_minutes >= self.session_minutes:
            raise InvalidParamsError(
                f"The opening range ({self.range_minutes} min) must be shorter than the session "
                f"({self.session_minutes} min).",
                field="params.range_minutes",
            )


@register
class OpeningRangeBreakout(Strategy):
    """Trade the break of the session's opening range, once per session, on intraday bars.

    **Sessions:** by default each UTC day is a session (*session_start* = 0); set *session_start*
    to start them at another time of day (e.g. 810 = 13:30 UTC). The opening range is the high and
    the low of the bars that open in the first *range_minutes* after the session's first bar (at
    least that one bar), so markets that open at 9:30 New York time work without a setting, in
    summer and winter.

    **Entry:** after the range is complete, buy on the first bar of the session that closes above
    the range high (with *short* on, sell short on the first close below the range low instead,
    whichever comes first). One trade per session. The stop is the other side of the range and
    the target is *reward* range widths beyond the broken edge (both reported with the entry).
    **Exit:** on the bar that ends *session_minutes* after the session's first bar, or on the
    first bar of the next session at the latest: no position is carried overnight.

    **Parameters:** *range_minutes* (15 to 60 are usual), *session_start*, *session_minutes* (390
    for a US equity day; 1440 holds until the UTC day ends), *reward* (the target, in range
    widths).

    **When it works:** instruments with a real session open (equities, index futures) and crypto
    around the daily open when news or volume arrives; breakouts on volume tend to run. **When it
    does not:** quiet days that fake a break and fall back into the range (the stop then costs a
    full range width). Needs intraday bars: on daily or longer bars there is no opening range and
    the strategy refuses to run.
    """

    key = "opening_range_breakout"
    name = "Opening-range breakout"
    Params = OpeningRangeBreakoutParams
    params: OpeningRangeBreakoutParams

    def warmup(self) -> int:
        # One session is enough; the session's own bars are the only history it reads.
        return 0

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        p = self.params
        size = len(candles)
        base = infer_base_seconds(candles.index, self.timeframe)
        if base is not None and base >= _DAY:
            raise StrategyComputeError(
                "Opening-range breakout needs intraday candles (shorter than a day); these are daily or longer."
            )
        if base is None:
            empty = no_signals(size)
            return candles.assign(enter_long=empty, exit_long=empty, enter_short=empty, exit_short=empty)
        times = pd.DatetimeIndex(candles.index).as_unit("ns").asi8
        session = (times - p.session_start * 60 * _NS) // (_DAY * _NS)
        first = np.ones(size, dtype=bool)
        first[1:] = session[1:] != session[:-1]
        start_pos = np.maximum.accumulate(np.where(first, np.arange(size), 0))
        session_open = times[start_pos]
        in_range = times < session_open + p.range_minutes * 60 * _NS
        groups = pd.Series(session, index=candles.index)
        range_high = _session_running(np.where(in_range, values(candles["high"], size), -np.inf), groups, "cummax")
        range_low = _session_running(np.where(in_range, values(candles["low"], size), np.inf), groups, "cummin")
        close = values(candles["close"], size)
        after = ~in_range
        up = after & (close > range_high)
        down = after & (close < range_low) if p.short else no_signals(size)
        breaks = up | down
        first_break = breaks & (_session_running(breaks.astype(np.float64), groups, "cumsum") == 1.0)
        session_over = times + base * _NS >= session_open + p.session_minutes * 60 * _NS
        enter_long = first_break & up & ~session_over
        enter_short = first_break & down & ~session_over
        width = range_high - range_low
        stop = np.where(enter_long, range_low, np.where(enter_short, range_high, np.nan))
        target = np.where(
            enter_long, range_high + p.reward * width, np.where(enter_short, range_low - p.reward * width, np.nan)
        )
        flat_now = session_over | first
        return candles.assign(
            enter_long=enter_long,
            exit_long=flat_now,
            enter_short=enter_short,
            exit_short=flat_now if p.short else no_signals(size),
            stop_price=stop,
            target_price=target,
        )


def _session_running(data: np.ndarray, groups: pd.Series, how: str) -> np.ndarray:
    frame = pd.Series(data, index=groups.index)
    result = getattr(frame.groupby(groups.to_numpy(), sort=False), how)()
    return np.asarray(result.to_numpy(dtype=np.float64))
