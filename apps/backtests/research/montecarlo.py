"""Monte Carlo of a backtest's trades: how lucky was the order, and how lucky were the trades?

Input is each trade's return on the account's equity at its entry, in order (see
:func:`trade_equity_returns`: with non-overlapping trades, compounding these from the starting
cash reproduces the backtest's final equity). Each simulation draws a sequence of as many trades:

- ``reshuffle``: the same trades in a random order. The final equity is the same product in
  every simulation (noise aside); the path, and so the max drawdown, changes.
- ``resample``: trades drawn with replacement (a bootstrap). Final equity and drawdown both vary.

``noise`` adds Gaussian noise of that standard deviation to every drawn return (returns are
floored at -1: an account cannot lose more than everything). Equity paths start at ``cash`` and
compound; the max drawdown is measured on the trade-by-trade path, from the running peak
including the start. Everything is vectorised NumPy, in blocks of simulations to bound memory.
"""

import math
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from apps.backtests.research.errors import ResearchInputError

METHODS = ("resample", "reshuffle")
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
FAN_PERCENTILES = (5, 25, 50, 75, 95)
MAX_SIMULATIONS = 100_000
HISTOGRAM_BINS = 40
SAMPLE_PATHS = 20
FAN_STEPS = 100
# Elements per block of simulations x trades (8 bytes each: 4 MB per array, cache-friendly).
_BLOCK_ELEMENTS = 500_000

FloatArray = npt.NDArray[np.float64]


def trade_equity_returns(trades: pd.DataFrame, cash: float) -> FloatArray:
    """Each trade's P&L over the equity before it (``cash`` plus the P&L of the trades closed
    before it), in order of exit: the input :func:`monte_carlo` expects.

    Precondition: ``trades`` has ``pnl`` (and ``exit_at`` when trades may be listed out of order).
    """
    ordered = trades.sort_values("exit_at", kind="stable") if "exit_at" in trades else trades
    pnl = ordered["pnl"].to_numpy(dtype=np.float64)
    before = cash + np.concatenate([[0.0], np.cumsum(pnl)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(before > 0, pnl / before, -1.0)
    return returns


def monte_carlo(
    *,
    trade_returns: Sequence[float] | FloatArray,
    cash: float = 10_000.0,
    method: str = "resample",
    simulations: int = 5_000,
    noise: float = 0.0,
    seed: int | None = None,
    loss_threshold: float = 0.2,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Simulate ``simulations`` trade sequences and summarise them (JSON-safe dict).

    Keys: ``final_equity`` and ``max_drawdown`` (each: ``percentiles`` {"1".."99"}, ``mean``,
    ``std``, ``min``, ``max``, ``histogram`` {bins: edges, counts}), ``total_return`` (percentiles
    and mean), ``probability_of_loss`` (final equity below ``cash``),
    ``probability_of_loss_threshold`` (final equity at or below ``cash * (1 - loss_threshold)``),
    ``probability_of_drawdown_threshold`` (a max drawdown of at least ``loss_threshold``),
    ``original`` (the given order's final equity, total return, max drawdown and their percentile
    ranks among the simulations), ``fan`` (equity percentiles after each of up to 100 trade counts)
    and ``paths`` (a few simulated equity paths), plus the inputs and the ``seed`` used (drawn when
    None, so every run can be repeated).
    """
    returns = _check(trade_returns, cash, method, simulations, noise, loss_threshold)
    if seed is None:
        seed = secrets.randbits(63)
    rng = np.random.default_rng(seed)
    n = len(returns)
    steps = np.unique(np.linspace(0, n, min(n, FAN_STEPS) + 1).round().astype(np.int64))
    finals = np.empty(simulations)
    drawdowns = np.empty(simulations)
    fan = np.empty((simulations, len(steps)))
    block = max(1, _BLOCK_ELEMENTS // n)
    for first in range(0, simulations, block):
        rows = min(block, simulations - first)
        growth = _draw(rng, returns, rows, method, noise)
        growth += 1.0
        equity = np.cumprod(growth, axis=1, out=growth)
        equity *= cash
        finals[first : first + rows] = equity[:, -1]
        drawdowns[first : first + rows] = _max_drawdown(equity, cash)
        fan[first : first + rows] = np.concatenate([np.full((rows, 1), cash), equity], axis=1)[:, steps]
        if progress is not None:
            progress((first + rows) / simulations)
    original_equity = cash * np.cumprod(1.0 + returns)[None, :]
    original_final = float(original_equity[0, -1])
    original_drawdown = float(_max_drawdown(original_equity, cash)[0])
    threshold_equity = cash * (1.0 - loss_threshold)
    return {
        "method": method,
        "simulations": simulations,
        "trades": n,
        "cash": cash,
        "noise": noise,
        "seed": seed,
        "loss_threshold": loss_threshold,
        "final_equity": _distribution(finals),
        "max_drawdown": _distribution(drawdowns),
        "total_return": _summary(finals / cash - 1.0),
        "probability_of_loss": float(np.mean(finals < cash)),
        "probability_of_loss_threshold": float(np.mean(finals <= threshold_equity)),
        "probability_of_drawdown_threshold": float(np.mean(drawdowns >= loss_threshold)),
        "original": {
            "final_equity": _safe(original_final),
            "total_return": _safe(original_final / cash - 1.0),
            "max_drawdown": _safe(original_drawdown),
            "final_equity_percentile": float(np.mean(finals <= original_final) * 100.0),
            "max_drawdown_percentile": float(np.mean(drawdowns <= original_drawdown) * 100.0),
        },
        "fan": {
            "trade": steps.tolist(),
            **{f"p{p}": _safe_list(np.percentile(fan, p, axis=0)) for p in FAN_PERCENTILES},
        },
        "paths": {
            "trade": steps.tolist(),
            "equity": [_safe_list(row) for row in fan[: min(SAMPLE_PATHS, simulations)]],
        },
    }


def _check(
    trade_returns: Sequence[float] | FloatArray,
    cash: float,
    method: str,
    simulations: int,
    noise: float,
    loss_threshold: float,
) -> FloatArray:
    if method not in METHODS:
        raise ResearchInputError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.", field="method")
    if isinstance(simulations, bool) or not isinstance(simulations, int) or not 1 <= simulations <= MAX_SIMULATIONS:
        raise ResearchInputError(
            f"simulations must be a whole number from 1 to {MAX_SIMULATIONS:,}.", field="simulations"
        )
    if not _finite(noise) or noise < 0:
        raise ResearchInputError("noise must be a number, 0 or more.", field="noise")
    if not _finite(loss_threshold) or not 0 < loss_threshold <= 1:
        raise ResearchInputError("loss_threshold must be above 0 and at most 1.", field="loss_threshold")
    if not _finite(cash) or cash <= 0:
        raise ResearchInputError("cash must be a positive number.", field="cash")
    returns = np.asarray(trade_returns, dtype=np.float64).ravel()
    if returns.size == 0:
        raise ResearchInputError("The backtest made no trades: there is nothing to simulate.", field="backtest")
    if not np.all(np.isfinite(returns)):
        raise ResearchInputError("Every trade return must be a finite number.", field="trade_returns")
    return np.maximum(returns, -1.0)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _draw(rng: np.random.Generator, returns: FloatArray, rows: int, method: str, noise: float) -> FloatArray:
    n = len(returns)
    if method == "resample":
        drawn = returns[rng.integers(0, n, size=(rows, n))]
    else:
        drawn = rng.permuted(np.broadcast_to(returns, (rows, n)), axis=1)
    if noise > 0:
        drawn = np.maximum(drawn + rng.normal(0.0, noise, size=drawn.shape), -1.0)
    return drawn


def _max_drawdown(equity: FloatArray, cash: float) -> FloatArray:
    """Per row: the largest fall from a running peak (the start counts as a peak), as a fraction."""
    # Peaks are at least cash > 0, so the ratio is defined; worked in place to spare memory traffic.
    ratio = np.maximum.accumulate(equity, axis=1)
    np.maximum(ratio, cash, out=ratio)
    np.divide(equity, ratio, out=ratio)
    return np.asarray(1.0 - np.minimum(ratio.min(axis=1), 1.0), dtype=np.float64)


def _safe(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _safe_list(values: FloatArray) -> list[float | None]:
    return [_safe(float(v)) for v in values]


def _summary(values: FloatArray) -> dict[str, Any]:
    return {
        "percentiles": {
            str(p): _safe(float(v)) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True)
        },
        "mean": _safe(float(np.mean(values))),
    }


def _distribution(values: FloatArray) -> dict[str, Any]:
    low, high = float(np.min(values)), float(np.max(values))
    # Values equal up to rounding (a reshuffle's final equity): one bin's worth of range around them,
    # as NumPy does for exactly equal values, instead of bins narrower than the float spacing.
    span = (low - 0.5, low + 0.5) if high - low <= 1e-9 * max(abs(high), 1.0) else (low, high)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=span)
    return {
        **_summary(values),
        "std": _safe(float(np.std(values))),
        "min": _safe(low),
        "max": _safe(high),
        "histogram": {"bins": _safe_list(edges), "counts": counts.astype(int).tolist()},
    }
