"""signals(): the strategy contract's normalisation of what compute() returns. No database."""

import numpy as np
import pandas as pd
import pytest

from apps.strategies.base import SIGNAL_COLUMNS, Strategy, signals


def flat(n: int) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="timestamp")
    return pd.DataFrame({column: 100.0 for column in ("open", "high", "low", "close", "volume")}, index=index)


class Returns(Strategy):
    """Adds the given columns, as given, to the candles."""

    key = "test_returns"

    def __init__(self, **columns: object) -> None:
        super().__init__()
        self.columns = columns

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        return candles.assign(**self.columns)


def test_signals_treat_a_shifted_float_column_s_warm_up_as_no_signal():
    # given: a 0/1 float signal shifted by two bars, NaN on the first two
    candles = flat(6)
    raw = pd.Series([1.0, 1.0, 0.0, 1.0, 0.0, 0.0], index=candles.index)

    # when
    out = signals(Returns(enter_long=raw.shift(2)), candles)

    # then: NaN is no entry, 1.0 is one
    assert out["enter_long"].tolist() == [False, False, True, True, False, True]
    assert out["enter_long"].dtype == bool


@pytest.mark.parametrize(
    "values",
    [
        pd.array([None, True, False, None], dtype="boolean"),
        pd.array([None, 1, 0, None], dtype="Int64"),
        pd.array([np.nan, 2.5, 0.0, np.nan], dtype="float32"),
        np.array([None, True, False, None], dtype=object),
        pd.Categorical([np.nan, 1.0, 0.0, np.nan]),
    ],
    ids=["boolean", "Int64", "float32", "object", "category"],
)
def test_signals_count_missing_values_of_any_dtype_as_false(values):
    out = signals(Returns(exit_short=values), flat(4))
    assert out["exit_short"].tolist() == [False, True, False, False]


def test_signals_fill_absent_columns_and_keep_boolean_ones():
    candles = flat(3)
    out = signals(Returns(enter_long=np.array([True, False, True])), candles)
    assert list(out.columns) == [*SIGNAL_COLUMNS, "stop_price", "target_price"]
    assert out["enter_long"].tolist() == [True, False, True]
    assert not out[["exit_long", "enter_short", "exit_short"]].to_numpy().any()
    assert out["stop_price"].isna().all() and out.index.equals(candles.index)
