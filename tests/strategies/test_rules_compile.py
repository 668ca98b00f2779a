"""Compiled rule strategies equal hand-written equivalents on real candles (TA-Lib / pandas
references), read higher timeframes from closed bars only, and pass the look-ahead check. No
database."""

from typing import Any

import numpy as np
import pandas as pd
import pytest
import talib

from apps.marketdata import indicators as ta
from apps.strategies.errors import StrategyComputeError
from apps.strategies.lookahead import lookahead_check
from apps.strategies.rules import (
    INDICATORS,
    RuleSetError,
    RuleStrategy,
    check_timeframes,
    compile_rules,
    parse_condition_text,
)
from tests.strategies.support import assert_signals_match, cross_above, near_tie, run, year_of


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return year_of("BTC-USDT_1h", 2021)


def strategy(**texts: str) -> RuleStrategy:
    return compile_rules({signal: parse_condition_text(text) for signal, text in texts.items()})


def test_rsi_rule_equals_talib_rsi_below_30(candles):
    rsi = talib.RSI(candles["close"].to_numpy(), 14)
    out = run(strategy(enter_long="rsi(14) < 30"), candles)
    with np.errstate(invalid="ignore"):
        assert_signals_match(out["enter_long"].to_numpy(), rsi < 30, near_tie(rsi, 30.0))
    assert not out[["exit_long", "enter_short", "exit_short"]].to_numpy().any()


def test_the_issue_example_with_an_exit(candles):
    close = candles["close"].to_numpy()
    rsi = talib.RSI(close, 14)
    sma = candles["close"].rolling(200).mean().to_numpy()
    with np.errstate(invalid="ignore"):
        enter = (rsi < 35) & (close > sma)
        leave = rsi > 70
    ties = near_tie(rsi, 35.0) | near_tie(close, sma) | near_tie(rsi, 70.0)

    out = run(strategy(enter_long="rsi(14) < 35 and close > sma(200)", exit_long="rsi(14) > 70"), candles)

    assert_signals_match(out["enter_long"].to_numpy(), enter, ties)
    assert_signals_match(out["exit_long"].to_numpy(), leave, ties)


def test_or_groups_crosses_and_shorts(candles):
    close = candles["close"].to_numpy()
    ema = talib.EMA(close, 21)
    hist = talib.MACD(close, 12, 26, 9)[2]
    expected = cross_above(close, ema) | cross_above(hist, 0.0)
    ties = near_tie(close, ema) | near_tie(hist, 0.0, rel=1e-6)

    out = run(strategy(enter_short="close crosses_above ema(21) or macd(12,26,9).hist crosses_above 0"), candles)

    assert_signals_match(out["enter_short"].to_numpy(), expected, ties)


def test_band_outputs_and_offsets(candles):
    close = candles["close"]
    _, _, lower = talib.BBANDS(close.to_numpy(), 20, 2.0, 2.0, talib.MA_Type.SMA)
    prior_high = candles["high"].rolling(20).max().shift(1).to_numpy()
    with np.errstate(invalid="ignore"):
        below_band = close.to_numpy() < lower
        breakout = close.to_numpy() > prior_high
        rising = (close > close.shift(1)).to_numpy()

    out = run(
        strategy(
            enter_long="close < bbands(20, 2).lower",
            enter_short="close > donchian(20).upper[1]",
            exit_long="close > close[1]",
        ),
        candles,
    )

    assert_signals_match(out["enter_long"].to_numpy(), below_band, near_tie(close.to_numpy(), lower, rel=1e-7))
    assert_signals_match(out["enter_short"].to_numpy(), breakout)
    assert_signals_match(out["exit_long"].to_numpy(), rising)


def test_structure_flags_are_usable_as_numbers(candles):
    lines = ta.trendlines(candles, 5, 3, tolerance_atr=0.25)
    out = run(strategy(enter_long="trendlines(5, 3, 0.25).bounce_support > 0"), candles)
    assert_signals_match(out["enter_long"].to_numpy(), lines["bounce_support"].to_numpy(dtype=bool))


def test_higher_timeframe_operands_read_the_last_closed_bar(candles):
    # given: a daily SMA(5) of daily closes, each day's value used from the next day on (pandas)
    daily = candles["close"].resample("1D").last().dropna()
    ma = daily.rolling(5).mean()
    day = candles.index.floor("D")
    seen_ma = ma.shift(1).reindex(day).to_numpy()
    seen_close = daily.shift(1).reindex(day).to_numpy()
    close = candles["close"].to_numpy()
    with np.errstate(invalid="ignore"):
        expected = close > seen_ma
        daily_up = seen_close > ma.shift(1).reindex(day).to_numpy()

    # when
    out = run(strategy(enter_long="close > sma(5)@1d", exit_long="close@1d > sma(5)@1d"), candles)

    # then
    assert_signals_match(out["enter_long"].to_numpy(), expected, near_tie(close, seen_ma))
    assert_signals_match(out["exit_long"].to_numpy(), daily_up)


def test_offsets_on_a_higher_timeframe_count_its_bars(candles):
    daily = candles["close"].resample("1D").last().dropna()
    day = candles.index.floor("D")
    two_days_back = daily.shift(2).reindex(day).to_numpy()  # the day before the last closed one
    with np.errstate(invalid="ignore"):
        expected = candles["close"].to_numpy() > two_days_back
    out = run(strategy(enter_long="close > close@1d[1]"), candles)
    assert_signals_match(out["enter_long"].to_numpy(), expected)


def test_a_timeframe_below_the_candles_fails_the_run_with_a_clear_message():
    daily = year_of("BTC-USD_1d", 2021)
    with pytest.raises(StrategyComputeError, match=r"sma\(20\)@4h: The 4h timeframe cannot be built from 1d"):
        run(strategy(enter_long="close > sma(20)@4h"), daily)


def test_check_timeframes_names_the_operand():
    rules = compile_rules({"enter_long": parse_condition_text("rsi(14) < 30 and close > sma(20)@4h")}).rules
    check_timeframes(rules, "1h")
    with pytest.raises(RuleSetError) as caught:
        check_timeframes(rules, "1d")
    assert list(caught.value.fields) == ["rules.enter_long.all[1].right.timeframe"]


def test_compile_refuses_invalid_rules():
    with pytest.raises(RuleSetError) as caught:
        compile_rules({"enter_long": {"left": {"indicator": "nope"}, "op": "<", "right": 1}})
    assert "rules.enter_long.left.indicator" in caught.value.fields


def test_warmup_covers_the_longest_indicator_and_timeframe():
    assert strategy(enter_long="close > sma(200)").warmup() >= 200
    hourly = strategy(enter_long="close > sma(50)@4h")
    hourly.timeframe = "1h"
    assert hourly.warmup() >= 50 * 4
    assert strategy(enter_long="close > close[30]").warmup() >= 30


def test_describe_shows_the_rules():
    described = strategy(enter_long="rsi(14) < 30", exit_long="rsi(14) > 70").describe()
    assert "enter_long: rsi(14) < 30" in described and "exit_long: rsi(14) > 70" in described


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_every_indicator_and_output_computes_on_real_candles(name, candles):
    spec = INDICATORS[name]
    sample = candles.iloc[:1500]
    for output in spec.outputs or (None,):
        node: dict[str, Any] = {"indicator": name, "output": output}
        rules = {"enter_long": {"left": node, "op": ">", "right": {"value": -1e18}}}
        out = run(compile_rules(rules), sample)
        defined = out["enter_long"].to_numpy()
        assert defined.any(), f"{name}.{output} is never defined"


@pytest.mark.parametrize(
    "text",
    [
        "rsi(14) < 35 and close > sma(200)",
        "close crosses_above sma(20)@4h",
        "close@1d > ema(10)@1d and macd(12,26,9).hist > 0",
        "close > donchian(20).upper[1] or supertrend(10, 3).direction > 0",
    ],
)
def test_compiled_rules_do_not_peek(text, candles):
    rules = strategy(enter_long=text, exit_long="rsi(14) > 70")
    report = lookahead_check(rules, candles)
    assert not report.is_biased, report.message
    assert report.checked >= 16
