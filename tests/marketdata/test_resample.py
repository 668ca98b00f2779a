"""Deriving higher timeframes, against bars checked by hand."""

import numpy as np
import pandas as pd
import pytest

from apps.marketdata import services, timeframes
from apps.marketdata.storage import candles_frame, candles_write
from tests.conftest import require
from tests.marketdata.ohlcv import OHLCV_DIR, load_candles

COLUMNS = ["open", "high", "low", "close", "volume"]


def bars(start: str, step: str, rows: list[tuple[float, float, float, float, float]]) -> pd.DataFrame:
    index = pd.date_range(start, periods=len(rows), freq=step, tz="UTC", name="ts")
    return pd.DataFrame(rows, columns=COLUMNS, index=index, dtype="float64")


# Twelve 5m bars of one hour, 2024-01-01 10:00-10:55 UTC.
TWELVE = [
    (100.0, 101.0, 99.5, 100.5, 1.0),
    (100.5, 102.0, 100.0, 101.5, 2.0),
    (101.5, 101.5, 98.0, 98.5, 3.0),  # lowest low 98.0
    (98.5, 99.0, 98.2, 98.9, 0.5),
    (98.9, 100.0, 98.9, 99.9, 1.5),
    (99.9, 104.5, 99.8, 104.0, 4.0),  # highest high 104.5
    (104.0, 104.2, 103.0, 103.1, 2.5),
    (103.1, 103.5, 102.0, 102.2, 1.0),
    (102.2, 102.8, 101.9, 102.7, 0.25),
    (102.7, 103.0, 102.5, 102.6, 0.75),
    (102.6, 102.9, 102.1, 102.3, 1.25),
    (102.3, 102.4, 101.8, 102.0, 2.0),  # last close 102.0
]


def test_twelve_5m_bars_make_one_1h_bar():
    frame = bars("2024-01-01 10:00", "5min", TWELVE)

    hourly = timeframes.resample(frame, "1h", source="5m")

    assert list(hourly.index) == [pd.Timestamp("2024-01-01 10:00", tz="UTC")]
    # open of the first, high max, low min, close of the last, volume sum (= 19.75)
    assert hourly.iloc[0].tolist() == [100.0, 104.5, 98.0, 102.0, 19.75]


def test_incomplete_hour_is_dropped():
    frame = bars("2024-01-01 10:00", "5min", TWELVE + TWELVE[:11])  # 10:00 complete, 11:00 has 11 of 12

    hourly = timeframes.resample(frame, "1h", source="5m")

    assert list(hourly.index) == [pd.Timestamp("2024-01-01 10:00", tz="UTC")]


def test_hole_inside_the_hour_drops_it_and_partial_bars_are_kept_on_request():
    frame = bars("2024-01-01 10:00", "5min", TWELVE).drop(pd.Timestamp("2024-01-01 10:30", tz="UTC"))

    assert timeframes.resample(frame, "1h", source="5m").empty
    partial = timeframes.resample(frame, "1h", source="5m", complete_only=False)
    assert partial.iloc[0].tolist() == [100.0, 104.5, 98.0, 102.0, 17.25]


def test_hour_starting_mid_way_is_dropped_and_next_is_aligned_on_the_hour():
    frame = bars("2024-01-01 10:35", "5min", TWELVE + TWELVE[:5])  # 10:35 .. 11:55

    hourly = timeframes.resample(frame, "1h", source="5m")

    assert list(hourly.index) == [pd.Timestamp("2024-01-01 11:00", tz="UTC")]
    # 11:00 is the 6th bar of the input: TWELVE[5:] + TWELVE[:5]
    expected = TWELVE[5:] + TWELVE[:5]
    assert hourly.iloc[0].tolist() == [
        expected[0][0],
        max(r[1] for r in expected),
        min(r[2] for r in expected),
        expected[-1][3],
        sum(r[4] for r in expected),
    ]


def test_daily_from_hourly_at_utc_midnight():
    rows = [(10.0 + h, 11.0 + h, 9.0 + h, 10.5 + h, 1.0) for h in range(49)]
    frame = bars("2024-03-09 23:00", "1h", rows)  # one hour of the 9th, all of the 10th and 11th

    daily = timeframes.resample(frame, "1d", source="1h")

    assert list(daily.index) == [pd.Timestamp("2024-03-10", tz="UTC"), pd.Timestamp("2024-03-11", tz="UTC")]
    # 10 March: hours 1..24 of the input
    assert daily.iloc[0].tolist() == [11.0, 35.0, 10.0, 34.5, 24.0]
    assert daily.iloc[1].tolist() == [35.0, 59.0, 34.0, 58.5, 24.0]


def test_weekly_bars_open_on_monday():
    rows = [(float(d + 1), d + 2.0, d + 0.5, d + 1.5, 10.0) for d in range(17)]
    frame = bars("2024-01-03", "1D", rows)  # Wednesday 3 Jan .. Friday 19 Jan

    weekly = timeframes.resample(frame, "1w", source="1d")

    # the week of Monday 1 Jan is incomplete; 8 Jan (a Monday) is the only whole week
    assert list(weekly.index) == [pd.Timestamp("2024-01-08", tz="UTC")]
    assert weekly.index[0].day_of_week == 0
    # 8 Jan is day 5 of the input
    assert weekly.iloc[0].tolist() == [6.0, 13.0, 5.5, 12.5, 70.0]


def test_floor_and_on_grid_for_weeks():
    monday = pd.Timestamp("2024-01-08", tz="UTC").to_pydatetime()
    assert timeframes.floor(pd.Timestamp("2024-01-14 23:59", tz="UTC").to_pydatetime(), "1w") == monday
    assert timeframes.floor(pd.Timestamp("2024-01-08 00:00", tz="UTC").to_pydatetime(), "1w") == monday


@pytest.mark.parametrize(
    ("source", "target", "ok"),
    [
        ("1m", "5m", True),
        ("5m", "15m", True),
        ("15m", "1h", True),
        ("1h", "4h", True),
        ("4h", "1d", True),
        ("1d", "1w", True),
        ("3m", "5m", False),
        ("1h", "30m", False),
        ("1h", "1h", False),
    ],
)
def test_can_derive(source, target, ok):
    assert timeframes.can_derive(source, target) is ok


def test_derivation_chain():
    assert timeframes.DERIVATION_CHAIN == ["1m", "5m", "15m", "1h", "4h", "1d"]
    for lower, higher in zip(timeframes.DERIVATION_CHAIN, timeframes.DERIVATION_CHAIN[1:], strict=False):
        assert timeframes.can_derive(lower, higher)


def test_derive_through_the_store(db):
    instrument = services.instrument_get_or_create(venue="test", symbol="BTC/USDT")
    candles_write(
        instrument=instrument, timeframe="5m", frame=bars("2024-01-01 10:00", "5min", TWELVE * 2), source="import"
    )

    written = services.candles_derive(instrument=instrument, source="5m", target="1h")

    hourly = candles_frame(instrument, "1h")
    assert written == 2
    assert hourly.iloc[0].tolist() == [100.0, 104.5, 98.0, 102.0, 19.75]
    assert services.candles_derive(instrument=instrument, source="5m", target="1h") == 0


def test_real_5m_bars_resample_to_the_real_1h_bars():
    five = load_candles("BTC-USDT_5m")
    hourly = load_candles("BTC-USDT_1h")
    require((OHLCV_DIR / "BTC-USDT_1h.csv.gz").exists(), "needs the 1h file")

    derived = timeframes.resample(five, "1h", source="5m")

    common = derived.index.intersection(hourly.index)
    assert len(common) > 5000
    np.testing.assert_allclose(
        derived.loc[common, ["open", "high", "low", "close"]],
        hourly.loc[common, ["open", "high", "low", "close"]],
        rtol=0,
        atol=0,
    )
    # The two files were downloaded at different times: three hours of the source differ in
    # volume (by up to 4 %), every other hour agrees to rounding.
    volume_equal = np.isclose(derived.loc[common, "volume"], hourly.loc[common, "volume"], rtol=1e-9, atol=0)
    assert (~volume_equal).sum() <= 3
