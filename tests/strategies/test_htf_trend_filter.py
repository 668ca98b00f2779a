"""htf_trend_filter: the higher-timeframe trend comes only from closed higher-timeframe bars (the
classic look-ahead trap), member entries are filtered by it, and the look-ahead check tells the
honest filter from a naive one. No database."""

import numpy as np
import pandas as pd
import pytest

from apps.marketdata import indicators as ta
from apps.marketdata.timeframes import resample
from apps.strategies.base import Strategy
from apps.strategies.errors import StrategyComputeError
from apps.strategies.library.htf_trend_filter import HtfTrendFilter
from apps.strategies.lookahead import lookahead_check
from apps.strategies.registry import get_strategy
from tests.strategies.support import run, year_of


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    return year_of("BTC-USDT_1h", 2021)


def reference_trend(candles: pd.DataFrame, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Daily close vs its SMA, from pandas, each day's verdict applied to the NEXT day's hours."""
    daily = candles["close"].resample("1D").last().dropna()
    ma = daily.rolling(period).mean()
    up = (daily > ma).shift(1, fill_value=False)  # day D's hours see day D-1
    down = (daily < ma).shift(1, fill_value=False)
    day = candles.index.floor("D")
    return up.reindex(day).fillna(False).to_numpy(bool), down.reindex(day).fillna(False).to_numpy(bool)


def filter_of(**params: object) -> HtfTrendFilter:
    strategy = get_strategy("htf_trend_filter", params)
    assert isinstance(strategy, HtfTrendFilter)
    return strategy


def test_trend_on_each_hour_is_the_previous_days_close_against_its_average(hourly):
    # given
    strategy = filter_of(higher_timeframe="1d", ma_kind="sma", ma_period=10)
    expected_up, expected_down = reference_trend(hourly, 10)

    # when
    up, down = strategy.trend(hourly)

    # then
    np.testing.assert_array_equal(up, expected_up)
    np.testing.assert_array_equal(down, expected_down)
    assert up.any() and down.any()


def test_the_last_hour_of_a_day_does_not_see_that_days_close(hourly):
    # given: a day whose own close flips the trend compared with the day before
    strategy = filter_of(higher_timeframe="1d", ma_kind="sma", ma_period=10)
    daily = hourly["close"].resample("1D").last()
    verdict = daily > daily.rolling(10).mean()
    flips = verdict.index[(verdict != verdict.shift(1)) & verdict.shift(1).notna()][1:]
    flip_day = flips[0]

    # when
    up, _ = strategy.trend(hourly)
    at = pd.Series(up, index=hourly.index)

    # then: 23:00 of the flip day still has the old verdict; 00:00 of the next day has the new one
    assert at[flip_day + pd.Timedelta(hours=23)] == bool(verdict[flip_day - pd.Timedelta(days=1)])
    assert at[flip_day + pd.Timedelta(days=1)] == bool(verdict[flip_day])


def test_only_member_entries_with_the_trend_pass(hourly):
    strategy = filter_of(member="sma_cross", higher_timeframe="4h", ma_period=20)
    member = run(get_strategy("sma_cross"), hourly)
    up, _ = strategy.trend(hourly)

    out = run(strategy, hourly)

    np.testing.assert_array_equal(out["enter_long"].to_numpy(), member["enter_long"].to_numpy() & up)
    np.testing.assert_array_equal(out["exit_long"].to_numpy(), member["exit_long"].to_numpy())
    assert 0 < out["enter_long"].sum() < member["enter_long"].sum()


def test_exit_on_flip_closes_when_the_trend_turns(hourly):
    strategy = filter_of(member="rsi_mean_reversion", higher_timeframe="1d", ma_period=10, exit_on_flip=True)
    member = run(get_strategy("rsi_mean_reversion"), hourly)
    up, _ = strategy.trend(hourly)
    turned = ~up & np.r_[False, up[:-1]]

    out = run(strategy, hourly)

    np.testing.assert_array_equal(out["exit_long"].to_numpy(), member["exit_long"].to_numpy() | turned)
    assert turned.any()


def test_same_timeframe_compares_the_bar_itself():
    candles = year_of("BTC-USD_1d", 2021)
    strategy = filter_of(higher_timeframe="1d", ma_kind="ema", ma_period=20)
    up, _ = strategy.trend(candles)
    ema = ta.ema(candles["close"], 20)
    np.testing.assert_array_equal(up, (candles["close"] > ema).to_numpy())


def test_equity_sessions_use_the_previous_sessions_daily_bar():
    candles = year_of("SPY_1h", 2019)
    strategy = filter_of(higher_timeframe="1d", ma_kind="sma", ma_period=5)
    up, _ = strategy.trend(candles)
    expected, _ = reference_trend(candles, 5)
    np.testing.assert_array_equal(up, expected)


@pytest.mark.parametrize("candle_name", ["BTC-USD_1d", "GSPC_1w"])
def test_a_higher_timeframe_below_the_candles_is_refused(candle_name):
    candles = year_of(candle_name, 2021)
    with pytest.raises(StrategyComputeError, match="cannot be built"):
        run(filter_of(higher_timeframe="4h"), candles)


class NaiveDailyFilter(Strategy):
    """The trap: daily values forward-filled from the day's OPEN time, so every hour of a day
    sees the day's final close."""

    key = "test_naive_daily_filter"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        daily = resample(candles, "1d", complete_only=False)["close"]
        ma = ta.sma(daily, 10)
        up = (daily > ma).reindex(candles.index, method="ffill").fillna(False).to_numpy(bool)
        member = get_strategy("sma_cross").compute(candles)
        return candles.assign(enter_long=member["enter_long"].to_numpy() & up, exit_long=member["exit_long"])


def test_look_ahead_check_flags_the_naive_filter_and_passes_the_real_one(hourly):
    naive = lookahead_check(NaiveDailyFilter(), hourly)
    honest = lookahead_check(filter_of(higher_timeframe="1d", ma_kind="sma", ma_period=10), hourly)

    assert naive.is_biased, naive.message
    assert "enter_long" in naive.columns
    assert not honest.is_biased, honest.message
    assert honest.checked >= 16


def test_warmup_counts_higher_timeframe_bars_in_candles():
    strategy = filter_of(higher_timeframe="4h", ma_kind="sma", ma_period=50)
    strategy.timeframe = "1h"
    assert strategy.warmup() == (50 + 1) * 4
    strategy.timeframe = None  # unknown candles: the worst case (1-minute candles)
    assert strategy.warmup() == (50 + 1) * 240
