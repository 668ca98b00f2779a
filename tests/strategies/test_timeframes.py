"""apps.strategies.timeframes (higher timeframes without look-ahead) and the vectorised signal
helpers of the library. No database."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.strategies.library._signals import crossover, crossunder, falling_edge, holding, rising_edge
from apps.strategies.timeframes import (
    TimeframeMismatch,
    align_closed,
    check_higher,
    higher_candles,
    infer_base_seconds,
)
from tests.strategies.support import cross_above, cross_below


def hours(count: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=count, freq="h", tz="UTC", name="timestamp")


def test_align_closed_uses_a_bar_only_from_its_end_on():
    # given: 4h values labelled by open time 00:00, 04:00, 08:00
    values = pd.Series([1.0, 2.0, 3.0], index=pd.date_range("2024-01-01", periods=3, freq="4h", tz="UTC"))
    base = hours(12)

    # when
    aligned = align_closed(values, "4h", base)

    # then: 00:00-03:00 see nothing, 04:00-07:00 the 00:00 bar, 08:00-11:00 the 04:00 bar
    expected = [np.nan] * 4 + [1.0] * 4 + [2.0] * 4
    np.testing.assert_array_equal(aligned.to_numpy(), expected)


def test_align_closed_frames_and_microsecond_indexes():
    values = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC"))
    base = pd.DatetimeIndex(hours(72).as_unit("us"))
    aligned = align_closed(values, "1d", base)
    assert aligned["a"].iloc[23] != aligned["a"].iloc[23]  # NaN: day one has not ended
    assert aligned["a"].iloc[24] == 1.0 and aligned["a"].iloc[48] == 2.0


def test_higher_candles_keep_the_incomplete_last_bar_for_align_closed_to_skip():
    index = hours(30)
    close = np.arange(30, dtype=float)
    candles = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index)
    daily = higher_candles(candles, "1d")
    assert len(daily) == 2 and daily["close"].iloc[0] == 23.0 and daily["close"].iloc[1] == 29.0
    aligned = align_closed(daily["close"], "1d", index)
    assert np.isnan(aligned.iloc[23]) and (aligned.iloc[24:] == 23.0).all()


@pytest.mark.parametrize(
    ("timeframe", "base", "expected"),
    [("4h", 3600, True), ("1h", 3600, False), ("1d", 14400, True), ("1w", 86400, True), ("1h", None, False)],
)
def test_check_higher(timeframe, base, expected):
    assert check_higher(timeframe, base) is expected


@pytest.mark.parametrize(("timeframe", "base"), [("1h", 14400), ("4h", 21600)])
def test_check_higher_refuses_lower_or_misaligned_timeframes(timeframe, base):
    with pytest.raises(TimeframeMismatch, match="cannot be built"):
        check_higher(timeframe, base)


def test_infer_base_seconds_reads_the_leading_bars_only():
    index = hours(2000).append(pd.DatetimeIndex([hours(2000)[-1] + pd.Timedelta(minutes=1)]))
    assert infer_base_seconds(index) == 3600  # the 1-minute gap after bar 1000 is not read
    assert infer_base_seconds(index, "5m") == 300
    assert infer_base_seconds(hours(1)) is None


bool_arrays = st.lists(st.booleans(), min_size=1, max_size=60).map(lambda xs: np.array(xs, dtype=bool))
float_lists = st.lists(st.one_of(st.floats(-5, 5), st.just(float("nan"))), min_size=1, max_size=60)


@given(float_lists, float_lists)
def test_crosses_match_the_pandas_reference(a, b):
    size = min(len(a), len(b))
    left, right = np.array(a[:size]), np.array(b[:size])
    np.testing.assert_array_equal(crossover(left, right, size), cross_above(left, right))
    np.testing.assert_array_equal(crossunder(left, right, size), cross_below(left, right))


@given(bool_arrays, bool_arrays)
def test_holding_matches_a_plain_loop(enter, exit_):
    size = min(enter.size, exit_.size)
    enter, exit_ = enter[:size], exit_[:size]
    state, expected = False, []
    for i in range(size):
        state = False if exit_[i] else (True if enter[i] else state)
        expected.append(state)
    np.testing.assert_array_equal(holding(enter, exit_), np.array(expected, dtype=bool))


@given(bool_arrays)
def test_edges(condition):
    previous = np.r_[False, condition[:-1]]
    np.testing.assert_array_equal(rising_edge(condition), condition & ~previous)
    np.testing.assert_array_equal(falling_edge(condition), ~condition & previous)
