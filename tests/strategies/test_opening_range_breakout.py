"""opening_range_breakout: a known answer on hand-made 5-minute bars, one trade per session on real
candles (checked with pandas group-bys), session settings, and the refusal of daily bars."""

import numpy as np
import pandas as pd
import pytest

from apps.strategies.errors import StrategyComputeError
from apps.strategies.registry import get_strategy
from tests.strategies.support import run, year_of


def five_minute_day(closes: list[float], start: str = "2024-03-04") -> pd.DataFrame:
    """A full UTC day of 5-minute bars: `closes` first, then flat at the last close."""
    values = np.r_[closes, np.full(288 - len(closes), closes[-1])]
    index = pd.date_range(start, periods=288, freq="5min", tz="UTC")
    return pd.DataFrame(
        {"open": values, "high": values + 0.5, "low": values - 0.5, "close": values, "volume": 1.0}, index=index
    )


def test_known_answer_buys_the_first_close_above_the_range_with_stop_and_target():
    # given: the first 30 minutes (6 bars) range 99.5..101.5; bar 8 closes at 102, bar 10 at 103
    day = five_minute_day([100, 101, 100, 99, 100, 101, 101, 101, 102, 101, 103, 104])

    # when
    out = run(get_strategy("opening_range_breakout", range_minutes=30, reward=2.0), day)

    # then: one entry at bar 8, stop at the range low, target two range widths above the high
    assert np.flatnonzero(out["enter_long"]).tolist() == [8]
    assert out["stop_price"].iloc[8] == pytest.approx(98.5)
    assert out["target_price"].iloc[8] == pytest.approx(101.5 + 2 * 3.0)
    assert out["stop_price"].drop(out.index[8]).isna().all()
    # exits: the day's first bar, and the last bar of the session (23:55 closes at midnight)
    assert np.flatnonzero(out["exit_long"]).tolist() == [0, 287]
    assert not out["enter_short"].any()


def test_short_side_takes_the_first_break_either_way():
    day = five_minute_day([100, 101, 100, 99, 100, 101, 101, 98, 102, 97])
    out = run(get_strategy("opening_range_breakout", range_minutes=30, short=True), day)
    assert np.flatnonzero(out["enter_short"]).tolist() == [7]
    assert not out["enter_long"].any(), "one trade per session: the later upside break is ignored"
    assert out["stop_price"].iloc[7] == pytest.approx(101.5)


def test_session_minutes_closes_positions_early():
    day = five_minute_day([100, 101, 100, 99, 100, 101, 101, 101, 102])
    out = run(get_strategy("opening_range_breakout", range_minutes=30, session_minutes=60), day)
    # bars open every 5 minutes from 00:00; the bar opening at 00:55 closes at 01:00
    assert np.flatnonzero(out["exit_long"]).tolist()[:2] == [0, 11]
    assert out["exit_long"].iloc[11:].all()
    assert np.flatnonzero(out["enter_long"]).tolist() == [8]


def test_session_start_moves_the_session_boundary():
    # given: two days; with sessions starting at 12:00 UTC the range is 12:00-12:30
    two_days = pd.concat([five_minute_day([100] * 10), five_minute_day([100] * 10, start="2024-03-05")])
    out = run(get_strategy("opening_range_breakout", session_start=720, range_minutes=30), two_days)
    firsts = two_days.index[np.flatnonzero(out["exit_long"])]
    assert pd.Timestamp("2024-03-04 12:00", tz="UTC") in firsts
    assert pd.Timestamp("2024-03-05 12:00", tz="UTC") in firsts


def test_on_real_five_minute_candles_every_entry_is_the_first_break_of_its_day():
    # given
    candles = load_five_minute()
    day = candles.index.floor("D")
    first_bar = pd.Series(candles.index, index=candles.index).groupby(day).transform("min")
    in_range = candles.index < first_bar + pd.Timedelta(minutes=30)
    range_high = candles["high"].where(in_range).groupby(day).transform("max")
    breaks = (~in_range) & (candles["close"] > range_high)
    expected = breaks & (breaks.astype(int).groupby(day).cumsum() == 1)
    # a break on the session's very last bar is not traded
    expected &= candles.index + pd.Timedelta(minutes=5) < day + pd.Timedelta(days=1)

    # when
    out = run(get_strategy("opening_range_breakout"), candles)

    # then
    np.testing.assert_array_equal(out["enter_long"].to_numpy(), expected.to_numpy())
    assert out["enter_long"].sum() > 50
    assert out.loc[out["enter_long"], "stop_price"].notna().all()


def test_equity_sessions_use_the_first_bar_of_the_day_as_the_range():
    candles = year_of("SPY_1h", 2019)
    out = run(get_strategy("opening_range_breakout", range_minutes=30), candles)
    day = candles.index.floor("D")
    first_high = candles["high"].groupby(day).transform("first")
    entries = out["enter_long"].to_numpy()
    assert entries.sum() > 20
    assert (candles["close"].to_numpy()[entries] > first_high.to_numpy()[entries]).all()
    assert (
        out.loc[out["enter_long"], "stop_price"].to_numpy()
        == candles["low"].groupby(day).transform("first")[entries].to_numpy()
    ).all()


def test_refuses_daily_candles():
    candles = year_of("BTC-USD_1d", 2021)
    with pytest.raises(StrategyComputeError, match="intraday"):
        run(get_strategy("opening_range_breakout"), candles)


def load_five_minute() -> pd.DataFrame:
    candles = year_of("BTC-USDT_5m", 2021)
    return candles.loc[:"2021-03-31"]
