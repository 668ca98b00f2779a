"""Timeframes: names, lengths, the UTC grid, and deriving higher timeframes from lower ones.

A candle's timestamp is its open time (UTC). A bar of timeframe T opens on the UTC grid of T:
minutes and hours from the epoch, days at 00:00 UTC, weeks on Monday 00:00 UTC (the exchanges'
convention, e.g. Binance).
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

TIMEFRAMES: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "12h": 43200,
    "1d": 86400,
    "1w": 604800,
}
CHOICES = [(name, name) for name in TIMEFRAMES]
# Monday 1970-01-05 00:00 UTC: weeks are aligned to it, not to the epoch (a Thursday).
_WEEK_ORIGIN = 4 * 86400
# The chain the platform derives by default: each from the one before.
DERIVATION_CHAIN = ["1m", "5m", "15m", "1h", "4h", "1d"]


class UnknownTimeframe(ValueError):
    pass


def seconds(timeframe: str) -> int:
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise UnknownTimeframe(f"Unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}.") from None


def delta(timeframe: str) -> timedelta:
    return timedelta(seconds=seconds(timeframe))


def floor(ts: datetime, timeframe: str) -> datetime:
    """The open time of the bar of `timeframe` that contains `ts`."""
    step = seconds(timeframe)
    origin = _WEEK_ORIGIN if timeframe == "1w" else 0
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - (epoch - origin) % step, tz=UTC)


def on_grid(index: pd.DatetimeIndex, timeframe: str) -> np.ndarray:
    """Boolean mask: which timestamps are bar open times of `timeframe`.

    Weekly bars are only required to open at 00:00 UTC: sources disagree on the weekday that
    labels a week (Monday at exchanges, Friday or Saturday in old index data), and all of those
    are weekly bars. Bars the platform derives itself open on Mondays.
    """
    step = seconds("1d") if timeframe == "1w" else seconds(timeframe)
    origin = 0
    ns = pd.DatetimeIndex(index).as_unit("ns").asi8
    return np.asarray((ns - origin * 1_000_000_000) % (step * 1_000_000_000) == 0)


def can_derive(source: str, target: str) -> bool:
    """A target bar is a whole number of source bars, aligned on the same grid."""
    s, t = seconds(source), seconds(target)
    if t <= s or t % s:
        return False
    return not (target == "1w" and source not in {"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"})


def resample(
    candles: pd.DataFrame, target: str, *, source: str | None = None, complete_only: bool = True
) -> pd.DataFrame:
    """Derive `target` bars from lower-timeframe `candles` (DatetimeIndex of open times, UTC).

    Exchange conventions: open of the first bar, high max, low min, close of the last, volume
    sum; bars on the UTC grid of `target`. With `complete_only` (the default) a target bar is
    kept only when every source bar in it is present, so a half-built bar (the current hour, or
    a hole in the data) is never mistaken for a closed one.
    """
    step = seconds(target)
    if candles.empty:
        return candles.copy()
    origin = pd.Timestamp(_WEEK_ORIGIN if target == "1w" else 0, unit="s", tz="UTC")
    grouped = candles.resample(f"{step}s", origin=origin, label="left", closed="left")
    out = grouped.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    counts = grouped["close"].count()
    out = out[counts > 0]
    if complete_only:
        src = seconds(source) if source else _infer_step(candles)
        expected = step // src
        out = out[counts[counts > 0] == expected]
    out.index.name = candles.index.name
    return out


def _infer_step(candles: pd.DataFrame) -> int:
    if len(candles) < 2:
        return seconds("1m")
    diffs = np.diff(pd.DatetimeIndex(candles.index).as_unit("s").asi8)
    return int(np.min(diffs[diffs > 0])) if (diffs > 0).any() else seconds("1m")
