"""Moving averages and trend indicators: sma, ema, wma, macd, adx, supertrend, ichimoku."""

import numpy as np
import pandas as pd

from apps.marketdata.indicators import _kernels
from apps.marketdata.indicators._series import as_arrays, check_period, run, to_frame, to_series


def sma(close: pd.Series, n: int) -> pd.Series:
    """Simple moving average: mean(close[t-n+1..t]).

    Warm-up: the first n-1 rows are NaN. Matches ``talib.SMA(close, timeperiod=n)``; the running
    sum is recomputed every max(n, 1024) bars, so it stays exact-to-rounding on any length.
    """
    n = check_period(n, "n")
    (out,) = run(_kernels.rolling_mean, as_arrays(close), n)
    return to_series(out, close, f"sma_{n}")


def ema(close: pd.Series, n: int) -> pd.Series:
    """Exponential moving average: ema[t] = ema[t-1] + k * (close[t] - ema[t-1]), k = 2 / (n + 1).

    Seeded at row n-1 with the SMA of the first n closes, so the first n-1 rows are NaN. Matches
    ``talib.EMA(close, timeperiod=n)`` (TA-Lib's default compatibility, unstable period 0).
    """
    n = check_period(n, "n")
    (out,) = run(_kernels.ema, as_arrays(close), n, 2.0 / (n + 1))
    return to_series(out, close, f"ema_{n}")


def wma(close: pd.Series, n: int) -> pd.Series:
    """Linearly weighted moving average: sum(i * close[t-n+i], i=1..n) / (n (n + 1) / 2).

    Warm-up: the first n-1 rows are NaN. Matches ``talib.WMA(close, timeperiod=n)``.
    """
    n = check_period(n, "n")
    (out,) = run(_kernels.wma, as_arrays(close), n)
    return to_series(out, close, f"wma_{n}")


def macd(close: pd.Series, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """MACD: ``macd = ema_fast - ema_slow``, ``signal = ema(macd, signal)``, ``hist = macd - signal``.

    Matches ``talib.MACD(close, fastperiod=fast, slowperiod=slow, signalperiod=signal)`` including
    its seeding: both EMAs start at row slow-1 (the fast one seeded with the SMA of the `fast`
    closes ending there, not run from row fast-1), and the signal EMA is seeded with the mean of
    the first `signal` MACD values. Like TA-Lib, all three columns are NaN for the first
    slow + signal - 2 rows. Requires fast < slow.
    """
    fast = check_period(fast, "fast")
    slow = check_period(slow, "slow")
    signal = check_period(signal, "signal")
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
    line, sig, hist = run(_kernels.macd, as_arrays(close), fast, slow, signal, outputs=3)
    return to_frame({"macd": line, "signal": sig, "hist": hist}, close)


def adx(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 14) -> pd.Series:
    """Average directional index (Wilder).

    +DM/-DM/TR are Wilder-summed (``s = s - s/n + x``), DI = 100 * DM / TR,
    DX = 100 * |DI+ - DI-| / (DI+ + DI-), the first ADX (row 2n-1) is the mean of n DX values
    and later ones ``(adx * (n-1) + dx) / n``. Warm-up: 2n-1 NaN rows. Matches
    ``talib.ADX(high, low, close, timeperiod=n)`` step for step; while the smoothed true range is
    zero (a flat market) the ADX holds its last value.
    """
    n = check_period(n, "n")
    (out,) = run(_kernels.adx, as_arrays(high, low, close), n)
    return to_series(out, close, f"adx_{n}")


def supertrend(high: pd.Series, low: pd.Series, close: pd.Series, n: int = 10, k: float = 3.0) -> pd.DataFrame:
    """SuperTrend: bands at hl2 +- k * ATR(n) that only ratchet toward price.

    The final upper band falls (or resets when the previous close broke above it), the final
    lower band rises likewise; the trend turns up when close crosses above the upper band and
    down when it crosses below the lower one. ``supertrend`` is the lower band in an uptrend and
    the upper band in a downtrend; ``direction`` is +1.0 (up) or -1.0 (down). The first bar with
    an ATR (row n) starts in a downtrend, as TradingView's ``ta.supertrend`` does. ATR is
    :func:`~apps.marketdata.indicators.atr` (TA-Lib's Wilder ATR). Warm-up: n NaN rows. TA-Lib
    has no SuperTrend.
    """
    n = check_period(n, "n")
    arrays = as_arrays(high, low, close)
    (atr_values,) = run(_kernels.wilder_atr, arrays, n)
    line, direction = run(_kernels.supertrend, [*arrays, atr_values], float(k), outputs=2)
    return to_frame({"supertrend": line, "direction": direction}, close)


def ichimoku(
    high: pd.Series, low: pd.Series, close: pd.Series, tenkan: int = 9, kijun: int = 26, senkou_b: int = 52
) -> pd.DataFrame:
    """Ichimoku Kinko Hyo, every column being a value known at the close of its row.

    - ``tenkan`` = (highest high + lowest low) / 2 over `tenkan` bars (warm-up tenkan-1 rows),
    - ``kijun`` = the same over `kijun` bars (warm-up kijun-1),
    - ``senkou_a`` = (tenkan + kijun) / 2 computed at row t (warm-up kijun-1),
    - ``senkou_b`` = midpoint of the `senkou_b`-bar range computed at row t (warm-up senkou_b-1),
    - ``chikou`` = close at row t.

    Charts draw the senkou spans `kijun` bars ahead and the chikou span `kijun` bars back. That
    displacement is left to the consumer so that no row holds data from after it: the cloud a
    chart shows at bar t is ``senkou_a.shift(kijun)`` / ``senkou_b.shift(kijun)``, and chikou is
    plotted at t - kijun (comparing it with the price there is comparing close[t] with
    close[t-kijun]). TA-Lib has no Ichimoku.
    """
    tenkan = check_period(tenkan, "tenkan")
    kijun = check_period(kijun, "kijun")
    senkou_b = check_period(senkou_b, "senkou_b")
    high_a, low_a, close_a = as_arrays(high, low, close)
    tenkan_line = _midpoint(high_a, low_a, tenkan)
    kijun_line = _midpoint(high_a, low_a, kijun)
    return to_frame(
        {
            "tenkan": tenkan_line,
            "kijun": kijun_line,
            "senkou_a": (tenkan_line + kijun_line) / 2.0,
            "senkou_b": _midpoint(high_a, low_a, senkou_b),
            "chikou": close_a.copy(),
        },
        close,
    )


def _midpoint(high: np.ndarray, low: np.ndarray, n: int) -> np.ndarray:
    (highest,) = run(_kernels.rolling_extreme, [high], n, True)
    (lowest,) = run(_kernels.rolling_extreme, [low], n, False)
    return (highest + lowest) / 2.0
