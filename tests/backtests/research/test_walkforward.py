"""Walk-forward: window geometry, no peeking at test windows, stitching, degradation, output."""

import itertools
import json
from collections import Counter
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.backtests.engine import run_backtest
from apps.backtests.research.errors import ResearchInputError
from apps.backtests.research.walkforward import MIN_WINDOW_BARS, walk_forward, walk_forward_warmup, windows
from apps.strategies.registry import get_strategy
from tests.backtests.research.strategies import AlwaysIn, trend_candles
from tests.marketdata.ohlcv import load_candles

CASH = 10_000.0
SETTINGS = {"cash": CASH, "costs": {"fee": 0.001}}


@settings(max_examples=300, deadline=None)
@given(
    bars=st.integers(0, 5_000),
    count=st.integers(1, 12),
    ratio=st.floats(0.05, 0.95),
    warmup=st.integers(0, 400),
    mode=st.sampled_from(["rolling", "anchored"]),
)
def test_windows_properties(bars, count, ratio, warmup, mode):
    try:
        cuts = windows(range(bars), mode=mode, windows_count=count, train_ratio=ratio, warmup=warmup)
    except ResearchInputError as exc:
        assert exc.field == "windows_count"
        # refused only when the bars cannot hold the windows: the shortest test length t meeting
        # both minimums (train = t * ratio / (1 - ratio)) needs count * t + train bars
        shortest = max(MIN_WINDOW_BARS, MIN_WINDOW_BARS * (1 - ratio) / ratio)
        needed = count * shortest + shortest * ratio / (1 - ratio)
        assert bars - warmup < needed + count + 2
        return
    assert len(cuts) == count
    assert [w.number for w in cuts] == list(range(count))
    assert cuts[-1].test_end == bars
    assert cuts[0].train_start == warmup
    for window in cuts:
        assert warmup <= window.train_start < window.train_end == window.test_start < window.test_end <= bars
        assert window.train_bars >= MIN_WINDOW_BARS and window.test_bars >= MIN_WINDOW_BARS
    for before, after in itertools.pairwise(cuts):
        assert after.test_start == before.test_end  # contiguous, no overlap
    assert len({w.test_bars for w in cuts}) == 1
    if mode == "rolling":
        assert len({w.train_bars for w in cuts}) == 1
    else:
        assert all(w.train_start == warmup for w in cuts)
        assert cuts[0].train_bars == bars - warmup - count * cuts[0].test_bars
    # the share of train in a rolling window is the ratio asked for, to within rounding
    first = cuts[0]
    assert (
        abs(first.train_bars / (first.train_bars + first.test_bars) - ratio)
        < (count + 1) / (first.train_bars + first.test_bars) + 1e-9
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "expanding"}, "mode"),
        ({"windows_count": 0}, "windows_count"),
        ({"windows_count": 51}, "windows_count"),
        ({"train_ratio": 1.0}, "train_ratio"),
        ({"train_ratio": 0}, "train_ratio"),
        ({"windows_count": 50}, "windows_count"),
    ],
)
def test_windows_refusals_name_the_field(kwargs, field):
    with pytest.raises(ResearchInputError) as caught:
        windows(range(500), **{"mode": "rolling", "windows_count": 4, "train_ratio": 0.7, **kwargs})
    assert caught.value.field == field


def regime_candles() -> pd.DataFrame:
    # 350 bars: rising 150, falling 100, rising 100. With 2 windows at train_ratio 0.6 the windows are
    # train [0,150) test [150,250), then train [100,250) test [250,350): each test regime is the
    # opposite of what its train window rewards.
    return trend_candles([(150, 1.01), (100, 0.99), (100, 1.01)])


def test_optimisation_never_sees_the_test_window():
    candles = regime_candles()
    AlwaysIn.seen.clear()
    frames: list[tuple[int, int]] = []
    original = AlwaysIn.compute

    def spy(self, frame):
        frames.append((candles.index.get_loc(frame.index[0]), candles.index.get_loc(frame.index[-1])))
        return original(self, frame)

    AlwaysIn.compute = spy  # type: ignore[method-assign]
    try:
        result = walk_forward(
            strategy_key="test_research_always_in",
            candles=candles,
            settings=SETTINGS,
            windows_count=2,
            train_ratio=0.6,
            objective="total_return",
            space={"side": {}},
        )
    finally:
        AlwaysIn.compute = original  # type: ignore[method-assign]
    # then: two trials on each train window, one run on each test window, nothing more
    assert Counter(frames) == Counter({(0, 149): 2, (150, 249): 1, (100, 249): 2, (250, 349): 1})
    # and the picks are what the train windows alone reward, the opposite of the test windows
    picks = [w.best.params["side"] if w.best else None for w in result.windows]
    assert picks == ["long", "short"]
    for window, pick in zip(result.windows, picks, strict=True):
        test = candles.iloc[window.window.test_start : window.window.test_end]
        returns = {
            side: run_backtest(get_strategy("test_research_always_in", side=side), test, settings=SETTINGS).metrics[
                "total_return"
            ]
            for side in ("long", "short")
        }
        assert max(returns, key=lambda side: returns[side]) != pick
        assert window.oos_metrics["total_return"] == pytest.approx(returns[pick], rel=1e-12)
        assert window.oos_metrics["total_return"] < 0 < window.is_metrics["total_return"]


def test_test_runs_see_their_warm_up_but_trade_only_inside_the_window():
    candles = regime_candles()
    frames: list[tuple[int, int]] = []
    original = AlwaysIn.compute

    def spy(self, frame):
        frames.append((candles.index.get_loc(frame.index[0]), candles.index.get_loc(frame.index[-1])))
        return original(self, frame)

    AlwaysIn.compute = spy  # type: ignore[method-assign]
    try:
        result = walk_forward(
            strategy_key="test_research_always_in",
            candles=candles,
            settings=SETTINGS,
            windows_count=2,
            train_ratio=0.6,
            objective="total_return",
            space={"side": {}},
            base_params={"lag": 4},
        )
    finally:
        AlwaysIn.compute = original  # type: ignore[method-assign]
    cuts = [w.window for w in result.windows]
    assert cuts[0].train_start == 4  # the warm-up is history only
    for cut in cuts:
        assert (cut.train_start - 4, cut.train_end - 1) in frames
        assert (cut.test_start - 4, cut.test_end - 1) in frames
    for window in result.windows:
        trades = window.oos_trades
        assert len(trades) == 1
        assert trades["entry_at"].iloc[0] > candles.index[window.window.test_start]
        assert trades["exit_at"].iloc[0] == candles.index[window.window.test_end - 1]


@pytest.fixture(scope="module")
def btc_walk_forward():
    candles = load_candles("BTC-USDT_1h")
    result = walk_forward(
        strategy_key="sma_cross",
        candles=candles,
        settings=SETTINGS,
        mode="anchored",
        windows_count=3,
        train_ratio=0.5,
        space={"fast": {"low": 5, "high": 25, "step": 10}, "slow": {"low": 40, "high": 120, "step": 40}},
        min_trades=2,
    )
    return candles, result


def test_stitched_equity_compounds_each_window_from_the_last(btc_walk_forward):
    candles, result = btc_walk_forward
    cash = CASH
    cuts = [w.window for w in result.windows]
    # the stitched curve covers the test windows exactly, once each, in order
    assert result.equity.index.equals(candles.index[cuts[0].test_start : cuts[-1].test_end])
    level = cash
    for window in result.windows:
        part = result.equity.loc[window.oos_equity.index]
        np.testing.assert_allclose(part.to_numpy(), window.oos_equity.to_numpy() * level / cash, rtol=1e-12)
        level *= window.oos_metrics["final_equity"] / cash
    assert result.equity.iloc[-1] == pytest.approx(level, rel=1e-12)
    assert result.metrics["final_equity"] == pytest.approx(level, rel=1e-12)
    assert result.metrics["total_return"] == pytest.approx(level / cash - 1, rel=1e-9)
    assert result.metrics["trades"] == sum(w.oos_metrics["trades"] for w in result.windows) == len(result.trades)
    assert (result.drawdown <= 0).all()
    assert result.drawdown.min() == pytest.approx(-result.metrics["max_drawdown"], rel=1e-12)


def test_degradation_compares_annualised_returns(btc_walk_forward):
    _, result = btc_walk_forward
    bars_per_year = 365 * 24  # hourly candles
    is_returns = [w.is_metrics["total_return"] * bars_per_year / w.window.train_bars for w in result.windows]
    oos_returns = [w.oos_metrics["total_return"] * bars_per_year / w.window.test_bars for w in result.windows]
    degradation = result.degradation
    assert degradation["is_annualised_return"] == pytest.approx(sum(is_returns) / 3, rel=1e-9)
    assert degradation["oos_annualised_return"] == pytest.approx(sum(oos_returns) / 3, rel=1e-9)
    expected = degradation["oos_annualised_return"] / degradation["is_annualised_return"]
    assert degradation["walk_forward_efficiency"] == (
        pytest.approx(expected, rel=1e-9) if degradation["is_annualised_return"] > 0 else None
    )
    is_objective = sum(w.is_value for w in result.windows) / 3
    oos_objective = sum(w.oos_metrics["sharpe"] for w in result.windows) / 3
    assert degradation["objective_ratio"] == pytest.approx(oos_objective / is_objective, rel=1e-9)
    assert degradation["windows_traded"] == 3
    for window in result.windows:
        # in-sample is the best trial of its train window: no other trial beats it there
        assert window.is_value == window.best.value == window.is_metrics["sharpe"]
        assert window.trials == 3 * 3 and window.feasible_trials <= window.trials


def test_as_dict_is_json_safe_with_iso_times(btc_walk_forward):
    _, result = btc_walk_forward
    data = result.as_dict(max_points=500)
    json.dumps(data, allow_nan=False)
    for window in data["windows"]:
        starts = [datetime.fromisoformat(window[key]) for key in ("train_from", "train_to", "test_from", "test_to")]
        assert starts == sorted(starts) and all(s.utcoffset() is not None for s in starts)
        assert window["best_params"]["fast"] < window["best_params"]["slow"]
    equity = data["equity"]
    assert len(equity["t"]) <= 501 and len(equity["t"]) == len(equity["equity"]) == len(equity["drawdown"])
    assert equity["t"] == sorted(equity["t"])
    assert equity["t"][-1] == result.equity.index[-1].value // 1_000_000
    assert equity["equity"][-1] == result.equity.iloc[-1]
    assert data["metrics"]["trades"] == result.metrics["trades"]


def test_a_window_without_feasible_params_stays_out_of_the_market():
    candles = regime_candles()
    result = walk_forward(
        strategy_key="test_research_always_in",
        candles=candles,
        settings=SETTINGS,
        windows_count=2,
        train_ratio=0.6,
        objective="total_return",
        space={"side": {}},
        min_trades=5,
    )
    assert all(w.best is None and w.feasible_trials == 0 for w in result.windows)
    assert (result.equity == CASH).all()
    assert result.metrics["trades"] == 0 and result.metrics["total_return"] == 0
    assert result.degradation["walk_forward_efficiency"] is None
    assert result.degradation["windows_traded"] == 0
    json.dumps(result.as_dict(), allow_nan=False)


def test_tpe_walk_forward_is_reproducible_and_reports_progress():
    candles = trend_candles([(400, 1.002), (200, 0.998), (400, 1.001)])
    noise = np.random.default_rng(3).normal(0, 0.004, len(candles))
    candles[["open", "high", "low", "close"]] = candles[["open", "high", "low", "close"]].mul(
        np.exp(np.cumsum(noise)), axis=0
    )
    seen: list[float] = []
    runs = [
        walk_forward(
            strategy_key="sma_cross",
            candles=candles,
            settings=SETTINGS,
            windows_count=3,
            method="tpe",
            n_trials=8,
            seed=21,
            space={"fast": {"low": 3, "high": 20}, "slow": {"low": 25, "high": 80}},
            progress=seen.append if not index else None,
        )
        for index in range(2)
    ]
    assert [w.best.params if w.best else None for w in runs[0].windows] == [
        w.best.params if w.best else None for w in runs[1].windows
    ]
    assert runs[0].as_dict() == runs[1].as_dict()
    assert seen[-1] == 1.0 and seen == sorted(seen) and all(0 <= f <= 1 for f in seen)
    assert all(w.trials == 8 for w in runs[0].windows)


def test_walk_forward_refusals_name_the_field():
    candles = regime_candles()
    for kwargs, field in (
        ({"objective": "alpha"}, "objective"),
        ({"windows_count": 40}, "windows_count"),
        ({"method": "random"}, "method"),
        ({"space": {"side": {"choices": ["sideways"]}}}, "space.side.choices"),
    ):
        with pytest.raises(ResearchInputError) as caught:
            walk_forward(strategy_key="test_research_always_in", candles=candles, settings=SETTINGS, **kwargs)
        assert caught.value.field == field, kwargs


def test_walk_forward_warmup_is_the_history_kept_before_the_first_window():
    # sma_cross warms up for `slow` bars: the widest slow of the space, or the base params'
    assert walk_forward_warmup(strategy_key="sma_cross", space={"slow": {"low": 40, "high": 90}}) == 90
    assert (
        walk_forward_warmup(strategy_key="sma_cross", space={"fast": {"low": 3, "high": 9}}, base_params={"slow": 77})
        == 77
    )
    candles = regime_candles()
    result = walk_forward(
        strategy_key="test_research_always_in",
        candles=candles,
        settings=SETTINGS,
        windows_count=2,
        train_ratio=0.6,
        objective="total_return",
        space={"lag": {"low": 1, "high": 3}},
    )
    assert walk_forward_warmup(strategy_key="test_research_always_in", space={"lag": {"low": 1, "high": 3}}) == 3
    assert result.windows[0].window.train_start == 3
