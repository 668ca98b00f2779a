"""Higher timeframes inside a strategy, without look-ahead.

A strategy running on 1h bars may want the 4h or daily trend. The trap: resampling the base
candles and forward-filling the higher-timeframe (HTF) values onto the base bars hands bar t the
close of an HTF bar that has not finished yet (the 00:00 daily bar "closes" at 23:00's close, so
every hour of the day would see the day's final close). The rule used everywhere here:

    the value of an HTF bar opening at T (length P) is used from base bars opening at T + P on,

i.e. shift by one HTF bar, then forward-fill (:func:`align_closed`). An HTF bar is only ever used
once every base bar it can contain has closed, so row t reads HTF bars built from rows <= t. This
is by the clock, so it works for markets that close (equity sessions, weekends) as well: the
daily bar of a session that ended at 20:00 UTC is used from the next bar at or after 00:00 UTC.
It is conservative by one base bar (the day's value could be used on the close of its last bar);
the benefit is that it needs no knowledge of the base bar size. Pure pandas/NumPy, no Django.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from apps.marketdata import timeframes as market_timeframes

TIMEFRAMES: tuple[str, ...] = tuple(market_timeframes.TIMEFRAMES)
# How many leading bars infer_base_seconds looks at: fixed, so a history and its truncations
# (which share their first bars) always infer the same bar size.
_INFER_BARS = 1000


class TimeframeMismatch(ValueError):
    """The higher timeframe asked for is not above (or not a multiple of) the candles' own."""


def seconds(timeframe: str) -> int:
    """Length of ``timeframe`` in seconds (``UnknownTimeframe``, a ValueError, if unknown)."""
    return market_timeframes.seconds(timeframe)


def infer_base_seconds(index: pd.Index, declared: str | None = None) -> int | None:
    """The candles' bar size in seconds: ``declared`` when given, else the smallest positive gap
    among the first 1000 bars (None with fewer than two bars).

    Only the leading bars are read so that a history and any truncation of it that keeps its
    start agree (the look-ahead check relies on that).
    """
    if declared:
        return seconds(declared)
    if len(index) < 2:
        return None
    head = pd.DatetimeIndex(index[:_INFER_BARS]).as_unit("ns").asi8
    diffs = np.diff(head)
    positive = diffs[diffs > 0]
    if positive.size == 0:
        return None
    return int(positive.min() // 1_000_000_000)


def check_higher(timeframe: str, base: int | None) -> bool:
    """Whether ``timeframe`` must be resampled from bars of ``base`` seconds.

    False when it equals the base (use the candles as they are). Raises TimeframeMismatch when it
    is below the base or not a whole multiple of it (a 4h view of 6h bars cannot be built).
    """
    target = seconds(timeframe)
    if base is None or target == base:
        return False
    if target < base or target % base:
        raise TimeframeMismatch(
            f"The {timeframe} timeframe cannot be built from {_name(base)} candles: it must be a longer "
            "timeframe that is a whole number of candles."
        )
    return True


def higher_candles(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """``candles`` resampled to ``timeframe`` (open of the first bar, max high, min low, close of
    the last, summed volume), every HTF bar that has any base bar, indexed by its open time.

    The last HTF bar may be incomplete; :func:`align_closed` never uses a bar before it has ended.
    """
    columns = [column for column in ("open", "high", "low", "close", "volume") if column in candles]
    return market_timeframes.resample(candles[columns], timeframe, complete_only=False)


def align_closed[T: (pd.Series, pd.DataFrame)](values: T, timeframe: str, index: pd.Index) -> T:
    """Values indexed by HTF open times, placed on the base ``index``: row t holds the value of
    the latest HTF bar that ended at or before t (NaN before the first one ended)."""
    htf_open = pd.DatetimeIndex(values.index).as_unit("ns").asi8
    ends = htf_open + seconds(timeframe) * 1_000_000_000
    base = pd.DatetimeIndex(index).as_unit("ns").asi8
    position = np.searchsorted(ends, base, side="right") - 1
    valid = position >= 0
    take = np.where(valid, position, 0)
    if isinstance(values, pd.DataFrame):
        data = {column: _take(values[column].to_numpy(), take, valid) for column in values.columns}
        return pd.DataFrame(data, index=index)
    return pd.Series(_take(values.to_numpy(), take, valid), index=index, name=values.name)


def _take(array: np.ndarray, take: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if array.size == 0:
        return np.full(take.shape[0], np.nan)
    out = array.astype(np.float64, copy=False)[take]
    out[~valid] = np.nan
    return out


def _name(base: int) -> str:
    for name, length in market_timeframes.TIMEFRAMES.items():
        if length == base:
            return name
    return f"{base}s"


def larger_than(base: int | None, choices: Sequence[str] = TIMEFRAMES) -> list[str]:
    """The timeframes of ``choices`` that can be built from bars of ``base`` seconds."""
    if base is None:
        return list(choices)
    return [tf for tf in choices if seconds(tf) > base and seconds(tf) % base == 0]
