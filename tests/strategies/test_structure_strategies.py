"""trendline_bounce, supply_demand_zone, fibonacci_retracement and multi_confluence: entries where
their documented rule holds on the structure columns, stops and targets from the structure, and a
known answer for the Fibonacci pullback. No database."""

import numpy as np
import pandas as pd
import pytest

from apps.marketdata import indicators as ta
from apps.strategies.registry import get_strategy
from tests.strategies.support import run, year_of


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return year_of("BTC-USD_4h", 2021)


def test_trendline_bounce_enters_on_bounces_off_strong_support_lines(candles):
    lines = ta.trendlines(candles, 5, 3, tolerance_atr=0.25, lookback=300)
    atr = ta.atr(candles["high"], candles["low"], candles["close"], 14)
    bounce = lines["bounce_support"].to_numpy(dtype=bool)
    strong = (lines["support_line_strength"] >= 2.0).to_numpy()
    exits = (lines["breakout_down"] | lines["bounce_resistance"]).to_numpy(dtype=bool)

    out = run(get_strategy("trendline_bounce"), candles)

    np.testing.assert_array_equal(out["enter_long"].to_numpy(), bounce & strong & ~exits)
    np.testing.assert_array_equal(out["exit_long"].to_numpy(), exits)
    entered = out["enter_long"].to_numpy()
    expected_stop = (lines["support_line"] - 0.25 * atr).to_numpy()[entered]
    np.testing.assert_allclose(out["stop_price"].to_numpy()[entered], expected_stop)
    assert (out["stop_price"].to_numpy()[entered] < candles["close"].to_numpy()[entered]).all()


def test_supply_demand_zone_buys_tests_of_demand_with_the_zone_low_as_stop(candles):
    zones = ta.supply_demand_zones(candles)
    out = run(get_strategy("supply_demand_zone", min_strength=0.0), candles)

    entered = out["enter_long"].to_numpy()
    assert entered.any()
    assert zones["demand_tested"].to_numpy(dtype=bool)[entered].all()
    assert (candles["close"].to_numpy()[entered] >= zones["demand_low"].to_numpy()[entered]).all()
    np.testing.assert_array_equal(out["stop_price"].to_numpy()[entered], zones["demand_low"].to_numpy()[entered])
    target = out["target_price"].to_numpy()[entered]
    supply_low = zones["supply_low"].to_numpy()[entered]
    np.testing.assert_array_equal(np.isnan(target), np.isnan(supply_low))
    np.testing.assert_array_equal(out["exit_long"].to_numpy(), zones["supply_tested"].to_numpy(dtype=bool))


def test_supply_demand_zone_min_strength_filters_weak_zones(candles):
    loose = run(get_strategy("supply_demand_zone", min_strength=0.0), candles)["enter_long"].sum()
    strict = run(get_strategy("supply_demand_zone", min_strength=3.0), candles)["enter_long"].sum()
    assert strict < loose


def swing_candles() -> pd.DataFrame:
    """Up from 100 to 200 (low at bar 10, high at bar 30), back down to 140, then up again."""
    close = np.r_[
        np.linspace(110, 100, 11),  # bars 0..10: down to the swing low
        np.linspace(105, 200, 20),  # bars 11..30: up to the swing high
        np.linspace(195, 140, 12),  # bars 31..42: the pullback
        np.full(3, 141.0),  # bars 43..45: holding above the 0.618 level (138.2)
        np.linspace(150, 190, 10),
    ]
    index = pd.date_range("2024-01-01", periods=close.size, freq="h", tz="UTC")
    low = close - 1.0
    low[42] = 137.0  # the bar that touches the 0.618 retracement and closes above it
    return pd.DataFrame({"open": close, "high": close + 1.0, "low": low, "close": close, "volume": 1.0}, index=index)


def test_fibonacci_retracement_known_answer_buys_the_rejected_pullback():
    # given: swing low 99 (bar 10), swing high 201 (bar 30): 0.618 retracement = 201 - 0.618 * 102
    candles = swing_candles()
    level = 201 - 0.618 * 102

    # when
    out = run(get_strategy("fibonacci_retracement", left=3, right=3, level=0.618), candles)

    # then: the first bar whose low reaches the level and closes above it
    [entry] = np.flatnonzero(out["enter_long"]).tolist()
    assert entry == 42
    assert candles["low"].iloc[entry] <= level < candles["close"].iloc[entry]
    assert out["stop_price"].iloc[entry] == pytest.approx(99.0)
    assert out["target_price"].iloc[entry] == pytest.approx(201.0)


def test_fibonacci_entries_on_real_candles_respect_the_rule(candles):
    fib = ta.fibonacci(candles, 5, 5, levels=(0.5,), extensions=())
    out = run(get_strategy("fibonacci_retracement", level=0.5), candles)
    entered = out["enter_long"].to_numpy()
    assert entered.any()
    assert (fib["swing_direction"].to_numpy()[entered] == 1).all()
    assert (candles["low"].to_numpy()[entered] <= fib["fib_0.5"].to_numpy()[entered]).all()
    assert (candles["close"].to_numpy()[entered] > fib["fib_0.5"].to_numpy()[entered]).all()
    np.testing.assert_array_equal(out["stop_price"].to_numpy()[entered], fib["fib_100"].to_numpy()[entered])


def test_multi_confluence_buys_up_bars_at_strong_confluence_support(candles):
    zones = ta.confluence(candles, 0.5, 2)
    atr = ta.atr(candles["high"], candles["low"], candles["close"], 14).to_numpy()
    out = run(get_strategy("multi_confluence"), candles)

    entered = out["enter_long"].to_numpy()
    assert entered.any()
    support = zones["confluence_support"].to_numpy()[entered]
    assert (zones["confluence_support_score"].to_numpy()[entered] >= 2.5).all()
    assert (candles["low"].to_numpy()[entered] - support <= 0.5 * atr[entered] + 1e-9).all()
    assert (candles["close"].to_numpy()[entered] > candles["open"].to_numpy()[entered]).all()
    np.testing.assert_allclose(out["stop_price"].to_numpy()[entered], support - 0.5 * atr[entered])
