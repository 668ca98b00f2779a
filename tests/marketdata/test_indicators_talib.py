"""Parity with TA-Lib on real candles: same values (1e-9 relative) and the same warm-up rows.

The tolerance is relative 1e-9 with an absolute floor of 1e-9 times the series' largest value, for
rows at or near zero (MACD crossings, a stochastic at 0) where a relative test means nothing.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import talib

from apps.marketdata import indicators as ta
from tests.marketdata.ohlcv import load_candles

DATASETS = ["BTC-USDT_1h", "SPY_1d", "EUR-USD_1h", "ETH-BTC_5m"]

Case = Callable[[pd.DataFrame], tuple[pd.DataFrame | pd.Series, list[np.ndarray]]]


def hlc(candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return candles["high"].to_numpy(), candles["low"].to_numpy(), candles["close"].to_numpy()


CASES: dict[str, Case] = {
    "sma": lambda c: (ta.sma(c["close"], 20), [talib.SMA(c["close"].to_numpy(), 20)]),
    "sma_long": lambda c: (ta.sma(c["close"], 200), [talib.SMA(c["close"].to_numpy(), 200)]),
    "ema": lambda c: (ta.ema(c["close"], 20), [talib.EMA(c["close"].to_numpy(), 20)]),
    "ema_long": lambda c: (ta.ema(c["close"], 200), [talib.EMA(c["close"].to_numpy(), 200)]),
    "wma": lambda c: (ta.wma(c["close"], 30), [talib.WMA(c["close"].to_numpy(), 30)]),
    "rsi": lambda c: (ta.rsi(c["close"], 14), [talib.RSI(c["close"].to_numpy(), 14)]),
    "rsi_short": lambda c: (ta.rsi(c["close"], 2), [talib.RSI(c["close"].to_numpy(), 2)]),
    "macd": lambda c: (
        ta.macd(c["close"], 12, 26, 9),
        list(talib.MACD(c["close"].to_numpy(), fastperiod=12, slowperiod=26, signalperiod=9)),
    ),
    "macd_odd": lambda c: (
        ta.macd(c["close"], 5, 35, 5),
        list(talib.MACD(c["close"].to_numpy(), fastperiod=5, slowperiod=35, signalperiod=5)),
    ),
    "bbands": lambda c: (
        ta.bbands(c["close"], 20, 2.0),
        list(talib.BBANDS(c["close"].to_numpy(), timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=talib.MA_Type.SMA)),
    ),
    "stoch": lambda c: (
        ta.stoch(c["high"], c["low"], c["close"], 14, 3, 3),
        list(
            talib.STOCH(
                *hlc(c),
                fastk_period=14,
                slowk_period=3,
                slowk_matype=talib.MA_Type.SMA,
                slowd_period=3,
                slowd_matype=talib.MA_Type.SMA,
            )
        ),
    ),
    "atr": lambda c: (
        ta.atr(c["high"], c["low"], c["close"], 14),
        [talib.ATR(*hlc(c), 14)],
    ),
    "atr_1": lambda c: (
        ta.atr(c["high"], c["low"], c["close"], 1),
        [talib.TRANGE(*hlc(c))],
    ),
    "adx": lambda c: (
        ta.adx(c["high"], c["low"], c["close"], 14),
        [talib.ADX(*hlc(c), 14)],
    ),
    "cci": lambda c: (
        ta.cci(c["high"], c["low"], c["close"], 20),
        [talib.CCI(*hlc(c), 20)],
    ),
    "willr": lambda c: (
        ta.willr(c["high"], c["low"], c["close"], 14),
        [talib.WILLR(*hlc(c), 14)],
    ),
    "mfi": lambda c: (
        ta.mfi(c["high"], c["low"], c["close"], c["volume"], 14),
        [talib.MFI(*hlc(c), c["volume"].to_numpy(), 14)],
    ),
    "obv": lambda c: (ta.obv(c["close"], c["volume"]), [talib.OBV(c["close"].to_numpy(), c["volume"].to_numpy())]),
    "donchian": lambda c: (
        ta.donchian(c["high"], c["low"], 20)[["upper", "lower"]],
        [talib.MAX(c["high"].to_numpy(), 20), talib.MIN(c["low"].to_numpy(), 20)],
    ),
}


def assert_matches_talib(ours: pd.DataFrame | pd.Series, reference: list[np.ndarray]) -> None:
    frame = ours.to_frame() if isinstance(ours, pd.Series) else ours
    assert len(frame.columns) == len(reference)
    for column, expected in zip(frame.columns, reference, strict=True):
        actual = frame[column].to_numpy()
        assert actual.dtype == np.float64
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"warm-up of {column}")
        scale = np.nanmax(np.abs(expected)) if not np.all(np.isnan(expected)) else 1.0
        np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-9 * scale, err_msg=column)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_indicator_matches_talib_on_real_candles(dataset: str, case: str) -> None:
    # given
    candles = load_candles(dataset)
    # when
    ours, reference = CASES[case](candles)
    # then
    assert_matches_talib(ours, reference)


def test_leading_nans_are_skipped_like_talib() -> None:
    # given: a series whose first 30 rows are missing
    close = load_candles("BTC-USDT_1h")["close"].iloc[:500].copy()
    close.iloc[:30] = np.nan
    # then
    assert_matches_talib(ta.ema(close, 10), [talib.EMA(close.to_numpy(), 10)])
    assert_matches_talib(ta.rsi(close, 14), [talib.RSI(close.to_numpy(), 14)])
    assert_matches_talib(ta.macd(close, 12, 26, 9), list(talib.MACD(close.to_numpy(), 12, 26, 9)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_indicator_matches_talib_on_a_tiny_priced_instrument(case: str) -> None:
    # given: real candles rescaled to prices around 1e-4 and tiny volumes, where an absolute
    # "is zero" threshold (TA-Lib had 1e-8 ones before 0.6) would show
    candles = load_candles("BTC-USDT_1h").iloc[:3000] * 1e-8
    # when
    ours, reference = CASES[case](candles)
    # then
    assert_matches_talib(ours, reference)
