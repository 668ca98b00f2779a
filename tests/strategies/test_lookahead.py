"""The look-ahead check catches deliberately peeking strategies (a shift(-1), a centred window, a
whole-history normalisation, a higher-timeframe bar read before it closed, a peeking stop price,
an entry vetoed or required by the next bar's move) and passes honest ones, on short and on long
histories; fingerprints. No database."""

import json

import numpy as np
import pandas as pd
import pytest

from apps.marketdata import indicators as ta
from apps.marketdata.timeframes import resample
from apps.strategies.base import Strategy
from apps.strategies.errors import StrategyComputeError
from apps.strategies.lookahead import fingerprint, lookahead_check
from apps.strategies.registry import get_strategy
from apps.strategies.rules import compile_rules, parse_condition_text
from tests.marketdata.ohlcv import load_candles
from tests.strategies.support import cross_above, cross_below, year_of


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return year_of("BTC-USDT_1h", 2021)


def crosses(candles: pd.DataFrame, line: pd.Series) -> pd.DataFrame:
    close = candles["close"].to_numpy()
    return candles.assign(enter_long=cross_above(close, line.to_numpy()), exit_long=cross_below(close, line.to_numpy()))


class ShiftedEntry(Strategy):
    """Buys the bar BEFORE the SMA cross: enter_long = cross.shift(-1)."""

    key = "test_peek_shift"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        out = crosses(candles, ta.sma(candles["close"], 20))
        return out.assign(enter_long=out["enter_long"].shift(-1, fill_value=False))


class CentredWindow(Strategy):
    """Crosses of a centred 21-bar mean: each value averages 10 future closes."""

    key = "test_peek_centred"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        return crosses(candles, candles["close"].rolling(21, center=True).mean())


class WholeHistoryScaling(Strategy):
    """Close scaled by the whole history's maximum: a signal depends on the all-time high to come."""

    key = "test_peek_scaling"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        scaled = candles["close"] / candles["close"].max()
        level = pd.Series(0.8, index=candles.index)
        return crosses(candles.assign(close=scaled), level)


class UnclosedDailyBar(Strategy):
    """Compares the close with the daily close forward-filled from the day's open time."""

    key = "test_peek_htf"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        daily = resample(candles, "1d", complete_only=False)["close"]
        return crosses(candles, daily.reindex(candles.index, method="ffill"))


class PeekingStop(Strategy):
    """Honest entries, but the stop is the NEXT bar's low."""

    key = "test_peek_stop"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        out = crosses(candles, ta.sma(candles["close"], 20))
        stop = candles["low"].shift(-1).where(out["enter_long"])
        return out.assign(stop_price=stop)


class NextBarVeto(Strategy):
    """Long above the SMA unless the next bar closes 2 % lower: the peek only suppresses entries."""

    key = "test_peek_veto"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        close = candles["close"]
        above = close > ta.sma(close, 20)
        crash_next = close.shift(-1) < close * 0.98
        return candles.assign(enter_long=(above & ~crash_next).to_numpy(), exit_long=(~above).to_numpy())


class NextBarJump(Strategy):
    """Long above the SMA only when the next bar's high is 2 % above this close."""

    key = "test_peek_jump"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        close = candles["close"]
        above = close > ta.sma(close, 20)
        jump_next = candles["high"].shift(-1) > close * 1.02
        return candles.assign(enter_long=(above & jump_next).to_numpy(), exit_long=(~above).to_numpy())


class Honest(Strategy):
    """The previous day's close, the right way round, and a stop at the entry bar's low."""

    key = "test_honest"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        daily = resample(candles, "1d", complete_only=False)["close"]
        closed = daily.shift(1).reindex(candles.index.floor("D")).set_axis(candles.index)
        out = crosses(candles, closed)
        return out.assign(stop_price=candles["low"].where(out["enter_long"]))


@pytest.mark.parametrize(
    ("strategy", "columns"),
    [
        (ShiftedEntry(), {"enter_long"}),
        (CentredWindow(), {"enter_long", "exit_long"}),
        (WholeHistoryScaling(), {"enter_long", "exit_long"}),
        (UnclosedDailyBar(), {"enter_long", "exit_long"}),
        (PeekingStop(), {"stop_price"}),
        (NextBarVeto(), {"enter_long"}),
        (NextBarJump(), {"enter_long"}),
    ],
    ids=lambda value: getattr(value, "key", ""),
)
def test_peeking_strategies_are_flagged(strategy, columns, candles):
    # when
    report = lookahead_check(strategy, candles)

    # then
    assert report.is_biased, report.message
    assert set(report.columns) == columns
    assert report.biased_truncations >= 1 and report.checked >= 16
    assert report.bars and all(pd.Timestamp(bar) in candles.index for bar in report.bars)
    assert "Look-ahead bias" in report.message
    assert json.loads(json.dumps(report.as_dict()))["is_biased"] is True


def test_an_honest_strategy_with_a_higher_timeframe_and_stops_passes(candles):
    report = lookahead_check(Honest(), candles)
    assert not report.is_biased, report.message
    assert report.checked >= 24 and report.biased_truncations == 0
    assert report.columns == () and report.bars == ()
    assert "No look-ahead found" in report.message


@pytest.mark.parametrize("name", ["ETH-USDT_1h", "SPY_1h", "AAPL_1d"])
def test_a_next_bar_veto_is_flagged_on_other_markets(name):
    # given: an entry vetoed before a 2 % drop, which leaves no signal bar to truncate at
    candles = load_candles(name)

    # when
    report = lookahead_check(NextBarVeto(), candles)

    # then: the bars before the biggest moves were truncation points
    assert report.is_biased, report.message
    assert report.columns == ("enter_long",)


class CrashVeto(Strategy):
    """Always long, except on the bar before a 5 % close-to-close move."""

    key = "test_peek_crash_veto"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        close = candles["close"]
        big_next = (close.shift(-1) / close - 1).abs() > 0.05
        return candles.assign(enter_long=(~big_next).to_numpy())


@pytest.mark.parametrize("crash_at", [600, 2500])
def test_a_veto_of_one_bar_before_the_only_crash_is_flagged(crash_at):
    # given: quiet minute candles with one 10 % drop, as the single bar a peek changes
    candles = minute_candles(3000)
    candles.iloc[crash_at:, :4] *= 0.9

    # when
    report = lookahead_check(CrashVeto(), candles)

    # then: the bar before the crash was a truncation point
    assert report.is_biased, report.message
    assert report.bars == (candles.index[crash_at - 1].isoformat(),)


def minute_candles(count: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, count)))
    index = pd.date_range("2022-01-01", periods=count, freq="min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": close, "high": close * 1.001, "low": close * 0.999, "close": close, "volume": 1.0}, index=index
    )


class FarPeek(Strategy):
    """Wants to be long while the close 5,000 bars later is higher: far beyond the tail region."""

    key = "test_peek_far"

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        future = candles["close"].shift(-5000)
        return candles.assign(enter_long=(future > candles["close"]).to_numpy())


def test_long_histories_are_checked_in_regions():
    # given: 200,000 one-minute bars
    candles = minute_candles(200_000)

    # when
    honest = lookahead_check(get_strategy("sma_cross"), candles)
    shifted = lookahead_check(ShiftedEntry(), candles)
    far = lookahead_check(FarPeek(), candles)

    # then: every region's truncations were compared and the peeks were caught
    assert not honest.is_biased and 28 <= honest.checked <= 48, honest.message
    assert shifted.is_biased and shifted.columns == ("enter_long",)
    assert far.is_biased, far.message
    # the earlier regions were checked too, not only the tail
    first_flag = pd.Timestamp(shifted.bars[0])
    assert first_flag < candles.index[-2000]


def test_too_few_candles_is_not_a_pass(candles):
    report = lookahead_check(get_strategy("sma_cross", fast=10, slow=50), candles.iloc[:40])
    assert report.checked == 0 and not report.is_biased
    assert "Not enough candles" in report.message


def test_a_strategy_that_raises_fails_the_check(candles):
    class Broken(Strategy):
        key = "test_broken"

        def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
            raise RuntimeError("boom")

    with pytest.raises(StrategyComputeError, match="boom"):
        lookahead_check(Broken(), candles)


def test_fingerprint_names_the_configuration():
    base = fingerprint(get_strategy("sma_cross", fast=10, slow=30))
    assert len(base) == 64 and int(base, 16) >= 0
    assert fingerprint(get_strategy("sma_cross", {"slow": 30, "fast": 10})) == base
    assert fingerprint(get_strategy("sma_cross", fast=11, slow=30)) != base
    assert fingerprint(get_strategy("ema_cross", fast=10, slow=30)) != base

    buy = compile_rules({"enter_long": parse_condition_text("rsi(14) < 30")})
    same = compile_rules({"enter_long": parse_condition_text("RSI(14)<30"), "exit_long": None})
    other = compile_rules({"enter_long": parse_condition_text("rsi(14) < 25")})
    assert fingerprint(buy) == fingerprint(same)
    assert fingerprint(buy) != fingerprint(other)


def test_the_check_leaves_the_strategy_as_it_found_it(candles):
    # given: a strategy not told its timeframe (its warm-up then assumes 1-minute candles)
    strategy = get_strategy("htf_trend_filter", higher_timeframe="1d", ma_period=20)
    worst_case = strategy.warmup()

    # when
    report = lookahead_check(strategy, candles)

    # then: it was checked with the hourly warm-up, and is still untold
    assert report.checked >= 16
    assert strategy.timeframe is None and strategy.warmup() == worst_case
