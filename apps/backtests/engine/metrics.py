"""Performance metrics of an equity curve and its trades.

Definitions (every return a fraction: 0.1 = +10 %; every value None when undefined, never
NaN or infinite):

- Per-bar returns ``r_t = equity_t / equity_{t-1} - 1``, with the initial cash before bar 0,
  so there is one return per bar. Risk-free rate 0.
- Two clocks. Per-bar figures are annualised by bar count: ``periods_per_year = 365 * 24 *
  3600 / bar_seconds`` (markets taken to trade 365 days a year, as crypto does), with
  ``bar_seconds`` the settings' timeframe, else the median spacing of the candles' first 10,000
  intervals. For equities (252 sessions a year) this overstates volatility, Sharpe and Sortino;
  read them as if the market never closed. Growth is annualised by the calendar: ``years =
  (last open time - first open time + bar_seconds) / 365.25 days``, the time the curve spans,
  so weekends, holidays and missing candles count as time and a year of business-day bars is
  one year (counting bars would shrink it to 260 / 365 of one and inflate the CAGR).
- ``cagr = (final / cash) ** (1 / years) - 1`` (-1 when everything is lost).
  ``volatility = std(r, ddof=1) * sqrt(periods_per_year)``.
- ``sharpe = mean(r) / std(r, ddof=1) * sqrt(ppy)``; ``sortino = mean(r) / sqrt(mean(min(r,
  0) ** 2)) * sqrt(ppy)`` (downside deviation against 0 over all bars).
- Drawdown at bar t: ``equity_t / peak_t - 1`` (<= 0), ``peak_t`` the running maximum of the
  equity, starting from the initial cash. ``max_drawdown`` = its largest depth as a positive
  fraction; ``max_drawdown_duration`` = the longest run of consecutive bars below the peak;
  ``ulcer_index = sqrt(mean(drawdown ** 2))`` (a fraction, not percent points).
- ``calmar = cagr / max_drawdown``; ``recovery_factor`` = net profit / the largest
  peak-to-trough loss, both in the quote currency.
- Trades: a winner has pnl > 0 and a loser pnl < 0 (pnl net of both fees). ``win_rate`` =
  winners / trades; ``profit_factor`` = gross profit / gross loss; ``expectancy`` = mean pnl
  per trade; ``avg_win`` / ``avg_loss`` = mean pnl of winners / losers (the latter negative).
- ``exposure`` = bars with a position open at their close / bars (= sum of bars held / bars).
- ``buy_and_hold_return`` = last close / first close - 1 (no fees).
- ``skipped_orders``: entries not placed (size below one lot or zero, notional under the
  minimum, no equity, no ATR yet, Kelly fraction 0).
"""

import math
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

YEAR_SECONDS = 365 * 24 * 3600
CALENDAR_YEAR_SECONDS = 365.25 * 24 * 3600
METRIC_KEYS = (
    "final_equity",
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration",
    "win_rate",
    "profit_factor",
    "expectancy",
    "avg_win",
    "avg_loss",
    "exposure",
    "trades",
    "ulcer_index",
    "recovery_factor",
    "buy_and_hold_return",
    "skipped_orders",
)
_SPACING_SAMPLE = 10_000


@njit(cache=True)
def equity_stats(
    equity: np.ndarray, cash0: float, drawdown_out: np.ndarray
) -> tuple[float, float, float, float, float, int, float]:
    """Two passes over the curve: (mean return, std of returns (ddof 1), downside deviation,
    max drawdown (positive fraction), max drawdown in currency, longest run of bars under
    water, ulcer index). Writes the drawdown series into ``drawdown_out`` unless it is empty."""
    n = equity.shape[0]
    write = drawdown_out.shape[0] == n
    prev = cash0
    total = 0.0
    for i in range(n):
        total += equity[i] / prev - 1.0
        prev = equity[i]
    mean = total / n
    prev = cash0
    sq = 0.0
    down = 0.0
    peak = cash0
    max_dd = 0.0
    max_dd_amount = 0.0
    run = 0
    longest = 0
    dd_sq = 0.0
    for i in range(n):
        r = equity[i] / prev - 1.0
        prev = equity[i]
        sq += (r - mean) * (r - mean)
        if r < 0.0:
            down += r * r
        if equity[i] > peak:
            peak = equity[i]
        dd = equity[i] / peak - 1.0
        if write:
            drawdown_out[i] = dd
        dd_sq += dd * dd
        if -dd > max_dd:
            max_dd = -dd
        if peak - equity[i] > max_dd_amount:
            max_dd_amount = peak - equity[i]
        if equity[i] < peak:
            run += 1
            if run > longest:
                longest = run
        else:
            run = 0
    std = math.sqrt(sq / (n - 1)) if n > 1 else np.nan
    return mean, std, math.sqrt(down / n), max_dd, max_dd_amount, longest, math.sqrt(dd_sq / n)


def drawdown_series(equity: np.ndarray, cash0: float) -> np.ndarray:
    """Drawdown per bar (<= 0 fractions), the running peak starting from the initial cash."""
    values = np.ascontiguousarray(equity, dtype=np.float64)
    out = np.empty(len(values))
    if len(values):
        equity_stats(values, float(cash0), out)
    return out


def bar_seconds_of(index: pd.DatetimeIndex) -> float | None:
    """The median spacing of the first 10,000 intervals, in seconds (None below 2 bars)."""
    if len(index) < 2:
        return None
    head = pd.DatetimeIndex(index[: _SPACING_SAMPLE + 1]).as_unit("ns").asi8
    spacing = float(np.median(np.diff(head))) / 1e9
    return spacing if spacing > 0 else None


def span_seconds_of(index: pd.DatetimeIndex, bar_seconds: float | None) -> float | None:
    """The calendar time a curve on ``index`` covers: from the first bar's open to the last
    bar's close, in seconds (None without a bar length)."""
    if not bar_seconds or len(index) == 0:
        return None
    return (pd.Timestamp(index[-1]) - pd.Timestamp(index[0])).total_seconds() + float(bar_seconds)


def _cagr(growth: float, span_seconds: float | None) -> float | None:
    if not span_seconds or span_seconds <= 0:
        return None
    if growth <= 0:
        return -1.0
    try:
        return _finite(growth ** (CALENDAR_YEAR_SECONDS / span_seconds) - 1.0)
    except OverflowError:
        return None


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return _finite(numerator / denominator)


def compute_metrics(
    *,
    equity: np.ndarray,
    trades: np.ndarray,
    cash: float,
    first_close: float,
    last_close: float,
    bar_seconds: float | None,
    span_seconds: float | None,
    skipped_orders: int,
    drawdown_out: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric of the module docstring from the equity curve and the trades matrix
    (:data:`apps.backtests.engine.fills.TRADE_COLUMNS`). Precondition: at least one bar.
    ``bar_seconds`` annualises the per-bar figures, ``span_seconds`` (the calendar time the
    curve covers, :func:`span_seconds_of` of its index) the CAGR; None leaves them undefined.
    ``drawdown_out`` (an array as long as ``equity``) receives the drawdown series."""
    n = len(equity)
    out = drawdown_out if drawdown_out is not None else np.empty(0)
    mean, std, downside, max_dd, max_dd_amount, dd_bars, ulcer = equity_stats(equity, cash, out)
    final = float(equity[-1])
    ppy = YEAR_SECONDS / bar_seconds if bar_seconds else None
    root = math.sqrt(ppy) if ppy else None
    cagr = _cagr(final / cash, span_seconds)
    pnl = trades[:, 7] if len(trades) else np.empty(0)
    gains = pnl[pnl > 0]
    losses = pnl[pnl < 0]
    count = len(pnl)
    metrics: dict[str, Any] = {
        "final_equity": _finite(final),
        "total_return": _finite(final / cash - 1.0),
        "cagr": cagr,
        "volatility": _finite(std * root) if root else None,
        "sharpe": _ratio(mean * root, std) if root and std > 0 else None,
        "sortino": _ratio(mean * root, downside) if root and downside > 0 else None,
        "calmar": _ratio(cagr, max_dd) if max_dd > 0 else None,
        "max_drawdown": _finite(max_dd),
        "max_drawdown_duration": int(dd_bars),
        "win_rate": len(gains) / count if count else None,
        "profit_factor": _ratio(float(gains.sum()), float(-losses.sum())) if len(losses) else None,
        "expectancy": _finite(pnl.mean()) if count else None,
        "avg_win": _finite(gains.mean()) if len(gains) else None,
        "avg_loss": _finite(losses.mean()) if len(losses) else None,
        "exposure": float((trades[:, 1] - trades[:, 0]).sum()) / n if count else 0.0,
        "trades": int(count),
        "ulcer_index": _finite(ulcer),
        "recovery_factor": _ratio(final - cash, max_dd_amount) if max_dd_amount > 0 else None,
        "buy_and_hold_return": _finite(last_close / first_close - 1.0),
        "skipped_orders": int(skipped_orders),
    }
    return metrics
