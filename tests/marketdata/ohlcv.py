"""Real candles from ../shared/data/ohlcv (see its MANIFEST.md) for indicator tests."""

from functools import cache
from pathlib import Path

import pandas as pd

from tests.conftest import require

OHLCV_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ohlcv"


@cache
def _read(name: str) -> pd.DataFrame:
    frame = pd.read_csv(OHLCV_DIR / f"{name}.csv.gz")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp"), utc=True), name="timestamp")
    return frame.astype("float64")


def load_candles(name: str) -> pd.DataFrame:
    """The candles of `name` (e.g. "BTC-USDT_1h"); skips (fails under CI) where the data is missing."""
    path = OHLCV_DIR / f"{name}.csv.gz"
    require(path.exists(), f"needs real candles at {path} (the shared/ folder beside the repository)")
    return _read(name).copy()


def assert_bars_equal(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same open times and the same OHLCV values, exactly (whatever the index's time unit:
    PostgreSQL reads come back in ns, SQLite reads in us)."""
    columns = ["open", "high", "low", "close", "volume"]
    assert list(actual.columns) == columns
    pd.testing.assert_index_equal(
        pd.DatetimeIndex(actual.index).as_unit("ns"),
        pd.DatetimeIndex(expected.index).as_unit("ns"),
        check_names=False,
        check_freq=False,
    )
    pd.testing.assert_frame_equal(
        actual[columns].reset_index(drop=True), expected[columns].reset_index(drop=True), check_dtype=True
    )
