"""run_backtest / backtest_metrics as a library: shapes, errors, progress, purity."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from apps.backtests.engine import (
    BacktestResult,
    EngineSettings,
    InvalidCandlesError,
    backtest_metrics,
    run_backtest,
)
from apps.strategies.errors import StrategyComputeError
from apps.strategies.registry import get_strategy
from tests.backtests.engine.support import Raises, Scripted, flat, random_signals
from tests.marketdata.ohlcv import load_candles

ROOT = Path(__file__).resolve().parents[3]


def test_result_has_the_documented_shape():
    candles = load_candles("BTC-USDT_1h")
    result = run_backtest(get_strategy("sma_cross", fast=10, slow=30), candles, cash=10_000, fee=0.001)
    assert isinstance(result, BacktestResult)
    assert list(result.trades.columns) == [
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
    ]
    assert str(result.trades["entry_at"].dt.tz) == "UTC"
    assert (result.trades["exit_at"] > result.trades["entry_at"]).all()
    for series in (result.equity, result.drawdown, result.benchmark):
        assert series.index.equals(candles.index) and series.dtype == np.float64
    assert list(result.signals.columns[:4]) == ["enter_long", "exit_long", "enter_short", "exit_short"]
    assert result.settings == EngineSettings()
    assert result.duration_ms > 0
    assert result.metrics["trades"] == len(result.trades)


def test_sma_cross_trades_the_bar_after_each_cross():
    # given the registered strategy and crosses computed here with pandas
    candles = load_candles("ETH-USDT_1h")
    result = run_backtest(get_strategy("sma_cross", fast=10, slow=30), candles)
    fast = candles["close"].rolling(10).mean()
    slow = candles["close"].rolling(30).mean()
    above = fast > slow
    up = above & ~above.shift(1, fill_value=False) & slow.shift(1).notna()
    down = ~above & above.shift(1, fill_value=False)
    position = pd.Series(np.arange(len(candles)), index=candles.index)
    entries = position[up].to_numpy() + 1
    entries = entries[entries < len(candles)]
    # then every trade enters on the bar after an up-cross and leaves on the bar after a down-cross
    assert len(result.trades) == len(entries) > 50
    assert (position[result.trades["entry_at"]].to_numpy() == entries).all()
    signal_exits = result.trades[result.trades["exit_reason"] == "signal"]
    assert set(position[signal_exits["exit_at"]].to_numpy() - 1) <= set(position[down].to_numpy())
    assert (result.trades["entry_price"].to_numpy() == candles["open"].loc[result.trades["entry_at"]].to_numpy()).all()


@pytest.mark.parametrize(
    "settings",
    [{}, {"fill": "close", "entry": "limit", "exits": {"trailing_stop": 0.01}}, {"sizing": {"mode": "kelly"}}],
)
def test_backtest_metrics_equals_run_backtest(settings):
    candles = load_candles("SOL-USDT_1h")
    strategy = Scripted(**random_signals(len(candles), seed=3))
    assert backtest_metrics(strategy, candles, settings) == run_backtest(strategy, candles, settings=settings).metrics
    assert backtest_metrics(strategy, candles, EngineSettings.from_dict(settings)) == backtest_metrics(
        strategy, candles, settings
    )


def test_progress_is_reported_up_to_one():
    seen: list[float] = []
    run_backtest(Scripted(enter_long={1}), flat(10), progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 3


def test_a_strategy_that_raises_is_a_strategy_compute_error():
    with pytest.raises(StrategyComputeError, match="ZeroDivisionError"):
        run_backtest(Raises(), flat(5))
    with pytest.raises(StrategyComputeError):
        backtest_metrics(Raises(), flat(5))


@pytest.mark.parametrize(
    ("candles", "message"),
    [
        (flat(0), "no candles"),
        (flat(5).drop(columns=["volume"]), "volume"),
        (flat(5).iloc[::-1], "sorted"),
        (flat(5).assign(close=[100, np.nan, 100, 100, 100]), "NaN"),
        (flat(5).reset_index(drop=True), "indexed by open time"),
    ],
)
def test_unusable_candles_are_refused(candles, message):
    with pytest.raises(InvalidCandlesError, match=message) as caught:
        run_backtest(Scripted(), candles)
    assert "candles" in caught.value.extra["fields"]


def test_the_settings_timeframe_reaches_the_strategy():
    strategy = Scripted()
    run_backtest(strategy, flat(3), timeframe="4h")
    assert strategy.timeframe == "4h"


def test_the_engine_imports_no_django():
    code = (
        "import sys; import apps.backtests.engine; "
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_warm_up_runs_every_kernel():
    from apps.backtests.engine import warm_up

    assert warm_up() >= 0.0
