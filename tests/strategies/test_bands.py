"""bollinger_bounce, donchian_breakout and vwap_reversion against independent references on real
candles. No database."""

import numpy as np
import pandas as pd
import pytest
import talib

from apps.marketdata import indicators as ta
from apps.strategies.registry import get_strategy
from tests.strategies.support import assert_signals_match, cross_above, cross_below, near_tie, run, year_of


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return year_of("BTC-USD_4h", 2021)


def first_true(mask: np.ndarray) -> np.ndarray:
    return mask & ~np.r_[False, mask[:-1]]


def test_bollinger_bounce_buys_the_close_back_above_the_lower_band(candles):
    close = candles["close"].to_numpy()
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, talib.MA_Type.SMA)
    with np.errstate(invalid="ignore"):
        at_middle = close >= middle
    ties = near_tie(close, lower, rel=1e-7) | near_tie(close, middle, rel=1e-7)

    out = run(get_strategy("bollinger_bounce", short=True), candles)

    assert_signals_match(out["enter_long"].to_numpy(), cross_above(close, lower) & ~at_middle, ties)
    assert_signals_match(out["exit_long"].to_numpy(), at_middle, ties)
    short_ties = near_tie(close, upper, rel=1e-7) | near_tie(close, middle, rel=1e-7)
    with np.errstate(invalid="ignore"):
        assert_signals_match(out["enter_short"].to_numpy(), cross_below(close, upper) & ~(close <= middle), short_ties)


def test_bollinger_bounce_can_take_profit_at_the_opposite_band(candles):
    close = candles["close"].to_numpy()
    upper, _, _ = talib.BBANDS(close, 20, 2.0, 2.0, talib.MA_Type.SMA)
    out = run(get_strategy("bollinger_bounce", exit_at="opposite"), candles)
    with np.errstate(invalid="ignore"):
        assert_signals_match(out["exit_long"].to_numpy(), close >= upper, near_tie(close, upper, rel=1e-7))


def test_donchian_breakout_buys_above_the_previous_highest_high(candles):
    # given: the channels of the bars before, from pandas
    close = candles["close"].to_numpy()
    prior_high = candles["high"].rolling(20).max().shift(1).to_numpy()
    prior_exit_low = candles["low"].rolling(10).min().shift(1).to_numpy()
    with np.errstate(invalid="ignore"):
        exit_long = first_true(close < prior_exit_low)
        enter_long = first_true(close > prior_high) & ~exit_long

    # when
    out = run(get_strategy("donchian_breakout", entry_period=20, exit_period=10), candles)

    # then
    assert_signals_match(out["enter_long"].to_numpy(), enter_long)
    assert_signals_match(out["exit_long"].to_numpy(), exit_long)


def test_donchian_levels_source_buys_support_resistance_breaks(candles):
    levels = ta.support_resistance(candles)
    out = run(get_strategy("donchian_breakout", source="levels"), candles)
    entries = out["enter_long"].to_numpy()
    assert entries.any()
    assert levels["break_up"].to_numpy()[entries].all()


def test_vwap_reversion_buys_a_stretch_below_the_daily_vwap():
    # given: SPY hourly bars; the session VWAP and ATR computed here
    candles = year_of("SPY_1h", 2019)
    typical = (candles["high"] + candles["low"] + candles["close"]) / 3
    day = candles.index.floor("D")
    vwap = ((typical * candles["volume"]).groupby(day).cumsum() / candles["volume"].groupby(day).cumsum()).to_numpy()
    atr = talib.ATR(candles["high"].to_numpy(), candles["low"].to_numpy(), candles["close"].to_numpy(), 14)
    close = candles["close"].to_numpy()
    band = vwap - 1.5 * atr
    with np.errstate(invalid="ignore"):
        expected = first_true(close < band)

    # when
    out = run(get_strategy("vwap_reversion"), candles)

    # then
    assert_signals_match(out["enter_long"].to_numpy(), expected, near_tie(close, band, rel=1e-7))
    with np.errstate(invalid="ignore"):
        assert_signals_match(out["exit_long"].to_numpy(), close >= vwap, near_tie(close, vwap, rel=1e-7))


def test_vwap_reversion_never_trades_without_volume():
    candles = year_of("EUR-USD_1h", 2017)
    out = run(get_strategy("vwap_reversion", short=True), candles)
    assert not out[["enter_long", "enter_short"]].to_numpy().any()
