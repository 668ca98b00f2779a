"""Importing candle files: every real file in ../shared/data/ohlcv, broken files refused with
the line and the reason (and nothing written), idempotent re-import, and the CLI."""

import gzip
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from apps.marketdata import importers, services
from apps.marketdata.models import Candle, CandleSeries, Instrument
from apps.marketdata.storage import candles_frame
from tests.conftest import require
from tests.marketdata.ohlcv import OHLCV_DIR

ROOT = Path(__file__).resolve().parents[2]
REAL_FILES = sorted(OHLCV_DIR.glob("*.csv.gz"))
HEADER = "timestamp,open,high,low,close,volume\n"


def _real_files() -> list[object]:
    if REAL_FILES:
        return [pytest.param(path, id=path.name) for path in REAL_FILES]
    return [pytest.param(None, id="no-shared-data")]


def _expected(path: Path) -> pd.DataFrame:
    """The file as pandas reads it, independently of the importer."""
    raw = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(raw.pop("timestamp"), utc=True), name="ts")
    return raw.set_axis(index).astype("float64")


@pytest.fixture
def instrument(db):
    return services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def assert_nothing_stored() -> None:
    assert Candle.objects.count() == 0
    assert not CandleSeries.objects.filter(count__gt=0).exists()


# --- every real file ----------------------------------------------------------------------------


def test_real_data_folder_has_the_manifest_files():
    require(OHLCV_DIR.exists(), f"needs real candles at {OHLCV_DIR} (the shared/ folder beside the repository)")
    assert len(REAL_FILES) == 60


@pytest.mark.parametrize("path", _real_files())
def test_importer_reads_and_validates_real_file(path):
    require(path is not None, f"needs real candles at {OHLCV_DIR}")
    # given
    symbol, timeframe = importers.series_from_name(path.name)
    assert symbol and timeframe

    # when
    parsed = importers.read_file(path)
    frame = importers.validate(parsed, timeframe, name=path.name)

    # then
    expected = _expected(path)
    assert parsed.format == "csv"
    assert frame.index.equals(expected.index)
    np.testing.assert_array_equal(frame[["open", "high", "low", "close", "volume"]].to_numpy(), expected.to_numpy())


@pytest.mark.parametrize("name", ["BTC-USDT_1h", "ETH-BTC_5m", "SPY_1d", "GSPC_1w", "EUR-USD_1d"])
def test_import_real_file_round_trips_exactly(db, name):
    path = OHLCV_DIR / f"{name}.csv.gz"
    require(path.exists(), f"needs real candles at {path}")
    symbol, timeframe = importers.series_from_name(path.name)
    instrument = services.instrument_get_or_create(venue="test", symbol=symbol)

    # when
    result = services.candles_import_file(path=path, instrument=instrument, timeframe=timeframe)

    # then
    expected = _expected(path)
    assert result.rows == result.written == len(expected)
    stored = candles_frame(instrument, timeframe)
    assert stored.index.equals(expected.index)
    np.testing.assert_array_equal(stored.to_numpy(), expected.to_numpy())
    series = CandleSeries.objects.get(instrument=instrument, timeframe=timeframe)
    assert (series.count, series.first_ts, series.last_ts, series.source) == (
        len(expected),
        expected.index[0].to_pydatetime(),
        expected.index[-1].to_pydatetime(),
        "import",
    )


def test_reimport_writes_nothing(instrument):
    path = OHLCV_DIR / "BTC-USDT_1d.csv.gz"
    require(path.exists(), f"needs real candles at {path}")
    first = services.candles_import_file(path=path, instrument=instrument, timeframe="1d")

    # when
    again = services.candles_import_file(path=path, instrument=instrument, timeframe="1d")

    # then
    assert first.written == 366
    assert again.written == 0
    assert CandleSeries.objects.get(instrument=instrument, timeframe="1d").count == 366


def test_import_replaces_a_changed_bar_and_keeps_the_count(instrument, tmp_path):
    rows = ["2024-01-01T00:00:00Z,10,12,9,11,5", "2024-01-01T00:05:00Z,11,13,10,12,6"]
    services.candles_import_file(
        path=write(tmp_path, "a.csv", HEADER + "\n".join(rows)), instrument=instrument, timeframe="5m"
    )
    rows[1] = "2024-01-01T00:05:00Z,11,14,10,12,6"
    rows.append("2024-01-01T00:10:00Z,12,13,11,12,1")

    # when
    result = services.candles_import_file(
        path=write(tmp_path, "b.csv", HEADER + "\n".join(rows)), instrument=instrument, timeframe="5m"
    )

    # then
    assert result.written == 2
    assert candles_frame(instrument, "5m")["high"].tolist() == [12, 14, 13]
    assert CandleSeries.objects.get(instrument=instrument, timeframe="5m").count == 3


# --- broken files ----------------------------------------------------------------------------------

GOOD = [
    "2024-01-01T00:00:00Z,10,12,9,11,5",
    "2024-01-01T00:05:00Z,11,13,10,12,6",
    "2024-01-01T00:10:00Z,12,14,11,13,7",
    "2024-01-01T00:15:00Z,13,15,12,14,8",
]


def _broken(line: int, replacement: str) -> str:
    rows = list(GOOD)
    rows[line - 2] = replacement  # line 1 is the header
    return HEADER + "\n".join(rows) + "\n"


BROKEN_CSV = [
    pytest.param(
        "timestamp,open,high,low,close\n" + "\n".join(r.rsplit(",", 1)[0] for r in GOOD),
        1,
        "missing column(s) volume",
        id="missing-column",
    ),
    pytest.param(
        _broken(4, "2024-01-01T00:10:00Z,12,14,11,abc,7"), 4, "close 'abc' is not a number", id="unparsable-number"
    ),
    pytest.param(_broken(3, "2024-01-01T00:05:00Z,11,9,10,10,6"), 3, "high 9.0 is below low 10.0", id="high-below-low"),
    pytest.param(
        _broken(4, "2024-01-01T00:05:00Z,12,14,11,13,7"),
        4,
        "duplicate timestamp 2024-01-01T00:05:00Z",
        id="duplicate-timestamp",
    ),
    pytest.param(
        _broken(5, "2024-01-01T00:00:30Z,13,15,12,14,8")
        .replace("00:00:30", "00:00:00")
        .replace("2024-01-01T00:00:00Z,13", "2023-12-31T23:55:00Z,13"),
        5,
        "out of order",
        id="out-of-order",
    ),
    pytest.param(_broken(3, "2024-01-01T00:07:00Z,11,13,10,12,6"), 3, "not on the 5m grid", id="off-grid"),
    pytest.param(_broken(5, "yesterday,13,15,12,14,8"), 5, "'yesterday' is not an ISO-8601 time", id="bad-time"),
    pytest.param(_broken(2, "2024-01-01T00:00:00Z,-10,12,9,11,5"), 2, "prices must be positive", id="negative-price"),
]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize(("text", "line", "reason"), BROKEN_CSV)
def test_broken_csv_is_refused_with_line_and_reason(instrument, tmp_path, text, line, reason, suffix):
    path = write(tmp_path, f"broken{suffix}", text)

    with pytest.raises(services.CandleImportError) as refused:
        services.candles_import_file(path=path, instrument=instrument, timeframe="5m")

    assert f"broken{suffix}: line {line}: " in refused.value.message
    assert reason in refused.value.message
    assert_nothing_stored()


def test_broken_file_keeps_what_was_stored(instrument, tmp_path):
    services.candles_import_file(
        path=write(tmp_path, "good.csv", HEADER + "\n".join(GOOD)), instrument=instrument, timeframe="5m"
    )
    before = candles_frame(instrument, "5m")
    changed = [row.replace(",5", ",50") for row in GOOD] + ["2024-01-01T00:15:00Z,13,15,12,14,8"]

    with pytest.raises(services.CandleImportError, match="line 6: duplicate timestamp"):
        services.candles_import_file(
            path=write(tmp_path, "bad.csv", HEADER + "\n".join(changed)), instrument=instrument, timeframe="5m"
        )

    pd.testing.assert_frame_equal(candles_frame(instrument, "5m"), before)


def _freqtrade(rows: list[list[object]]) -> str:
    return json.dumps(rows)


T0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def test_freqtrade_json_imports(instrument, tmp_path):
    rows = [[T0_MS + i * 300_000, 10 + i, 12 + i, 9 + i, 11 + i, 5.5] for i in range(6)]
    path = write(tmp_path, "BTC_USDT-5m.json", _freqtrade(rows))

    result = services.candles_import_file(path=path, instrument=instrument, timeframe="5m")

    assert (result.format, result.written) == ("freqtrade", 6)
    assert candles_frame(instrument, "5m")["close"].tolist() == [11, 12, 13, 14, 15, 16]


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([[T0_MS, 10, 12, 9, 11, 5], [T0_MS + 300_000, 10, "x", 9, 11, 5]], "item 2 has a value that is not a number"),
        (
            [[T0_MS, 10, 12, 9, 11, 5], [T0_MS + 300_000, 10, 12, 9]],
            "item 2 is not [time, open, high, low, close, volume]",
        ),
        ([[T0_MS, 10, 12, 9, 11, 5], [T0_MS, 10, 12, 9, 11, 5]], "line 2: duplicate timestamp"),
        ([[T0_MS, 10, 12, 9, 11, 5], [T0_MS + 300_000, 10, 8, 9, 11, 5]], "line 2: high 8.0 is below low 9.0"),
    ],
)
def test_broken_freqtrade_json_is_refused(instrument, tmp_path, rows, reason):
    path = write(tmp_path, "BTC_USDT-5m.json", _freqtrade(rows))

    with pytest.raises(services.CandleImportError) as refused:
        services.candles_import_file(path=path, instrument=instrument, timeframe="5m")

    assert reason in refused.value.message
    assert_nothing_stored()


def test_invalid_json_names_its_line(instrument, tmp_path):
    path = write(tmp_path, "BTC_USDT-5m.json", "[\n[1704067200000, 1, 2, 0.5, 1, 1],\n[oops]\n]")

    with pytest.raises(services.CandleImportError, match=r"line 3: not valid JSON"):
        services.candles_import_file(path=path, instrument=instrument, timeframe="5m")
    assert_nothing_stored()


def _binance_rows(n: int, unit: str) -> list[str]:
    scale = 1000 if unit == "us" else 1
    rows = []
    for i in range(n):
        t = (T0_MS + i * 60_000) * scale
        close_t = (T0_MS + (i + 1) * 60_000 - 1) * scale + (999 if unit == "us" else 0)
        rows.append(
            f"{t},{100 + i:.8f},{102 + i:.8f},{99 + i:.8f},{101 + i:.8f},{1.5 + i:.8f},{close_t},150.0,42,0.7,70.0,0"
        )
    return rows


def _zip(tmp_path: Path, name: str, rows: list[str]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name.replace(".zip", ".csv"), "\n".join(rows) + "\n")
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_binance_kline_zip_imports(instrument, tmp_path, unit):
    path = _zip(tmp_path, "BTCUSDT-1m-2024-01.zip", _binance_rows(5, unit))

    result = services.candles_import_file(path=path, instrument=instrument, timeframe="1m")

    frame = candles_frame(instrument, "1m")
    assert (result.format, result.written) == ("binance", 5)
    assert frame.index[0] == pd.Timestamp("2024-01-01T00:00:00Z")
    assert frame.index[-1] == pd.Timestamp("2024-01-01T00:04:00Z")
    assert frame.iloc[2].tolist() == [102.0, 104.0, 101.0, 103.0, 3.5]


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_broken_binance_kline_zip_is_refused(instrument, tmp_path, unit):
    rows = _binance_rows(5, unit)
    fields = rows[3].split(",")
    fields[4] = "not-a-price"
    rows[3] = ",".join(fields)
    path = _zip(tmp_path, "BTCUSDT-1m-2024-01.zip", rows)

    with pytest.raises(services.CandleImportError, match=r"line 4: close 'not-a-price' is not a number"):
        services.candles_import_file(path=path, instrument=instrument, timeframe="1m")
    assert_nothing_stored()


def test_binance_csv_off_grid_for_the_timeframe_is_refused(instrument, tmp_path):
    path = tmp_path / "BTCUSDT-1m-2024-01.csv"
    path.write_text("\n".join(_binance_rows(5, "ms")))

    with pytest.raises(
        services.CandleImportError, match=r"line 2: timestamp 2024-01-01T00:01:00Z is not on the 5m grid"
    ):
        services.candles_import_file(path=path, instrument=instrument, timeframe="5m")
    assert_nothing_stored()


def test_unknown_timeframe_is_refused(instrument, tmp_path):
    path = write(tmp_path, "a.csv", HEADER + "\n".join(GOOD))

    with pytest.raises(services.CandleImportError, match="Unknown timeframe '7m'"):
        services.candles_import_file(path=path, instrument=instrument, timeframe="7m")


# --- file names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("BTC-USDT_5m.csv.gz", ("BTC/USDT", "5m")),
        ("SPY_1d.csv", ("SPY", "1d")),
        ("BTC_USDT-1h.json", ("BTC/USDT", "1h")),
        ("BTCUSDT-1m-2024-01.zip", (None, "1m")),
        ("BTCUSDT-15m-2024-01-31.csv", (None, "15m")),
        ("X_7m.csv", ("X", None)),
        ("candles.csv", (None, None)),
    ],
)
def test_series_from_name(name, expected):
    assert importers.series_from_name(name) == expected


# --- the command ----------------------------------------------------------------------------------


def test_import_command_infers_series_from_file_name(db, tmp_path):
    source = OHLCV_DIR / "ETH-BTC_5m.csv.gz"
    require(source.exists(), f"needs real candles at {source}")
    out = io.StringIO()

    call_command("import_candles", str(source), "--venue", "Binance", stdout=out)

    instrument = Instrument.objects.get()
    assert (instrument.venue, instrument.symbol, instrument.base, instrument.quote) == (
        "binance",
        "ETH/BTC",
        "ETH",
        "BTC",
    )
    assert (
        "ETH/BTC @ binance 5m (csv): 5760 rows, 5760 written, 2018-01-10 04:55 .. 2018-01-30 04:50 UTC"
        in out.getvalue()
    )

    # when: again
    out = io.StringIO()
    call_command("import_candles", str(source), "--venue", "binance", stdout=out)

    # then
    assert "5760 rows, 0 written" in out.getvalue()


def test_import_command_takes_several_files_and_explicit_series(db, tmp_path):
    a = write(tmp_path, "a.csv", HEADER + "\n".join(GOOD[:2]))
    b = write(tmp_path, "b.csv.gz", HEADER + "\n".join(GOOD[2:]))
    out = io.StringIO()

    call_command(
        "import_candles",
        str(a),
        str(b),
        "--venue",
        "oanda",
        "--symbol",
        "eur/usd",
        "--timeframe",
        "5m",
        "--asset-class",
        "forex",
        stdout=out,
    )

    instrument = Instrument.objects.get()
    assert (instrument.symbol, instrument.asset_class) == ("EUR/USD", "forex")
    assert len(candles_frame(instrument, "5m")) == 4
    assert out.getvalue().count("2 written") == 2


def test_import_command_refuses_a_broken_file_with_exit_code_2(db, tmp_path):
    good = write(tmp_path, "good.csv", HEADER + "\n".join(GOOD))
    bad = write(tmp_path, "bad.csv", _broken(3, "2024-01-01T00:05:00Z,11,9,10,10,6"))
    err = io.StringIO()

    with pytest.raises(CommandError) as failed:
        call_command(
            "import_candles",
            str(bad),
            str(good),
            "--venue",
            "binance",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "5m",
            stdout=io.StringIO(),
            stderr=err,
        )

    assert failed.value.returncode == 2
    assert "bad.csv: line 3: high 9.0 is below low 10.0" in err.getvalue()
    assert "1 of 2 file(s) refused" in str(failed.value)
    # the good file is imported; nothing of the bad one
    assert Candle.objects.count() == 4


def test_import_command_needs_a_series_it_cannot_infer(db, tmp_path):
    path = write(tmp_path, "candles.csv", HEADER + "\n".join(GOOD))
    err = io.StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("import_candles", str(path), "--venue", "binance", stderr=err)

    assert failed.value.returncode == 2
    assert "pass --symbol and --timeframe" in err.getvalue()
    assert not Instrument.objects.exists()


def test_import_command_unknown_timeframe_exits_2(db, tmp_path):
    path = write(tmp_path, "a.csv", HEADER + "\n".join(GOOD))

    with pytest.raises(CommandError, match="Unknown timeframe '7m'") as failed:
        call_command("import_candles", str(path), "--venue", "binance", "--symbol", "BTC/USDT", "--timeframe", "7m")

    assert failed.value.returncode == 2


def _manage(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    # A database without tables: these runs must fail before they touch one.
    env.update(DJANGO_SETTINGS_MODULE="tradingplatform.settings.test", DATABASE_URL=f"sqlite:///{tmp_path}/none.db")
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_import_command_exit_code_and_stderr_in_a_process(tmp_path):
    bad = write(tmp_path, "BTC-USDT_5m.csv", _broken(4, "2024-01-01T00:10:00Z,12,14,11,abc,7"))

    done = _manage("import_candles", str(bad), "--venue", "binance", tmp_path=tmp_path)

    assert done.returncode == 2, done.stderr
    assert "BTC-USDT_5m.csv: line 4: close 'abc' is not a number" in done.stderr
    assert done.stdout == ""


def test_import_command_unknown_timeframe_exit_code_in_a_process(tmp_path):
    path = write(tmp_path, "a.csv", HEADER + "\n".join(GOOD))

    done = _manage(
        "import_candles", str(path), "--venue", "binance", "--symbol", "X", "--timeframe", "2d", tmp_path=tmp_path
    )

    assert done.returncode == 2
    assert "Unknown timeframe '2d'" in done.stderr


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("latin1.csv", HEADER.encode() + b"2021-01-01T00:00:00Z,1,2,0.5,1.5,10\xff\n", "not UTF-8"),
        ("corrupt.zip", b"PK\x03\x04garbage", "not a readable ZIP"),
        ("null_time.json", b"[[null, 1, 2, 0.5, 1.5, 1]]", "item 1: time nan is not epoch ms"),
        ("far_time.json", b"[[1e20, 1, 2, 0.5, 1.5, 1]]", "item 1: time 1e+20 is not epoch ms"),
        ("far_time.csv", b"99999999999999999,1,2,0.5,1.5,1,0,0,0,0,0,0\n", "line 1: time 1e+17 is not epoch us"),
        ("infinite.csv", HEADER.encode() + b"2021-01-01T00:00:00Z,1,inf,0.5,1.5,10\n", "not a finite number"),
        ("huge.csv", HEADER.encode() + b"2021-01-01T00:00:00Z,1,1e309,0.5,1.5,10\n", "not a finite number"),
    ],
)
def test_malformed_files_are_refused_not_crashed_on(instrument, tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(services.CandleImportError, match=re.escape(reason)):
        services.candles_import_file(path=path, instrument=instrument, timeframe="1m")

    assert not Candle.objects.filter(instrument=instrument).exists()


def test_header_names_are_matched_without_case_or_blanks(instrument, tmp_path):
    path = write(
        tmp_path, "caps.csv", "Timestamp, Open, High, Low, Close, Volume\n2021-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
    )

    result = services.candles_import_file(path=path, instrument=instrument, timeframe="1m")

    assert result.written == 1
    assert candles_frame(instrument, "1m")["high"].tolist() == [2.0]
