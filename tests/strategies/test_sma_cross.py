"""sma_cross and ema_cross: signals exactly where the averages cross (references from TA-Lib and
pandas, not from the library), parameter validation, the short side. No database."""

import numpy as np
import pandas as pd
import pytest
import talib

from apps.strategies.errors import InvalidParamsError
from apps.strategies.registry import get_strategy
from tests.strategies.support import assert_signals_match, cross_above, cross_below, near_tie, run, year_of


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return year_of("BTC-USD_4h", 2021)


def test_sma_cross_enters_exactly_where_fast_crosses_above_slow(candles):
    # given: the averages computed by pandas, independently of the indicator library
    fast = candles["close"].rolling(10).mean().to_numpy()
    slow = candles["close"].rolling(30).mean().to_numpy()

    # when
    out = run(get_strategy("sma_cross", fast=10, slow=30), candles)

    # then
    ties = near_tie(fast, slow)
    assert_signals_match(out["enter_long"].to_numpy(), cross_above(fast, slow), ties)
    assert_signals_match(out["exit_long"].to_numpy(), cross_below(fast, slow), ties)
    assert not out["enter_short"].any() and not out["exit_short"].any()


def test_sma_cross_with_short_mirrors_the_long_side(candles):
    out = run(get_strategy("sma_cross", fast=5, slow=20, short=True), candles)
    np.testing.assert_array_equal(out["enter_short"], out["exit_long"])
    np.testing.assert_array_equal(out["exit_short"], out["enter_long"])
    assert out["enter_short"].any()


def test_sma_cross_fires_nothing_before_the_slow_average_exists():
    # given: a rising then falling line
    close = np.r_[np.linspace(100, 50, 40), np.linspace(51, 120, 40)]
    index = pd.date_range("2024-01-01", periods=close.size, freq="h", tz="UTC")
    candles = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)

    # when
    out = run(get_strategy("sma_cross", fast=3, slow=10), candles)

    # then: one buy after the bottom, where SMA(3) overtakes SMA(10), and nothing during warm-up
    [entry] = np.flatnonzero(out["enter_long"]).tolist()
    assert entry > 40
    fast, slow = candles["close"].rolling(3).mean(), candles["close"].rolling(10).mean()
    assert fast.iloc[entry] > slow.iloc[entry] and fast.iloc[entry - 1] <= slow.iloc[entry - 1]
    assert not out.iloc[:10].any(axis=None)


def test_ema_cross_enters_where_talib_emas_cross(candles):
    close = candles["close"].to_numpy()
    fast, slow = talib.EMA(close, 12), talib.EMA(close, 26)

    out = run(get_strategy("ema_cross"), candles)

    ties = near_tie(fast, slow)
    assert_signals_match(out["enter_long"].to_numpy(), cross_above(fast, slow), ties)
    assert_signals_match(out["exit_long"].to_numpy(), cross_below(fast, slow), ties)


@pytest.mark.parametrize("key", ["sma_cross", "ema_cross"])
def test_fast_period_must_be_shorter_than_slow(key):
    with pytest.raises(InvalidParamsError) as caught:
        get_strategy(key, fast=30, slow=30)
    assert caught.value.field == "params.fast"
    assert caught.value.extra["fields"] == {"params.fast": [caught.value.message]}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"fast": 1}, "params.fast"),
        ({"slow": 501}, "params.slow"),
        ({"fast": "ten"}, "params.fast"),
        ({"x": 1}, "params.x"),
    ],
)
def test_sma_cross_refuses_bad_parameters_naming_the_field(params, field):
    with pytest.raises(InvalidParamsError) as caught:
        get_strategy("sma_cross", params)
    assert caught.value.field == field


def test_sma_cross_warmup_is_the_slow_period():
    assert get_strategy("sma_cross", fast=5, slow=42).warmup() == 42
    assert get_strategy("ema_cross", fast=5, slow=42).warmup() >= 42
