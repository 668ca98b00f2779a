"""Metrics against independent numpy/pandas formulas (the definitions in engine/metrics.py)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from apps.backtests.engine import METRIC_KEYS, run_backtest
from apps.backtests.engine.metrics import drawdown_series
from apps.strategies.registry import get_strategy
from tests.backtests.engine.support import Scripted, flat, frame
from tests.marketdata.ohlcv import load_candles


def longest_run(flags: pd.Series) -> int:
    groups = (~flags).cumsum()
    runs = flags.groupby(groups).sum()
    return int(runs.max()) if len(runs) else 0


def independent_metrics(result, candles: pd.DataFrame, cash: float, periods_per_year: float) -> dict:
    equity = result.equity
    r = equity.pct_change()
    r.iloc[0] = equity.iloc[0] / cash - 1
    peak = equity.cummax().clip(lower=cash)
    drawdown = equity / peak - 1
    final = equity.iloc[-1]
    bar = pd.Timedelta(days=365) / periods_per_year
    years = (equity.index[-1] - equity.index[0] + bar) / pd.Timedelta(days=365.25)
    cagr = (final / cash) ** (1 / years) - 1
    max_dd = -drawdown.min()
    pnl = result.trades["pnl"]
    in_market = pd.Series(False, index=candles.index)
    for trade in result.trades.itertuples():
        in_market.loc[(in_market.index >= trade.entry_at) & (in_market.index < trade.exit_at)] = True
    return {
        "final_equity": final,
        "total_return": final / cash - 1,
        "cagr": cagr,
        "volatility": r.std(ddof=1) * math.sqrt(periods_per_year),
        "sharpe": r.mean() / r.std(ddof=1) * math.sqrt(periods_per_year),
        "sortino": r.mean() / math.sqrt((r.clip(upper=0) ** 2).mean()) * math.sqrt(periods_per_year),
        "calmar": cagr / max_dd,
        "max_drawdown": max_dd,
        "max_drawdown_duration": longest_run(equity < peak),
        "win_rate": (pnl > 0).mean(),
        "profit_factor": pnl[pnl > 0].sum() / -pnl[pnl < 0].sum(),
        "expectancy": pnl.mean(),
        "avg_win": pnl[pnl > 0].mean(),
        "avg_loss": pnl[pnl < 0].mean(),
        "exposure": in_market.mean(),
        "trades": len(pnl),
        "ulcer_index": math.sqrt((drawdown**2).mean()),
        "recovery_factor": (final - cash) / (peak - equity).max(),
        "buy_and_hold_return": candles["close"].iloc[-1] / candles["close"].iloc[0] - 1,
        "skipped_orders": 0,
    }


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"fill": "close", "exits": {"stop_loss": 0.02, "take_profit": 0.04}},
        {"exits": {"trailing_stop": 0.02}, "costs": {"slippage": "fixed_bps", "slippage_bps": 5}},
    ],
)
def test_metrics_match_independent_formulas(settings):
    # given the registered SMA cross, long and short, on real hourly candles
    candles = load_candles("BTC-USDT_1h")
    result = run_backtest(get_strategy("sma_cross", fast=10, slow=30, short=True), candles, settings=settings)
    expected = independent_metrics(result, candles, 10_000.0, 365 * 24)
    assert list(result.metrics) == list(METRIC_KEYS)
    for key in METRIC_KEYS:
        want = expected[key]
        assert result.metrics[key] == pytest.approx(want, rel=1e-9), key
    assert result.metrics["trades"] > 50


def test_drawdown_and_benchmark_series():
    candles = load_candles("ETH-USDT_1h")
    result = run_backtest(get_strategy("sma_cross", fast=20, slow=50), candles)
    peak = np.maximum(result.equity.cummax(), 10_000.0)
    np.testing.assert_allclose(result.drawdown.to_numpy(), (result.equity / peak - 1).to_numpy(), rtol=1e-12)
    assert (result.drawdown <= 0).all()
    np.testing.assert_allclose(result.benchmark.to_numpy(), 10_000 * candles["close"] / candles["close"].iloc[0])
    np.testing.assert_allclose(drawdown_series(result.equity.to_numpy(), 10_000.0), result.drawdown.to_numpy())


def test_annualisation_follows_the_bar_spacing():
    candles = load_candles("BTC-USDT_1h")
    strategy = get_strategy("sma_cross", fast=10, slow=30)
    inferred = run_backtest(strategy, candles).metrics
    hourly = run_backtest(strategy, candles, timeframe="1h").metrics
    daily = run_backtest(strategy, candles, timeframe="1d").metrics
    assert inferred["sharpe"] == pytest.approx(hourly["sharpe"], rel=1e-12)
    assert hourly["sharpe"] / daily["sharpe"] == pytest.approx(math.sqrt(24), rel=1e-12)
    assert hourly["volatility"] / daily["volatility"] == pytest.approx(math.sqrt(24), rel=1e-12)
    # gaps in the data do not change the inferred spacing (the median)
    gappy = candles.drop(candles.index[100:400])
    assert run_backtest(strategy, gappy).metrics["sharpe"] == pytest.approx(
        run_backtest(strategy, gappy, timeframe="1h").metrics["sharpe"], rel=1e-12
    )


def test_cagr_follows_the_calendar_on_business_day_bars():
    # given: one calendar year of weekday candles (260 bars) rising 10 % with a dip, held long
    index = pd.bdate_range("2023-01-02", "2023-12-29", tz="UTC", name="timestamp")
    close = np.linspace(100.0, 110.0, len(index))
    close[120:140] *= 0.95
    candles = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)
    strategy = Scripted(enter_long={0})

    # when
    result = run_backtest(strategy, candles, fee=0.0, timeframe="1d")
    metrics = result.metrics

    # then: growth is annualised over the 362 days from 2 Jan 00:00 to 30 Dec 00:00, not over
    # 260 bars' worth of days (which gave 0.1425)
    growth = metrics["final_equity"] / 10_000
    assert len(index) == 260
    assert metrics["cagr"] == pytest.approx(growth ** (365.25 / 362) - 1, rel=1e-12)
    assert metrics["cagr"] == pytest.approx(0.1005, abs=1e-4)
    assert metrics["calmar"] == pytest.approx(metrics["cagr"] / metrics["max_drawdown"], rel=1e-12)
    assert run_backtest(strategy, candles, fee=0.0).metrics["cagr"] == metrics["cagr"]
    # per-bar figures stay annualised by bar count: 365 daily periods a year
    equity = result.equity.to_numpy()
    returns = equity / np.r_[10_000.0, equity[:-1]] - 1
    assert metrics["volatility"] == pytest.approx(np.std(returns, ddof=1) * math.sqrt(365), rel=1e-9)


def test_undefined_metrics_are_none_never_nan():
    # no trades on flat candles: ratios with a zero denominator are undefined
    metrics = run_backtest(Scripted(), flat(50)).metrics
    assert metrics["trades"] == 0 and metrics["final_equity"] == 10_000
    for key in ("sharpe", "sortino", "calmar", "win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss"):
        assert metrics[key] is None, key
    assert metrics["recovery_factor"] is None
    assert (metrics["max_drawdown"], metrics["exposure"], metrics["volatility"], metrics["cagr"]) == (0, 0, 0, 0)
    json.dumps(metrics, allow_nan=False)


def test_a_single_bar_has_no_annualised_figures():
    metrics = run_backtest(Scripted(), flat(1)).metrics
    assert metrics["cagr"] is None and metrics["sharpe"] is None and metrics["volatility"] is None
    json.dumps(metrics, allow_nan=False)


def test_only_winners_leave_profit_factor_and_avg_loss_undefined():
    result = run_backtest(
        Scripted(enter_long={0}, exit_long={2}),
        frame([(100, 100, 100, 100), (100, 100, 100, 100), (110, 110, 110, 110), (110, 110, 110, 110)]),
        fee=0.0,
    )
    metrics = result.metrics
    assert metrics["win_rate"] == 1.0 and metrics["profit_factor"] is None and metrics["avg_loss"] is None
    assert metrics["avg_win"] == pytest.approx(1000.0)
    json.dumps(metrics, allow_nan=False)


def test_a_wipe_out_reports_minus_one_cagr():
    candles = frame([(100, 100, 100, 100), (100, 100, 100, 100), (300, 300, 300, 300), (300, 300, 300, 300)])
    metrics = run_backtest(Scripted(enter_short={0}), candles, fee=0.0).metrics
    assert metrics["final_equity"] < 0 and metrics["cagr"] == -1.0
    json.dumps(metrics, allow_nan=False)
