"""What a backtest returns, built once from the loop's arrays (no pandas in the loop)."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from apps.backtests.engine.fills import exit_reason_names
from apps.backtests.engine.settings import EngineSettings

TRADE_FRAME_COLUMNS = (
    "side",
    "entry_at",
    "entry_price",
    "exit_at",
    "exit_price",
    "size",
    "fees",
    "pnl",
    "return_pct",
    "bars_held",
    "exit_reason",
)


@dataclass(frozen=True)
class BacktestResult:
    """The outcome of :func:`apps.backtests.engine.run_backtest`.

    - ``metrics``: the dict of :mod:`apps.backtests.engine.metrics` (floats or None; ``trades``,
      ``max_drawdown_duration`` and ``skipped_orders`` are ints).
    - ``trades``: one row per closed trade, columns ``side`` ("long"/"short"), ``entry_at``,
      ``entry_price``, ``exit_at``, ``exit_price``, ``size`` (units, > 0), ``fees`` (entry +
      exit, quote currency), ``pnl`` (net of fees), ``return_pct`` (pnl / entry notional as a
      fraction: 0.01 = 1 %), ``bars_held`` (exit bar - entry bar), ``exit_reason`` (signal,
      stop, target, trailing, breakeven, time, end).
    - ``equity``: mark-to-market equity at each bar's close; ``drawdown``: <= 0 fractions;
      ``benchmark``: buy-and-hold equity (the cash bought at the first close, no fees), all on
      the candles' index.
    - ``signals``: the strategy's normalised signals; ``settings``: what was run;
      ``duration_ms``: engine time (signals + fills + metrics + these frames).
    """

    metrics: dict[str, Any]
    trades: pd.DataFrame
    equity: pd.Series
    drawdown: pd.Series
    benchmark: pd.Series
    signals: pd.DataFrame
    settings: EngineSettings
    duration_ms: float


def trades_frame(trades: np.ndarray, index: pd.DatetimeIndex) -> pd.DataFrame:
    """The trades matrix of the loop as the documented DataFrame (one row per trade)."""
    entry_idx = trades[:, 0].astype(np.int64)
    exit_idx = trades[:, 1].astype(np.int64)
    return pd.DataFrame(
        {
            "side": np.where(trades[:, 2] > 0, "long", "short").astype(object),
            "entry_at": index.take(entry_idx),
            "entry_price": trades[:, 3],
            "exit_at": index.take(exit_idx),
            "exit_price": trades[:, 4],
            "size": trades[:, 5],
            "fees": trades[:, 6],
            "pnl": trades[:, 7],
            "return_pct": trades[:, 8],
            "bars_held": exit_idx - entry_idx,
            "exit_reason": exit_reason_names(trades[:, 9]),
        },
        columns=list(TRADE_FRAME_COLUMNS),
    )
