"""Bands and ranges: bbands, atr, donchian, keltner."""

import numpy as np
import pandas as pd

from apps.marketdata.indicators import _kernels
from apps.marketdata.indicators._series import as_arrays, check_period, run, to_frame, to_series


def bbands(close: pd.Series, n: int = 20, k: float = 2.0) -> pd.DataFrame:
    """Bollinger bands: ``middle = sma(close, n)``, ``upper/lower = middle +- k * std`` with the
    population standard deviation of the same n closes.

    Warm-up: n-1 NaN rows. Matches ``talib.BBANDS(close, timeperiod=n, nbdevup=k, nbdevdn=k,
    matype=0)``. The variance is summed around a recent window mean instead of as
    E[x^2] - E[x]^2, which TA-Lib uses and which loses digits on high-priced series; a variance
    that rounds to <= 0 gives a zero width, as in TA-Lib.
    """
    n = check_period(n, "n")
    upper, middle, lower = run(_kernels.bbands, as_arrays(close), n, float(k), outputs=3)
    return to_frame({"upper": upper, "middle": middle, "lower": lower}, close)


def atr(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 14) -> pd.Series:
    """Average true range with Wilder smoothing.

    TR = max(high - low, |high - prev close|, |low - prev close|) from row 1; the first ATR
    (row n) is the mean of TR[1..n], then ``atr = (atr * (n-1) + tr) / n``. Warm-up: n NaN rows.
    Matches ``talib.ATR(high, low, close, timeperiod=n)`` (unstable period 0); n = 1 gives
    ``talib.TRANGE``.
    """
    n = check_period(n, "n")
    (out,) = run(_kernels.wilder_atr, as_arrays(high, low, close), n)
    return to_series(out, close, f"atr_{n}")


def donchian(high: pd.Series, low: pd.Series, n: int = 20) -> pd.DataFrame:
    """Donchian channel: ``upper`` = highest high and ``lower`` = lowest low of the last n bars
    (the current one included), ``middle`` = their mean.

    Warm-up: n-1 NaN rows. TA-Lib equivalent: ``talib.MAX(high, n)``, ``talib.MIN(low, n)``. For a
    breakout rule compare close[t] with ``upper.shift(1)``: the channel at t includes bar t.
    """
    n = check_period(n, "n")
    high_a, low_a = as_arrays(high, low)
    (upper,) = run(_kernels.rolling_extreme, [high_a], n, True)
    (lower,) = run(_kernels.rolling_extreme, [low_a], n, False)
    return to_frame({"upper": upper, "middle": (upper + lower) / 2.0, "lower": lower}, high)


def keltner(
    high: pd.Series, low: pd.Series, close: pd.Series, n: int = 20, atr_n: int = 10, k: float = 2.0
) -> pd.DataFrame:
    """Keltner channel: ``middle = ema(close, n)``, ``upper/lower = middle +- k * atr(atr_n)``.

    Warm-up: max(n-1, atr_n) NaN rows. EMA and ATR are TA-Lib's (see :func:`ema`, :func:`atr`);
    TA-Lib has no Keltner channel itself.
    """
    n = check_period(n, "n")
    atr_n = check_period(atr_n, "atr_n")
    high_a, low_a, close_a = as_arrays(high, low, close)
    (middle,) = run(_kernels.ema, [close_a], n, 2.0 / (n + 1))
    (range_,) = run(_kernels.wilder_atr, [high_a, low_a, close_a], atr_n)
    width = float(k) * range_
    upper = middle + width
    lower = middle - width
    middle = np.where(np.isnan(width), np.nan, middle)
    return to_frame({"upper": upper, "middle": middle, "lower": lower}, close)
