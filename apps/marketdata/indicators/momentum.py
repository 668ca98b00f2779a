"""Oscillators: rsi, stoch, cci, willr."""

import numpy as np
import pandas as pd

from apps.marketdata.indicators import _kernels
from apps.marketdata.indicators._series import Array, as_arrays, check_period, run, to_frame, to_series


def rsi(close: pd.Series, n: int = 14) -> pd.Series:
    """Relative strength index: 100 * avg_gain / (avg_gain + avg_loss), Wilder smoothing.

    The averages are seeded at row n with the plain means of the first n changes, then
    ``avg = (avg * (n-1) + x) / n``. Warm-up: n NaN rows. Matches ``talib.RSI(close, timeperiod=n)``
    (unstable period 0). Where both averages are zero (a flat window) the value is 0, as in
    TA-Lib.
    """
    n = check_period(n, "n")
    (out,) = run(_kernels.rsi, as_arrays(close), n)
    return to_series(out, close, f"rsi_{n}")


def stoch(
    high: pd.Series, low: pd.Series, close: pd.Series, k: int = 14, smooth_k: int = 3, d: int = 3
) -> pd.DataFrame:
    """Slow stochastic: ``k = sma(fast_k, smooth_k)``, ``d = sma(k, d)`` where
    fast_k = 100 * (close - lowest low) / (highest high - lowest low) over `k` bars (0 when the
    range is zero).

    Matches ``talib.STOCH(high, low, close, fastk_period=k, slowk_period=smooth_k, slowk_matype=0,
    slowd_period=d, slowd_matype=0)``; like TA-Lib both columns are NaN for the first
    (k-1) + (smooth_k-1) + (d-1) rows.
    """
    k = check_period(k, "k")
    smooth_k = check_period(smooth_k, "smooth_k")
    d = check_period(d, "d")
    high_a, low_a, close_a = as_arrays(high, low, close)
    highest, lowest = _extremes(high_a, low_a, k)
    fast_k = _scaled_position(close_a - lowest, highest, lowest, 100.0)
    (slow_k,) = run(_kernels.rolling_mean, [fast_k], smooth_k)
    (slow_d,) = run(_kernels.rolling_mean, [slow_k], d)
    slow_k[np.isnan(slow_d)] = np.nan
    return to_frame({"k": slow_k, "d": slow_d}, close)


def cci(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 20) -> pd.Series:
    """Commodity channel index: (tp - sma(tp, n)) / (0.015 * mean |tp - sma(tp, n)|),
    tp = (high + low + close) / 3; 0 where either part is zero.

    Warm-up: n-1 NaN rows. Matches ``talib.CCI(high, low, close, timeperiod=n)``, summing in
    TA-Lib's order so the values agree to the last bit.
    """
    n = check_period(n, "n")
    high_a, low_a, close_a = as_arrays(high, low, close)
    (out,) = run(_kernels.cci, [(high_a + low_a + close_a) / 3.0], n)
    return to_series(out, close, f"cci_{n}")


def willr(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 14) -> pd.Series:
    """Williams %R: -100 * (highest high - close) / (highest high - lowest low) over n bars, in
    [-100, 0]; 0 when the range is zero.

    Warm-up: n-1 NaN rows. Matches ``talib.WILLR(high, low, close, timeperiod=n)``.
    """
    n = check_period(n, "n")
    high_a, low_a, close_a = as_arrays(high, low, close)
    highest, lowest = _extremes(high_a, low_a, n)
    out = _scaled_position(highest - close_a, highest, lowest, -100.0)
    return to_series(out, close, f"willr_{n}")


def _extremes(high: Array, low: Array, n: int) -> tuple[Array, Array]:
    start = max(_kernels.first_valid(high), _kernels.first_valid(low))
    highest = np.full(high.shape[0], np.nan)
    lowest = np.full(high.shape[0], np.nan)
    if start < high.shape[0]:
        _kernels.rolling_extreme(high[start:], n, True, highest[start:])
        _kernels.rolling_extreme(low[start:], n, False, lowest[start:])
    return highest, lowest


def _scaled_position(distance: Array, highest: Array, lowest: Array, scale: float) -> Array:
    # TA-Lib divides by (range / scale) rather than multiplying by scale; doing the same keeps the
    # last bit equal.
    diff = (highest - lowest) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(diff != 0.0, distance / diff, 0.0)
    out[np.isnan(diff)] = np.nan
    return out
