"""Helpers for the strategy tests: real candles cut to a calendar year, reference crosses written
independently of apps.strategies.library._signals, and a comparison that tolerates near-ties.

The references use TA-Lib (the library's own indicators match it to ~1e-9, not to the bit), so a
cross computed from TA-Lib and one from the library can disagree where the two lines are equal to
within rounding. `assert_signals_match` allows a difference only on such bars.
"""

from collections.abc import Iterable

import numpy as np
import pandas as pd

from apps.strategies.base import Strategy, signals
from tests.marketdata.ohlcv import load_candles


def year_of(name: str, year: int) -> pd.DataFrame:
    """The candles of `name` in calendar `year` (UTC)."""
    candles = load_candles(name)
    return candles.loc[f"{year}-01-01" : f"{year}-12-31"]


def cross_above(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray | float) -> np.ndarray:
    """a[t] > b[t] and a[t-1] <= b[t-1], no NaN involved (pandas shift, not the library helper)."""
    left = pd.Series(np.asarray(a, dtype=float))
    right = pd.Series(np.broadcast_to(np.asarray(b, dtype=float), left.shape).copy())
    return ((left > right) & (left.shift(1) <= right.shift(1))).to_numpy()


def cross_below(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray | float) -> np.ndarray:
    left = pd.Series(np.asarray(a, dtype=float))
    right = pd.Series(np.broadcast_to(np.asarray(b, dtype=float), left.shape).copy())
    return ((left < right) & (left.shift(1) >= right.shift(1))).to_numpy()


def near_tie(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray | float, rel: float = 1e-8) -> np.ndarray:
    """Bars where a and b (or their previous values) are equal to within rounding."""
    left = np.asarray(a, dtype=float)
    right = np.broadcast_to(np.asarray(b, dtype=float), left.shape)
    close = np.abs(left - right) <= rel * np.maximum(np.abs(right), 1.0)
    previous = np.zeros_like(close)
    previous[1:] = close[:-1]
    return close | previous


def assert_signals_match(actual: np.ndarray, expected: np.ndarray, ties: np.ndarray | None = None) -> None:
    actual = np.asarray(actual, dtype=bool)
    expected = np.asarray(expected, dtype=bool)
    differ = actual != expected
    if ties is not None:
        differ &= ~ties
    assert not differ.any(), f"signals differ at bars {np.flatnonzero(differ)[:10].tolist()}"
    assert expected.any(), "the reference never fires: the comparison would be vacuous"


def run(strategy: Strategy, candles: pd.DataFrame) -> pd.DataFrame:
    return signals(strategy, candles)


def entries(frame: pd.DataFrame) -> int:
    return int(frame["enter_long"].sum() + frame["enter_short"].sum())


def positions(mask: Iterable[bool]) -> list[int]:
    return np.flatnonzero(np.asarray(list(mask), dtype=bool)).tolist()
