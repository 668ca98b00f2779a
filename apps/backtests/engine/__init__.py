"""The backtest engine: a strategy's signals + candles -> fills, trades, equity and metrics.

Pure Python + NumPy/numba, no Django: ``from apps.backtests.engine import run_backtest``.
The paper venue reuses the per-fill costs of :mod:`.costs` and the sizing of :mod:`.sizing`.

    strategy = get_strategy("sma_cross", fast=10, slow=30)
    result = run_backtest(strategy, candles, cash=10_000, fee=0.001, fill="next_open")
    result.metrics["sharpe"], result.trades, result.equity

The rules (what a trader should know before trusting a number):

Fills
- Signals are read at a bar's close. ``fill="next_open"`` (default) fills the resulting orders
  at the next bar's open; signals on the last bar are not filled (there is no next bar).
  ``fill="close"`` fills them at the signal bar's close; entries on the last bar are not taken.
- One position at a time, long or short (shorts only with ``allow_short``). ``exit_long`` /
  ``exit_short`` close; an entry signal for the other side closes and reverses (with shorts
  off, ``enter_short`` still closes a long but opens nothing). An entry signal while already
  in that side is ignored (no pyramiding). An entry whose own exit signal is set on the same
  bar, or long and short entries together, conflict and count as no entry.
- ``entry="limit"``: a limit at close * (1 - limit_offset) (longs) or * (1 + limit_offset)
  (shorts), valid for the next bar only, filled when that bar trades through it, at the limit
  or the better open; maker fee, no slippage. Exits by signal are always market orders.
- Stops and targets are checked inside each bar from its open, high and low: an open beyond
  the stop fills at the open (a gap), else an open beyond the target fills at the open, else a
  low/high through the stop fills at the stop, else a high/low through the target at the
  target. When both are touched inside one bar the stop counts first. A position entered at
  the bar's open is checked in that bar; one entered by a limit inside the bar is checked for
  its stop only (from its fill price), and one entered at a close from the next bar on.
- Levels are fractions of the entry (fill) price: stop_loss 0.02 = 2 % below a long's entry.
  A strategy's ``stop_price`` / ``target_price`` at the entry signal bar override the
  percentages. Risk-per-trade sizing without a stop_loss or strategy stop places its ATR stop.
- Trailing stop: trailing_stop below the highest high (above the lowest low for shorts)
  since entry, the extreme updated after each bar's check, so a bar cannot both raise its own
  trail and hit it. Break-even: once that extreme shows a gain of breakeven_after, the stop
  moves to the entry price. The tightest of stop, trail and break-even applies (ties: stop,
  then trailing); its name is the exit reason. Time exit: a position entered on bar e is
  closed at the open of bar e + time_exit_bars (next_open) or at that bar's close (close); an
  exit signal due at the same moment wins (reason "signal").
- A position still open after the last bar is closed at the last close (reason "end"), as a
  market order with its costs, so the final equity is cash.

Costs (:mod:`.costs`): a percentage fee on every fill (taker ``fee`` for market and stop
fills, ``maker_fee`` for limit entries and take-profit exits, which are resting limits) plus
``fee_fixed`` per fill; slippage on market and stop fills only, always against the trader.
Funding and borrow are not modelled (see :mod:`.settings`).

Sizing (:mod:`.sizing`): at the fill, from the equity then (= cash: entries happen flat);
fractional units unless a lot size says otherwise; never more than the cash pays for, fees
included. Kelly sizing uses ``fraction`` until 10 trades have closed. An entry that cannot be
sized (below one lot or min_notional, no ATR yet, Kelly fraction 0) is skipped and counted in
the metric ``skipped_orders``; an unfilled limit simply expires. No leverage and no margin
calls: a short's proceeds are held as cash and its equity is cash - units * close, which a
runaway short can drive below zero.

Equity is marked to market at each bar's close: cash + units * close (long) or cash - units *
close (short). Metrics: :mod:`.metrics`.
"""

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from apps.backtests.engine.costs import fee_for, fill_price, slippage_code
from apps.backtests.engine.fills import no_atr, simulate
from apps.backtests.engine.metrics import METRIC_KEYS, bar_seconds_of, compute_metrics, span_seconds_of
from apps.backtests.engine.result import BacktestResult, trades_frame
from apps.backtests.engine.settings import EngineSettings, InvalidSettingsError
from apps.backtests.engine.sizing import sizing_code
from apps.common.errors import ValidationFailed
from apps.marketdata.indicators import atr as atr_indicator
from apps.marketdata.timeframes import TIMEFRAMES
from apps.strategies.base import CANDLE_COLUMNS, Strategy, signals

__all__ = [
    "METRIC_KEYS",
    "BacktestResult",
    "EngineSettings",
    "InvalidCandlesError",
    "InvalidSettingsError",
    "backtest_metrics",
    "fee_for",
    "fill_price",
    "run_backtest",
    "warm_up",
]

Progress = Callable[[float], None]


class InvalidCandlesError(ValidationFailed):
    """The candles cannot be backtested: none, missing columns, unsorted, or NaN prices."""

    default_code = "invalid_candles"

    def __init__(self, reason: str):
        super().__init__(reason, extra={"fields": {"candles": [reason]}})


def resolve_settings(
    settings: EngineSettings | Mapping[str, Any] | None,
    *,
    cash: float | None = None,
    fee: float | None = None,
    fill: str | None = None,
    **overrides: Any,
) -> EngineSettings:
    """Settings from an EngineSettings or a dict, with the shortcuts (cash, fee, fill) and any
    other top-level overrides (``allow_short=False``, ``exits={"stop_loss": 0.02}``) applied
    and everything validated. Raises InvalidSettingsError naming the field."""
    base = settings if isinstance(settings, EngineSettings) else EngineSettings.from_dict(settings)
    changes: dict[str, Any] = dict(overrides)
    if cash is not None:
        changes["cash"] = cash
    if fill is not None:
        changes["fill"] = fill
    if fee is not None:
        costs = changes.get("costs")
        changes["costs"] = {**(costs if isinstance(costs, Mapping) else {}), "fee": fee}
    return base.merged(changes) if changes else base


def _arrays(candles: pd.DataFrame) -> list[np.ndarray]:
    if not isinstance(candles, pd.DataFrame) or not isinstance(candles.index, pd.DatetimeIndex):
        raise InvalidCandlesError("Candles must be a DataFrame indexed by open time.")
    missing = [c for c in CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise InvalidCandlesError(f"Candles lack the column(s) {', '.join(missing)}.")
    if len(candles) == 0:
        raise InvalidCandlesError("There are no candles to backtest.")
    if not candles.index.is_monotonic_increasing:
        raise InvalidCandlesError("Candles must be sorted by open time.")
    arrays = [np.ascontiguousarray(candles[c].to_numpy(dtype=np.float64)) for c in CANDLE_COLUMNS]
    if _has_nan(arrays[0], arrays[1], arrays[2], arrays[3]):
        raise InvalidCandlesError("Candles have missing (NaN) prices.")
    return arrays


@njit(cache=True)
def _has_nan(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> bool:
    for i in range(c.shape[0]):  # noqa: SIM110 - numba: an early-exit scan, no generator
        if o[i] != o[i] or h[i] != h[i] or lo[i] != lo[i] or c[i] != c[i]:
            return True
    return False


def _run(
    strategy: Strategy,
    candles: pd.DataFrame,
    settings: EngineSettings,
    progress: Progress | None,
    drawdown_out: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, Any]]:
    o, h, lo, c, v = _arrays(candles)
    if settings.timeframe is not None and strategy.timeframe is None:
        strategy.timeframe = settings.timeframe
    frame = signals(strategy, candles)
    if progress is not None:
        progress(0.4)
    sz, costs, exits, inst = settings.sizing, settings.costs, settings.exits, settings.instrument
    needs_atr = sz.mode == "risk_per_trade" and exits.stop_loss is None
    atr = (
        atr_indicator(candles["high"], candles["low"], candles["close"], sz.atr_period).to_numpy(dtype=np.float64)
        if needs_atr
        else no_atr()
    )
    equity, trades, skipped = simulate(
        o, h, lo, c, v,
        frame["enter_long"].to_numpy(), frame["exit_long"].to_numpy(),
        frame["enter_short"].to_numpy(), frame["exit_short"].to_numpy(),
        frame["stop_price"].to_numpy(), frame["target_price"].to_numpy(), atr,
        float(settings.cash), settings.fill == "close", settings.entry == "limit", float(settings.limit_offset),
        bool(settings.allow_short),
        float(costs.taker_rate), float(costs.maker_rate), float(costs.fee_fixed),
        slippage_code(costs.slippage), float(costs.slippage_bps), float(costs.impact),
        sizing_code(sz.mode), float(sz.fraction), float(sz.amount), float(sz.risk), float(sz.atr_multiple),
        float(sz.kelly_cap),
        float(exits.stop_loss or 0.0), float(exits.take_profit or 0.0), float(exits.trailing_stop or 0.0),
        float(exits.breakeven_after or 0.0), int(exits.time_exit_bars or 0),
        float(inst.lot_size or 0.0), float(inst.min_notional or 0.0), float(inst.tick_size or 0.0),
    )  # fmt: skip
    if progress is not None:
        progress(0.8)
    bar_seconds = float(TIMEFRAMES[settings.timeframe]) if settings.timeframe else bar_seconds_of(candles.index)
    metrics = compute_metrics(
        equity=equity,
        trades=trades,
        cash=float(settings.cash),
        first_close=float(c[0]),
        last_close=float(c[-1]),
        bar_seconds=bar_seconds,
        span_seconds=span_seconds_of(pd.DatetimeIndex(candles.index), bar_seconds),
        skipped_orders=skipped,
        drawdown_out=drawdown_out,
    )
    return frame, equity, trades, metrics


def run_backtest(
    strategy: Strategy,
    candles: pd.DataFrame,
    *,
    cash: float | None = None,
    fee: float | None = None,
    fill: str | None = None,
    settings: EngineSettings | Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> BacktestResult:
    """Backtest ``strategy`` over ``candles`` (a frame indexed by aware-UTC open time, sorted,
    with float columns open/high/low/close/volume, already in memory).

    ``settings`` (an EngineSettings or a dict for :meth:`EngineSettings.from_dict`) defaults to
    cash 10,000, fee 0.1 %, next-open fills; ``cash``, ``fee``, ``fill`` and any top-level key
    as a keyword (``allow_short=False``, ``exits={...}``) override it. ``progress(fraction)``
    is called a few times (0.4, 0.8, 1.0). Sets ``strategy.timeframe`` from the settings when
    the strategy has none.

    Raises InvalidSettingsError (a setting, named), InvalidCandlesError, StrategyComputeError
    (the strategy raised or broke its contract). Pure: no I/O, no Django.
    """
    started = time.perf_counter()
    resolved = resolve_settings(settings, cash=cash, fee=fee, fill=fill, **overrides)
    drawdown = np.empty(len(candles))
    frame, equity, trades, metrics = _run(strategy, candles, resolved, progress, drawdown)
    index = candles.index
    closes = candles["close"].to_numpy(dtype=np.float64)
    result = BacktestResult(
        metrics=metrics,
        trades=trades_frame(trades, pd.DatetimeIndex(index)),
        equity=pd.Series(equity, index=index, name="equity"),
        drawdown=pd.Series(drawdown, index=index, name="drawdown"),
        benchmark=pd.Series(resolved.cash * closes / closes[0], index=index, name="benchmark"),
        signals=frame,
        settings=resolved,
        duration_ms=0.0,
    )
    result = dataclasses.replace(result, duration_ms=(time.perf_counter() - started) * 1000.0)
    if progress is not None:
        progress(1.0)
    return result


def warm_up() -> float:
    """Compile (first run) or load from numba's cache every kernel of the engine, so that the
    first backtest of a worker is not seconds late. Call at worker start; returns the seconds it
    took. Pure and cheap once cached (tens of milliseconds)."""
    started = time.perf_counter()
    n = 64
    rng = np.random.default_rng(0)
    close = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    o, h, lo, v = close.copy(), close + 1.0, close - 1.0, np.full(n, 1000.0)
    el, xl, es, xs = (rng.random(n) < 0.2 for _ in range(4))
    _has_nan(o, h, lo, close)
    equity, trades, skipped = simulate(
        o, h, lo, close, v, el, xl, es, xs, np.full(n, np.nan), np.full(n, np.nan), np.empty(0),
        10_000.0, False, False, 0.0, True, 0.001, 0.001, 0.0, 0, 0.0, 0.1, 0, 1.0, 1000.0, 0.01, 2.0, 0.25,
        0.02, 0.03, 0.01, 0.01, 5, 0.0, 0.0, 0.0,
    )  # fmt: skip
    compute_metrics(
        equity=equity,
        trades=trades,
        cash=10_000.0,
        first_close=float(close[0]),
        last_close=float(close[-1]),
        bar_seconds=60.0,
        span_seconds=60.0 * n,
        skipped_orders=skipped,
        drawdown_out=np.empty(n),
    )
    costs = EngineSettings().costs
    fill_price(1, 100.0, 1.0, 10.0, 1.0, costs, 0.01)
    fee_for(100.0, False, costs)
    return time.perf_counter() - started


def backtest_metrics(
    strategy: Strategy, candles: pd.DataFrame, settings: EngineSettings | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The metrics of :func:`run_backtest` alone, without building the trades, equity or
    drawdown frames: the optimiser's fast path (called ~1000 times per study). Same rules,
    same errors."""
    resolved = settings if isinstance(settings, EngineSettings) else EngineSettings.from_dict(settings)
    return _run(strategy, candles, resolved, None)[3]
