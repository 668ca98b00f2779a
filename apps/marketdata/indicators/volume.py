"""Volume-weighted indicators: obv, mfi, vwap."""

import numpy as np
import pandas as pd

from apps.marketdata.indicators import _kernels
from apps.marketdata.indicators._series import as_arrays, check_period, run, to_series


def obv(close: pd.Series, volume: pd.Series) -> pd.Series:
    """On-balance volume: starts at volume[0], then adds the bar's volume when close rose and
    subtracts it when close fell (unchanged on an equal close).

    No warm-up. Matches ``talib.OBV(close, volume)``, which also starts at the first volume.
    """
    (out,) = run(_kernels.obv, as_arrays(close, volume))
    return to_series(out, close, "obv")


def mfi(high: pd.Series, low: pd.Series, close: pd.Series, volume: pd.Series, n: int = 14) -> pd.Series:
    """Money flow index: 100 * positive flow / (positive + negative flow) over the last n bars.

    tp = (high + low + close) / 3; a bar's raw flow tp * volume is positive when tp rose from the
    previous bar, negative when it fell, neither when unchanged (a change within 1e-14 of the two
    prices, a rounding tie, counts as unchanged as in TA-Lib). Warm-up: n NaN rows. Matches
    ``talib.MFI(high, low, close, volume, timeperiod=n)``. Both give 0 for a window without flow
    (e.g. forex files with volume 0). The window sums are recomputed per bar rather than kept
    running, so a window whose flows are all gone sums to exactly 0 (TA-Lib's running sums may
    leave a residue of ~1e-13 there).
    """
    n = check_period(n, "n")
    high_a, low_a, close_a, volume_a = as_arrays(high, low, close, volume)
    (out,) = run(_kernels.mfi, [(high_a + low_a + close_a) / 3.0, volume_a], n)
    return to_series(out, close, f"mfi_{n}")


def vwap(high: pd.Series, low: pd.Series, close: pd.Series, volume: pd.Series, anchor: str = "D") -> pd.Series:
    """Session-anchored volume-weighted average price of the typical price (h + l + c) / 3.

    The cumulative sums restart at the first bar of each `anchor` period of the index in UTC
    (a pandas period alias: "D" day, "W" week starting Monday, "M" month, "h" hour...). The index
    must be a DatetimeIndex of bar open times; a naive index is taken as UTC. No warm-up; NaN while
    the session's volume is still zero (forex files without volume give NaN throughout).
    TA-Lib has no VWAP.
    """
    index = close.index
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError("vwap needs a DatetimeIndex to find its sessions")
    utc = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    session = np.ascontiguousarray(utc.to_period(anchor).asi8, dtype=np.int64)
    high_a, low_a, close_a, volume_a = as_arrays(high, low, close, volume)
    typical = (high_a + low_a + close_a) / 3.0
    out = np.full(typical.shape[0], np.nan)
    _kernels.anchored_vwap(typical, volume_a, session, out)
    return to_series(out, close, f"vwap_{anchor}")
