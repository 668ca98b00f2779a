"""Vectorised building blocks shared by the pre-built strategies (not a strategy module: the
leading underscore keeps the registry from importing it as one).

Crosses follow TradingView's ``ta.crossover`` / ``ta.crossunder``: ``a`` crosses above ``b`` on
bar t when ``a[t] > b[t]`` and ``a[t-1] <= b[t-1]``; any NaN among the four values means no
cross. Comparisons with NaN are False, so nothing fires during an indicator's warm-up.
"""

import numpy as np
import numpy.typing as npt
import pandas as pd

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
type ArrayLike = pd.Series | Floats | float


def values(series: ArrayLike, size: int) -> Floats:
    """float64 array of ``size`` from a Series, an array or a scalar."""
    if isinstance(series, pd.Series):
        return series.to_numpy(dtype=np.float64)
    if isinstance(series, np.ndarray):
        return series.astype(np.float64, copy=False)
    return np.full(size, float(series))


def crossover(a: ArrayLike, b: ArrayLike, size: int) -> Bools:
    """Bars where ``a`` crosses above ``b``."""
    av, bv = values(a, size), values(b, size)
    out = np.zeros(size, dtype=bool)
    if size > 1:
        out[1:] = (av[1:] > bv[1:]) & (av[:-1] <= bv[:-1])
    return out


def crossunder(a: ArrayLike, b: ArrayLike, size: int) -> Bools:
    """Bars where ``a`` crosses below ``b``."""
    av, bv = values(a, size), values(b, size)
    out = np.zeros(size, dtype=bool)
    if size > 1:
        out[1:] = (av[1:] < bv[1:]) & (av[:-1] >= bv[:-1])
    return out


def rising_edge(condition: Bools) -> Bools:
    """Bars where ``condition`` becomes true (true now, false on the bar before)."""
    out = condition.copy()
    if condition.size > 1:
        out[1:] &= ~condition[:-1]
    return out


def falling_edge(condition: Bools) -> Bools:
    """Bars where ``condition`` stops being true (false now, true on the bar before)."""
    out = np.zeros_like(condition)
    if condition.size > 1:
        out[1:] = ~condition[1:] & condition[:-1]
    return out


def holding(enter: Bools, exit_: Bools) -> Bools:
    """Whether a position opened by ``enter`` and closed by ``exit_`` is held after each bar.

    A bar with both signals ends flat: the exit wins, the conservative reading.
    """
    size = enter.shape[0]
    state = np.full(size, np.nan)
    state[enter] = 1.0
    state[exit_] = 0.0
    last = np.where(~np.isnan(state), np.arange(size), -1)
    np.maximum.accumulate(last, out=last)
    held = np.zeros(size, dtype=bool)
    seen = last >= 0
    held[seen] = state[last[seen]] == 1.0
    return held


def at_entries(prices: ArrayLike, entries: Bools, size: int) -> Floats:
    """``prices`` on the entry bars, NaN elsewhere (a stop or target belongs to the entry)."""
    out = np.full(size, np.nan)
    source = values(prices, size)
    out[entries] = source[entries]
    return out


def merge_prices(first: Floats, second: Floats) -> Floats:
    """``first`` where it is set, else ``second``."""
    return np.where(np.isnan(first), second, first)


def no_signals(size: int) -> Bools:
    return np.zeros(size, dtype=bool)


def ema_settle(period: int) -> int:
    """Bars after which an exponential/Wilder average has forgotten its seed well enough.

    After 3x the period an EMA's seed weighs under 0.3 % and a Wilder average's under 5 %; the
    strategies count that as their warm-up so that a run starting that many bars earlier gives
    practically the same signals as one over the whole history.
    """
    return 3 * period
