"""Indicators on small hand-checked frames, plus the no-look-ahead rule on real candles."""

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.marketdata import indicators as ta
from tests.marketdata.ohlcv import load_candles

NAN = np.nan


def series(values: list[float], start: str = "2024-01-01", freq: str = "h") -> pd.Series:
    index = pd.date_range(start, periods=len(values), freq=freq, tz="UTC")
    return pd.Series(values, index=index, dtype="float64")


def test_sma_of_one_to_five():
    result = ta.sma(series([1, 2, 3, 4, 5]), 3)
    np.testing.assert_array_equal(result.to_numpy(), [NAN, NAN, 2.0, 3.0, 4.0])
    assert result.dtype == np.float64


def test_ema_is_seeded_with_the_sma():
    # k = 2 / (3 + 1) = 0.5; seed mean(2, 4, 6) = 4; then 4 + 0.5 * (8 - 4) = 6; 6 + 0.5 * (5 - 6) = 5.5
    result = ta.ema(series([2, 4, 6, 8, 5]), 3)
    np.testing.assert_array_equal(result.to_numpy(), [NAN, NAN, 4.0, 6.0, 5.5])


def test_wma_weights_the_newest_most():
    result = ta.wma(series([1, 2, 3, 4]), 3)
    np.testing.assert_allclose(result.to_numpy(), [NAN, NAN, 14 / 6, 20 / 6])


def test_rsi_uses_wilder_smoothing():
    # changes +1, +1, -1, +1; n=2: gains/losses (1, 0) -> (0.5, 0.5) -> (0.75, 0.25)
    result = ta.rsi(series([1, 2, 3, 2, 3]), 2)
    np.testing.assert_allclose(result.to_numpy(), [NAN, NAN, 100.0, 50.0, 75.0])


def test_rsi_of_a_flat_series_is_zero_like_talib():
    assert ta.rsi(series([5.0] * 6), 3).iloc[-1] == 0.0


def test_bbands_use_the_population_deviation():
    result = ta.bbands(series([1, 2, 3]), 3, 2.0)
    width = 2.0 * math.sqrt(2 / 3)
    assert result.columns.tolist() == ["upper", "middle", "lower"]
    np.testing.assert_allclose(result.iloc[2].to_numpy(), [2 + width, 2.0, 2 - width])
    assert result.iloc[:2].isna().all().all()


def test_atr_seeds_with_the_mean_true_range():
    high = series([10, 12, 13, 12])
    low = series([9, 10, 11, 8])
    close = series([9.5, 11, 12, 9])
    # TR from row 1: max(2, |12-9.5|, |10-9.5|) = 2.5; max(2, 2, 0) = 2; max(4, 0, 4) = 4
    result = ta.atr(high, low, close, 2)
    np.testing.assert_allclose(result.to_numpy(), [NAN, NAN, 2.25, (2.25 + 4) / 2])


def test_obv_starts_at_the_first_volume():
    result = ta.obv(series([10, 11, 11, 9]), series([5, 6, 7, 8]))
    np.testing.assert_array_equal(result.to_numpy(), [5.0, 11.0, 11.0, 3.0])


def test_vwap_resets_at_utc_midnight():
    # given: two bars on Jan 1 and two on Jan 2 (h = l = c, so the typical price is the close)
    prices = pd.Series(
        [10.0, 20.0, 30.0, 50.0],
        index=pd.DatetimeIndex(["2024-01-01T22:00Z", "2024-01-01T23:00Z", "2024-01-02T00:00Z", "2024-01-02T01:00Z"]),
    )
    volume = pd.Series([1.0, 3.0, 1.0, 1.0], index=prices.index)
    # when
    result = ta.vwap(prices, prices, prices, volume)
    # then
    np.testing.assert_allclose(result.to_numpy(), [10.0, 17.5, 30.0, 40.0])


def test_vwap_sessions_follow_utc_not_the_index_timezone():
    # 01:00 and 02:00 in +02:00 are 23:00 and 00:00 UTC: different UTC days
    index = pd.DatetimeIndex(["2024-01-02T01:00+02:00", "2024-01-02T02:00+02:00"])
    prices = pd.Series([10.0, 30.0], index=index)
    result = ta.vwap(prices, prices, prices, pd.Series([1.0, 1.0], index=index))
    np.testing.assert_allclose(result.to_numpy(), [10.0, 30.0])


def test_vwap_with_a_weekly_anchor_and_no_volume():
    prices = series([1.0, 2.0, 3.0], start="2024-01-07", freq="D")  # Sunday, Monday, Tuesday
    weekly = ta.vwap(prices, prices, prices, series([1.0, 1.0, 1.0], start="2024-01-07", freq="D"), anchor="W")
    np.testing.assert_allclose(weekly.to_numpy(), [1.0, 2.0, 2.5])
    no_volume = ta.vwap(prices, prices, prices, prices * 0.0)
    assert no_volume.isna().all()


def test_vwap_needs_a_datetime_index():
    prices = pd.Series([1.0, 2.0])
    with pytest.raises(TypeError):
        ta.vwap(prices, prices, prices, prices)


def test_donchian_on_a_known_frame():
    high = series([5, 7, 6, 4, 3])
    low = series([1, 2, 3, 2, 1])
    result = ta.donchian(high, low, 3)
    np.testing.assert_array_equal(result["upper"].to_numpy(), [NAN, NAN, 7, 7, 6])
    np.testing.assert_array_equal(result["lower"].to_numpy(), [NAN, NAN, 1, 2, 1])
    np.testing.assert_array_equal(result["middle"].to_numpy(), [NAN, NAN, 4, 4.5, 3.5])


def test_stoch_and_willr_of_a_range():
    high = series([10, 10, 10, 10])
    low = series([0, 0, 0, 0])
    close = series([2, 5, 8, 10])
    np.testing.assert_allclose(ta.willr(high, low, close, 2).to_numpy(), [NAN, -50.0, -20.0, 0.0])
    result = ta.stoch(high, low, close, 2, 2, 1)  # fast k 50, 80, 100 -> slow k 65, 90
    np.testing.assert_allclose(result["k"].to_numpy(), [NAN, NAN, 65.0, 90.0])
    np.testing.assert_allclose(result["d"].to_numpy(), [NAN, NAN, 65.0, 90.0])


def test_stoch_of_a_zero_range_is_zero():
    flat = series([3.0] * 5)
    assert ta.stoch(flat, flat, flat, 2, 1, 1)["k"].iloc[-1] == 0.0
    assert ta.willr(flat, flat, flat, 2).iloc[-1] == 0.0


def test_keltner_is_ema_plus_minus_k_atr():
    candles = load_candles("BTC-USDT_1h").iloc[:300]
    high, low, close = candles["high"], candles["low"], candles["close"]
    result = ta.keltner(high, low, close, 20, 10, 1.5)
    band = 1.5 * ta.atr(high, low, close, 10)
    np.testing.assert_allclose(result["middle"].iloc[19:], ta.ema(close, 20).iloc[19:])
    np.testing.assert_allclose((result["upper"] - result["middle"]).iloc[19:], band.iloc[19:])
    np.testing.assert_allclose((result["middle"] - result["lower"]).iloc[19:], band.iloc[19:])
    assert result.iloc[:19].isna().all().all()


def test_ichimoku_on_a_known_frame():
    high = series([10, 12, 11, 13, 9])
    low = series([8, 9, 7, 10, 6])
    close = series([9, 11, 8, 12, 7])
    result = ta.ichimoku(high, low, close, 2, 3, 4)
    np.testing.assert_array_equal(result["tenkan"].to_numpy(), [NAN, 10.0, 9.5, 10.0, 9.5])
    np.testing.assert_array_equal(result["kijun"].to_numpy(), [NAN, NAN, 9.5, 10.0, 9.5])
    np.testing.assert_array_equal(result["senkou_a"].to_numpy(), [NAN, NAN, 9.5, 10.0, 9.5])
    np.testing.assert_array_equal(result["senkou_b"].to_numpy(), [NAN, NAN, NAN, 10.0, 9.5])
    np.testing.assert_array_equal(result["chikou"].to_numpy(), close.to_numpy())


def test_supertrend_follows_a_rally_and_a_crash():
    # given: flat, then a steady rally, then a crash
    closes = [100.0] * 5 + [100.0 + 5 * i for i in range(1, 16)] + [170.0 - 10 * i for i in range(1, 11)]
    close = series(closes)
    high, low = close + 1.0, close - 1.0
    # when
    result = ta.supertrend(high, low, close, 3, 2.0)
    # then
    direction = result["direction"]
    assert direction.iloc[:3].isna().all()
    assert direction.iloc[3] == -1.0
    assert direction.iloc[19] == 1.0 and result["supertrend"].iloc[19] < close.iloc[19]
    assert direction.iloc[-1] == -1.0 and result["supertrend"].iloc[-1] > close.iloc[-1]
    up = result[direction == 1.0]["supertrend"]
    assert (up.diff().dropna() >= 0).all(), "the lower band only rises while the trend is up"


def test_periods_and_inputs_are_validated():
    close = series([1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        ta.sma(close, 0)
    with pytest.raises(TypeError):
        ta.sma(close, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ta.macd(close, 26, 12, 9)
    with pytest.raises(ValueError, match="same index"):
        ta.atr(close, close, series([1.0, 2.0, 3.0], start="2025-01-01"), 2)


def test_series_shorter_than_the_warm_up_is_all_nan():
    close = series([1.0, 2.0])
    assert ta.sma(close, 5).isna().all()
    assert ta.macd(close).isna().all().all()
    assert ta.adx(close, close, close, 14).isna().all()


def test_sma_stays_exact_over_a_million_bars():
    # given: a random walk at BTC prices; a cumsum-based SMA is off by ~1e-11 here
    rng = np.random.default_rng(7)
    values = 50_000.0 + np.cumsum(rng.normal(0.0, 20.0, 1_000_000))
    close = pd.Series(values)
    # when
    mean = ta.sma(close, 20).to_numpy()
    width = ta.bbands(close, 20, 1.0)
    # then: against exact sums at sampled rows
    for row in rng.integers(20, values.size, 200):
        window = values[row - 19 : row + 1]
        assert mean[row] == pytest.approx(math.fsum(window) / 20, rel=1e-13)
        assert width["upper"].iloc[row] - width["middle"].iloc[row] == pytest.approx(np.std(window), rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False), min_size=1, max_size=300),
    n=st.integers(min_value=1, max_value=40),
)
def test_rolling_indicators_agree_with_pandas(values: list[float], n: int):
    close = pd.Series(values)
    expected_mean = close.rolling(n).mean()
    np.testing.assert_allclose(ta.sma(close, n), expected_mean, rtol=1e-9, atol=1e-9 * max(values))
    channel = ta.donchian(close, close, n)
    np.testing.assert_array_equal(channel["upper"], close.rolling(n).max())
    np.testing.assert_array_equal(channel["lower"], close.rolling(n).min())


Indicator = Callable[[pd.DataFrame], pd.Series | pd.DataFrame]

ALL_INDICATORS: dict[str, Indicator] = {
    "sma": lambda c: ta.sma(c["close"], 20),
    "ema": lambda c: ta.ema(c["close"], 20),
    "wma": lambda c: ta.wma(c["close"], 20),
    "rsi": lambda c: ta.rsi(c["close"], 14),
    "macd": lambda c: ta.macd(c["close"], 12, 26, 9),
    "bbands": lambda c: ta.bbands(c["close"], 20, 2.0),
    "stoch": lambda c: ta.stoch(c["high"], c["low"], c["close"], 14, 3, 3),
    "atr": lambda c: ta.atr(c["high"], c["low"], c["close"], 14),
    "adx": lambda c: ta.adx(c["high"], c["low"], c["close"], 14),
    "cci": lambda c: ta.cci(c["high"], c["low"], c["close"], 20),
    "willr": lambda c: ta.willr(c["high"], c["low"], c["close"], 14),
    "mfi": lambda c: ta.mfi(c["high"], c["low"], c["close"], c["volume"], 14),
    "obv": lambda c: ta.obv(c["close"], c["volume"]),
    "vwap": lambda c: ta.vwap(c["high"], c["low"], c["close"], c["volume"]),
    "vwap_week": lambda c: ta.vwap(c["high"], c["low"], c["close"], c["volume"], anchor="W"),
    "donchian": lambda c: ta.donchian(c["high"], c["low"], 20),
    "keltner": lambda c: ta.keltner(c["high"], c["low"], c["close"], 20, 10, 2.0),
    "supertrend": lambda c: ta.supertrend(c["high"], c["low"], c["close"], 10, 3.0),
    "ichimoku": lambda c: ta.ichimoku(c["high"], c["low"], c["close"]),
}


def test_every_indicator_is_covered_by_the_look_ahead_check():
    names = "sma ema wma rsi macd bbands stoch atr adx cci willr mfi obv vwap donchian keltner supertrend ichimoku"
    assert set(names.split()) <= set(ta.__all__)
    assert set(names.split()) == {name.split("_")[0] for name in ALL_INDICATORS}


@pytest.mark.parametrize("name", sorted(ALL_INDICATORS))
def test_indicator_never_looks_ahead(name: str):
    # given: 1h candles long enough for the recompute cycle (1024 bars) to come round twice
    candles = load_candles("BTC-USDT_1h")
    indicator = ALL_INDICATORS[name]
    full = indicator(candles)
    for cut in (1, 30, 77, 1500, 2049, len(candles) - 1):
        # when: only candles 0..cut-1 exist
        partial = indicator(candles.iloc[:cut])
        # then: those rows are exactly what the whole series gave them
        np.testing.assert_array_equal(
            np.asarray(partial, dtype=np.float64), np.asarray(full.iloc[:cut], dtype=np.float64), err_msg=f"cut {cut}"
        )
