"""Compiled loops behind the indicators.

Every kernel takes contiguous float64 arrays that start at the first valid bar, and writes into
an ``out`` array (or arrays) that the caller filled with NaN, so warm-up rows stay NaN. Loops are
causal: the value written at index ``i`` reads inputs ``0..i`` only.

Rolling sums are kept with add/subtract updates (as TA-Lib does) but recomputed from scratch
every ``max(n, RECOMPUTE_EVERY)`` bars, so rounding error cannot accumulate over a long series.
Where TA-Lib's exact operation order matters for parity (EMA and MACD seeding, ADX, CCI's
circular-buffer sums) the loops repeat it; Wilder smoothing in ATR and RSI multiplies by
precomputed (n-1)/n and 1/n instead of dividing (see wilder_atr).
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit as _numba_njit

Array = npt.NDArray[np.float64]

RECOMPUTE_EVERY = 1024


def njit(*, cache: bool) -> Callable[[Callable[..., Any]], Any]:
    # error_model="numpy": a float division by zero gives inf/nan instead of a Python exception
    # check on every division, which slowed the hot loops by a third.
    return _numba_njit(cache=cache, error_model="numpy")


@njit(cache=True)
def first_valid(x: Array) -> int:
    """Index of the first non-NaN value (len(x) when there is none)."""
    for i in range(x.shape[0]):
        if not np.isnan(x[i]):
            return i
    return x.shape[0]


@njit(cache=True)
def _window_sum(x: Array, end: int, n: int) -> float:
    total = 0.0
    for j in range(end - n + 1, end + 1):
        total += x[j]
    return total


@njit(cache=True)
def rolling_mean(x: Array, n: int, out: Array) -> None:
    """Mean of x[i-n+1..i] for i >= n-1."""
    size = x.shape[0]
    every = max(n, RECOMPUTE_EVERY)
    # Blocks of `every` rows: the first row of a block sums its window afresh, the others update;
    # no per-row branch in the hot loop.
    for block in range(n - 1, size, every):
        total = _window_sum(x, block, n)
        out[block] = total / n
        for i in range(block + 1, min(block + every, size)):
            total += x[i] - x[i - n]
            out[i] = total / n


@njit(cache=True)
def bbands(x: Array, n: int, k: float, upper: Array, middle: Array, lower: Array) -> None:
    """Rolling mean (as rolling_mean, bit for bit) +- k population standard deviations.

    The variance comes from sums of (x - c) and (x - c)^2 around a shift c that is reset to the
    window mean at the start of every block, so E[x^2] - E[x]^2 does not cancel catastrophically
    on high-priced series.
    """
    size = x.shape[0]
    every = max(n, RECOMPUTE_EVERY)
    inv_n = 1.0 / n
    for block in range(n - 1, size, every):
        total = _window_sum(x, block, n)
        shift = total / n
        s1 = 0.0
        s2 = 0.0
        for j in range(block - n + 1, block + 1):
            d = x[j] - shift
            s1 += d
            s2 += d * d
        for i in range(block, min(block + every, size)):
            if i > block:
                new = x[i]
                old = x[i - n]
                total += new - old
                d_new = new - shift
                d_old = old - shift
                s1 += d_new - d_old
                s2 += d_new * d_new - d_old * d_old
            mean = total / n
            offset = s1 * inv_n
            width = k * math.sqrt(max(s2 * inv_n - offset * offset, 0.0))
            middle[i] = mean
            upper[i] = mean + width
            lower[i] = mean - width


@njit(cache=True)
def ema(x: Array, n: int, k: float, out: Array) -> None:
    """TA-Lib's INT_EMA: seeded with the SMA of x[0..n-1], then prev + k * (x - prev)."""
    size = x.shape[0]
    if size < n:
        return
    total = 0.0
    for i in range(n):
        total += x[i]
    prev = total / n
    out[n - 1] = prev
    for i in range(n, size):
        prev = ((x[i] - prev) * k) + prev
        out[i] = prev


@njit(cache=True)
def wma(x: Array, n: int, out: Array) -> None:
    """Linearly weighted mean, weights 1..n (newest heaviest)."""
    size = x.shape[0]
    divider = n * (n + 1) / 2.0
    every = max(n, RECOMPUTE_EVERY)
    for block in range(n - 1, size, every):
        plain = 0.0
        weighted = 0.0
        for j in range(n):
            v = x[block - n + 1 + j]
            plain += v
            weighted += (j + 1) * v
        out[block] = weighted / divider
        for i in range(block + 1, min(block + every, size)):
            # Shifting the window lowers every weight by one (drops the old plain sum) and adds
            # the new value at weight n.
            weighted += n * x[i] - plain
            plain += x[i] - x[i - n]
            out[i] = weighted / divider


@njit(cache=True)
def rolling_extreme(x: Array, n: int, is_max: bool, out: Array) -> None:
    """Rolling max (or min) of x[i-n+1..i] with a monotonic deque: O(len) for any n."""
    size = x.shape[0]
    queue = np.empty(size, np.int64)
    head = 0
    tail = 0
    for i in range(size):
        v = x[i]
        if is_max:
            while tail > head and x[queue[tail - 1]] <= v:
                tail -= 1
        else:
            while tail > head and x[queue[tail - 1]] >= v:
                tail -= 1
        queue[tail] = i
        tail += 1
        if queue[head] <= i - n:
            head += 1
        if i >= n - 1:
            out[i] = x[queue[head]]


@njit(cache=True)
def true_range(high: Array, low: Array, close: Array, out: Array) -> None:
    """TA-Lib's TRANGE: max(h - l, |prev close - h|, |prev close - l|) from index 1."""
    for i in range(1, high.shape[0]):
        greatest = high[i] - low[i]
        v = abs(close[i - 1] - high[i])
        if v > greatest:
            greatest = v
        v = abs(close[i - 1] - low[i])
        if v > greatest:
            greatest = v
        out[i] = greatest


@njit(cache=True)
def wilder_atr(high: Array, low: Array, close: Array, n: int, out: Array) -> None:
    """TA-Lib's ATR: SMA of TR[1..n] at index n, then (prev * (n-1) + TR) / n.

    The smoothing is evaluated as prev * ((n-1)/n) + TR * (1/n): a division in the loop-carried
    chain costs 4x the time, and the results differ from TA-Lib's by a few ulp that do not grow
    (each step shrinks earlier error by (n-1)/n).
    """
    size = high.shape[0]
    if size <= n:
        return
    if n == 1:
        true_range(high, low, close, out)
        return
    total = 0.0
    for i in range(1, n + 1):
        total += _tr(high, low, close, i)
    prev = total / n
    out[n] = prev
    keep = (n - 1) / n
    inv_n = 1.0 / n
    for i in range(n + 1, size):
        prev = prev * keep + _tr(high, low, close, i) * inv_n
        out[i] = prev


@njit(cache=True)
def rsi(x: Array, n: int, out: Array) -> None:
    """TA-Lib's RSI: Wilder averages of gains and losses seeded with their plain means.

    Smoothing as in wilder_atr: avg * ((n-1)/n) + change * (1/n).
    """
    size = x.shape[0]
    if size <= n:
        return
    gain = 0.0
    loss = 0.0
    for i in range(1, n + 1):
        change = x[i] - x[i - 1]
        if change < 0:
            loss -= change
        else:
            gain += change
    loss /= n
    gain /= n
    out[n] = 100.0 * (gain / (gain + loss)) if gain + loss != 0.0 else 0.0
    keep = (n - 1) / n
    inv_n = 1.0 / n
    for i in range(n + 1, size):
        change = x[i] - x[i - 1]
        gain = gain * keep + max(change, 0.0) * inv_n
        loss = loss * keep + max(-change, 0.0) * inv_n
        total = gain + loss
        out[i] = 100.0 * (gain / total) if total != 0.0 else 0.0


@njit(cache=True)
def macd(x: Array, fast: int, slow: int, signal: int, line: Array, sig: Array, hist: Array) -> None:
    """TA-Lib's MACD, including its seeding: both EMAs start at index slow-1, the fast one seeded
    with the SMA of the `fast` values ending there; the signal EMA is seeded with the SMA of the
    first `signal` MACD values. All three outputs start at index slow + signal - 2."""
    size = x.shape[0]
    start = slow - 1
    first_out = start + signal - 1
    if size <= first_out:
        return
    k_slow = 2.0 / (slow + 1)
    k_fast = 2.0 / (fast + 1)
    k_signal = 2.0 / (signal + 1)
    total = 0.0
    for i in range(slow):
        total += x[i]
    slow_ema = total / slow
    total = 0.0
    for i in range(slow - fast, slow):
        total += x[i]
    fast_ema = total / fast
    sig_total = 0.0
    prev_sig = 0.0
    for i in range(start, size):
        if i > start:
            slow_ema = ((x[i] - slow_ema) * k_slow) + slow_ema
            fast_ema = ((x[i] - fast_ema) * k_fast) + fast_ema
        value = fast_ema - slow_ema
        if i <= first_out:
            sig_total += value
            if i < first_out:
                continue
            prev_sig = sig_total / signal
        else:
            prev_sig = ((value - prev_sig) * k_signal) + prev_sig
        line[i] = value
        sig[i] = prev_sig
        hist[i] = value - prev_sig


@njit(cache=True)
def _directional_move(high: Array, low: Array, i: int) -> tuple[float, float]:
    up = high[i] - high[i - 1]
    down = low[i - 1] - low[i]
    if down > 0 and up < down:
        return 0.0, down
    if up > 0 and up > down:
        return up, 0.0
    return 0.0, 0.0


@njit(cache=True)
def adx(high: Array, low: Array, close: Array, n: int, out: Array) -> None:
    """TA-Lib's ADX, step for step: Wilder sums of +DM, -DM and TR over n-1 bars, then n bars of
    DX averaged for the first ADX at index 2n-1, then Wilder smoothing of DX."""
    size = high.shape[0]
    if size < 2 * n:
        return
    plus_dm = 0.0
    minus_dm = 0.0
    tr_sum = 0.0
    for i in range(1, n):
        p, m = _directional_move(high, low, i)
        plus_dm += p
        minus_dm += m
        tr_sum += _tr(high, low, close, i)
    dx_sum = 0.0
    prev_adx = 0.0
    for i in range(n, size):
        p, m = _directional_move(high, low, i)
        minus_dm -= minus_dm / n
        plus_dm -= plus_dm / n
        plus_dm += p
        minus_dm += m
        tr_sum = tr_sum - (tr_sum / n) + _tr(high, low, close, i)
        dx = -1.0
        if tr_sum != 0.0:
            minus_di = 100.0 * (minus_dm / tr_sum)
            plus_di = 100.0 * (plus_dm / tr_sum)
            di_sum = minus_di + plus_di
            # DI values are percentages, so TA-Lib's 1e-8 "is zero" test is scale-free here.
            if abs(di_sum) >= 1e-8:
                dx = 100.0 * (abs(minus_di - plus_di) / di_sum)
        if i < 2 * n - 1:
            if dx >= 0.0:
                dx_sum += dx
            continue
        if i == 2 * n - 1:
            if dx >= 0.0:
                dx_sum += dx
            prev_adx = dx_sum / n
        elif dx >= 0.0:
            prev_adx = ((prev_adx * (n - 1)) + dx) / n
        out[i] = prev_adx


@njit(cache=True)
def _tr(high: Array, low: Array, close: Array, i: int) -> float:
    greatest = high[i] - low[i]
    v = abs(high[i] - close[i - 1])
    if v > greatest:
        greatest = v
    v = abs(low[i] - close[i - 1])
    if v > greatest:
        greatest = v
    return greatest


@njit(cache=True)
def cci(typical: Array, n: int, out: Array) -> None:
    """TA-Lib's CCI, summing its circular buffer in the same order so results agree bit for bit."""
    size = typical.shape[0]
    if size < n:
        return
    buffer = np.empty(n)
    for i in range(size):
        buffer[i % n] = typical[i]
        if i < n - 1:
            continue
        average = 0.0
        for j in range(n):
            average += buffer[j]
        average /= n
        deviation = 0.0
        for j in range(n):
            deviation += abs(buffer[j] - average)
        diff = typical[i] - average
        if diff != 0.0 and deviation != 0.0:
            out[i] = diff / (0.015 * (deviation / n))
        else:
            out[i] = 0.0


@njit(cache=True)
def mfi(typical: Array, volume: Array, n: int, out: Array) -> None:
    """Money flow index: positive / total raw money flow over the last n bars, summed afresh each
    bar (no running-sum residue when a window's flow is all zero)."""
    size = typical.shape[0]
    if size <= n:
        return
    flow = np.zeros(size)
    for i in range(1, size):
        change = typical[i] - typical[i - 1]
        # A change within ~90 ulp of the prices is a rounding tie of (h + l + c) / 3, not a move
        # (TA-Lib's TA_IS_ZERO_SCALED dead zone, same constant).
        if abs(change) <= 1e-14 * (abs(typical[i]) + abs(typical[i - 1])):
            continue
        money = typical[i] * volume[i]
        flow[i] = money if change > 0 else -money
    for i in range(n, size):
        positive = 0.0
        negative = 0.0
        for j in range(i - n + 1, i + 1):
            if flow[j] > 0:
                positive += flow[j]
            else:
                negative -= flow[j]
        total = positive + negative
        out[i] = 100.0 * (positive / total) if total != 0.0 else 0.0


@njit(cache=True)
def obv(close: Array, volume: Array, out: Array) -> None:
    """TA-Lib's OBV: starts at volume[0], then adds or subtracts each bar's volume."""
    size = close.shape[0]
    if size == 0:
        return
    total = volume[0]
    out[0] = total
    for i in range(1, size):
        if close[i] > close[i - 1]:
            total += volume[i]
        elif close[i] < close[i - 1]:
            total -= volume[i]
        out[i] = total


@njit(cache=True)
def anchored_vwap(typical: Array, volume: Array, session: npt.NDArray[np.int64], out: Array) -> None:
    """Cumulative sum(typical * volume) / sum(volume), restarting where `session` changes."""
    pv = 0.0
    vol = 0.0
    for i in range(typical.shape[0]):
        if i == 0 or session[i] != session[i - 1]:
            pv = 0.0
            vol = 0.0
        pv += typical[i] * volume[i]
        vol += volume[i]
        out[i] = pv / vol if vol != 0.0 else np.nan


@njit(cache=True)
def supertrend(high: Array, low: Array, close: Array, atr: Array, k: float, line: Array, direction: Array) -> None:
    """Final bands ratchet toward price; the trend flips when close crosses the active band."""
    size = high.shape[0]
    upper = np.nan
    lower = np.nan
    trend = 0.0
    for i in range(size):
        if np.isnan(atr[i]):
            continue
        mid = (high[i] + low[i]) / 2.0
        basic_upper = mid + k * atr[i]
        basic_lower = mid - k * atr[i]
        if trend == 0.0:
            # First bar with an ATR: start in a downtrend (TradingView's ta.supertrend does too).
            upper = basic_upper
            lower = basic_lower
            trend = -1.0
        else:
            prev_close = close[i - 1]
            if basic_upper < upper or prev_close > upper:
                upper = basic_upper
            if basic_lower > lower or prev_close < lower:
                lower = basic_lower
            if trend < 0 and close[i] > upper:
                trend = 1.0
            elif trend > 0 and close[i] < lower:
                trend = -1.0
        line[i] = lower if trend > 0 else upper
        direction[i] = trend
