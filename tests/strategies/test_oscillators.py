"""rsi_mean_reversion, macd_momentum and dual_momentum against TA-Lib references on real candles.
No database."""

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


def test_rsi_mean_reversion_buys_when_rsi_falls_below_oversold_and_sells_above_overbought(candles):
    rsi = talib.RSI(candles["close"].to_numpy(), 14)

    out = run(get_strategy("rsi_mean_reversion", period=14, oversold=30, overbought=70, short=True), candles)

    assert_signals_match(out["enter_long"].to_numpy(), cross_below(rsi, 30.0), near_tie(rsi, 30.0))
    assert_signals_match(out["exit_long"].to_numpy(), cross_above(rsi, 70.0), near_tie(rsi, 70.0))
    np.testing.assert_array_equal(out["enter_short"], out["exit_long"])
    np.testing.assert_array_equal(out["exit_short"], out["enter_long"])


def test_rsi_levels_must_be_ordered():
    with pytest.raises(InvalidParamsError) as caught:
        get_strategy("rsi_mean_reversion", oversold=50, overbought=50)
    assert caught.value.field == "params.oversold"


def test_macd_momentum_trades_the_signal_line_crosses(candles):
    line, signal, _ = talib.MACD(candles["close"].to_numpy(), fastperiod=8, slowperiod=21, signalperiod=5)

    out = run(get_strategy("macd_momentum", fast=8, slow=21, signal=5), candles)

    ties = near_tie(line, signal, rel=1e-6)
    assert_signals_match(out["enter_long"].to_numpy(), cross_above(line, signal), ties)
    assert_signals_match(out["exit_long"].to_numpy(), cross_below(line, signal), ties)


def test_macd_fast_must_be_shorter_than_slow():
    with pytest.raises(InvalidParamsError) as caught:
        get_strategy("macd_momentum", fast=26, slow=12)
    assert caught.value.field == "params.fast"


def test_dual_momentum_enters_when_all_three_agree_for_the_first_time(candles):
    # given: the three conditions from TA-Lib
    close = candles["close"].to_numpy()
    ema = talib.EMA(close, 50)
    rsi = talib.RSI(close, 14)
    hist = talib.MACD(close, 12, 26, 9)[2]
    with np.errstate(invalid="ignore"):
        bull = (close > ema) & (rsi > 55) & (hist > 0)
        broken = (close < ema) | (hist < 0)
    first_bull = bull & ~np.r_[False, bull[:-1]]
    first_broken = broken & ~np.r_[False, broken[:-1]]
    ties = near_tie(close, ema) | near_tie(rsi, 55.0) | near_tie(hist, 0.0, rel=1e-6)

    # when
    out = run(get_strategy("dual_momentum"), candles)

    # then
    assert_signals_match(out["enter_long"].to_numpy(), first_bull, ties)
    assert_signals_match(out["exit_long"].to_numpy(), first_broken, ties)
    # every entry is a bar where the three agree, and the bar before they did not all agree
    entries = np.flatnonzero(out["enter_long"])
    assert bull[entries].all() and not bull[entries - 1].any()
