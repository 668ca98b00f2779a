"""Reading candle files into a validated frame. No database here: `services.candles_import_file`
writes what these return.

Formats:
- CSV or CSV.gz with the header `timestamp,open,high,low,close,volume` (the platform's own
  export format and ../shared/data/ohlcv); timestamps ISO-8601 UTC or epoch milliseconds.
- Binance public-data kline files (data.binance.vision): CSV without a header, or a ZIP holding
  one; open time in epoch milliseconds (microseconds in files from 2025 on).
- freqtrade JSON: a list of [epoch_ms, open, high, low, close, volume].

Every problem is reported with the file's line number (JSON: the item number) and the reason,
and a file with any problem yields nothing: the caller writes all of it or none of it.
"""

import gzip
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from apps.marketdata import timeframes

HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close", "volume"]
BINANCE_COLUMNS = [
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_base",
    "taker_quote",
    "ignore",
]


class ImportFileError(ValueError):
    """A file that cannot be imported. `line` is 1-based (None when it concerns the whole file)."""

    def __init__(self, reason: str, *, line: int | None = None, name: str = ""):
        self.reason = reason
        self.line = line
        self.name = name
        where = f"{name}: " if name else ""
        where += f"line {line}: " if line is not None else ""
        super().__init__(where + reason)


@dataclass(frozen=True)
class ParsedFile:
    frame: pd.DataFrame
    format: str
    # Where each row came from, to name lines in errors found after parsing.
    first_line: int
    line_step: int = 1


def _open_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ImportFileError(f"not a readable gzip file ({exc})", name=path.name) from exc
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise ImportFileError("a ZIP must hold exactly one .csv file", name=path.name)
            return archive.read(members[0])
    return raw


def read_file(path: Path | str) -> ParsedFile:
    """Parse any supported file into a frame indexed by open time (UTC), unvalidated."""
    path = Path(path)
    if not path.exists():
        raise ImportFileError("no such file", name=str(path))
    try:
        data = _open_bytes(path)
        head = data.lstrip()[:1]
        if head == b"[":
            return _read_freqtrade(data, path.name)
        first_line = data.split(b"\n", 1)[0].decode("utf-8", "replace").strip().lower()
        if first_line[:1].isdigit():
            return _read_binance(io.BytesIO(data), path.name)
        return _read_csv(io.BytesIO(data), first_line, path.name)
    except ImportFileError as exc:
        exc.name = exc.name or path.name
        raise
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"not UTF-8 text (byte {exc.start})", name=path.name) from exc
    except zipfile.BadZipFile as exc:
        raise ImportFileError(f"not a readable ZIP file ({exc})", name=path.name) from exc
    except (ValueError, OverflowError, pd.errors.ParserError) as exc:
        # Anything the parsers reject that the checks above did not name (a time out of
        # range, a malformed row): refuse the file rather than fail.
        raise ImportFileError(f"cannot be read as candles ({exc})", name=path.name) from exc


def _read_csv(buffer: IO[bytes], header_line: str, name: str) -> ParsedFile:
    columns = [c.strip().strip('"') for c in header_line.split(",")]
    missing = [c for c in HEADER if c not in columns]
    if missing:
        raise ImportFileError(
            f"missing column(s) {', '.join(missing)}; the header must be {','.join(HEADER)}", line=1, name=name
        )
    # Column names are matched without case or surrounding blanks ("Timestamp, Open, ...").
    names = [c.lower() for c in columns]
    try:
        # Fast path: the C parser reads the numbers itself.
        table = pd.read_csv(
            buffer,
            header=0,
            names=names,
            usecols=HEADER,
            dtype={"timestamp": str, **dict.fromkeys(PRICE_COLUMNS, "float64")},
            keep_default_na=False,
            na_values=[],
        )
        frame = table[PRICE_COLUMNS]
    except ValueError:
        # Some value is not a number: read everything as text to name the line.
        buffer.seek(0)
        table = pd.read_csv(buffer, header=0, names=names, dtype=str, keep_default_na=False, usecols=HEADER)
        frame = _numbers(table, PRICE_COLUMNS, first_line=2, name=name)
    times = _parse_times(table["timestamp"], first_line=2, name=name)
    frame = frame.set_axis(times, axis=0)
    return ParsedFile(frame=frame, format="csv", first_line=2)


def _read_binance(buffer: IO[bytes], name: str) -> ParsedFile:
    table = pd.read_csv(buffer, header=None, dtype=str, keep_default_na=False)
    if table.shape[1] < 6:
        raise ImportFileError(f"a Binance kline row has 12 fields; found {table.shape[1]}", line=1, name=name)
    table = table.iloc[:, :6]
    table.columns = BINANCE_COLUMNS[:6]
    stamps = _numbers(table, ["open_time"], first_line=1, name=name)["open_time"].to_numpy()
    # Binance spot files switched from milliseconds to microseconds in 2025.
    unit = "us" if len(stamps) and stamps.max() > 1e14 else "ms"
    times = _epoch_index(stamps, unit, where=lambda i: f"line {i + 1}", name=name)
    frame = _numbers(table, PRICE_COLUMNS, first_line=1, name=name)
    frame.index = times
    return ParsedFile(frame=frame, format="binance", first_line=1)


def _read_freqtrade(data: bytes, name: str) -> ParsedFile:
    try:
        rows = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"not valid JSON ({exc.msg})", line=exc.lineno, name=name) from exc
    if not isinstance(rows, list):
        raise ImportFileError("freqtrade JSON must be a list of [time, open, high, low, close, volume]", name=name)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) < 6:
            raise ImportFileError(f"item {i + 1} is not [time, open, high, low, close, volume]", name=name)
    try:
        arr = np.array([row[:6] for row in rows], dtype=np.float64) if rows else np.empty((0, 6))
    except (TypeError, ValueError):
        bad = next(i for i, row in enumerate(rows) if not all(_is_number(v) for v in row[:6]))
        raise ImportFileError(f"item {bad + 1} has a value that is not a number", name=name) from None
    times = _epoch_index(arr[:, 0], "ms", where=lambda i: f"item {i + 1}", name=name)
    frame = pd.DataFrame(arr[:, 1:], columns=PRICE_COLUMNS, index=times)
    return ParsedFile(frame=frame, format="freqtrade", first_line=1)


# Epoch times are accepted from 1970 to 2100; anything else is a unit mix-up or garbage.
_EPOCH_LIMIT_SECONDS = 4_102_444_800
_UNIT_PER_SECOND = {"ms": 1_000, "us": 1_000_000}


def _epoch_index(stamps: np.ndarray, unit: str, *, where: Callable[[int], str], name: str) -> pd.DatetimeIndex:
    values = np.asarray(stamps, dtype=np.float64)
    limit = _EPOCH_LIMIT_SECONDS * _UNIT_PER_SECOND[unit]
    bad = ~np.isfinite(values) | (values < 0) | (values > limit) | (values != np.floor(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ImportFileError(
            f"{where(i)}: time {float(values[i]):g} is not epoch {unit} between 1970 and 2100", name=name
        )
    return pd.DatetimeIndex(pd.to_datetime(values.astype(np.int64), unit=unit, utc=True), name="ts")


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _parse_times(raw: pd.Series, *, first_line: int, name: str) -> pd.DatetimeIndex:
    values = raw
    if len(values) and values.iloc[0].strip().isdigit():
        values = values.str.strip()
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any():
            bad = int(np.flatnonzero(numbers.isna().to_numpy())[0])
            raise ImportFileError(f"timestamp {values.iloc[bad]!r} is not a time", line=first_line + bad, name=name)
        return _epoch_index(
            numbers.to_numpy(dtype=np.float64), "ms", where=lambda i: f"line {first_line + i}", name=name
        )
    try:
        times = pd.to_datetime(values, format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    except (ValueError, TypeError):
        times = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
        if times.isna().any():
            bad = int(np.flatnonzero(times.isna().to_numpy())[0])
            raise ImportFileError(
                f"timestamp {values.iloc[bad]!r} is not an ISO-8601 time", line=first_line + bad, name=name
            ) from None
    return pd.DatetimeIndex(times, name="ts")


def _numbers(table: pd.DataFrame, columns: list[str], *, first_line: int, name: str) -> pd.DataFrame:
    out = {}
    for column in columns:
        try:
            out[column] = table[column].astype(np.float64)
        except ValueError:
            parsed = pd.to_numeric(table[column].str.strip(), errors="coerce")
            bad = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise ImportFileError(
                f"{column} {table[column].iloc[bad]!r} is not a number", line=first_line + bad, name=name
            ) from None
    return pd.DataFrame(out, index=table.index)


def validate(parsed: ParsedFile, timeframe: str, *, name: str = "") -> pd.DataFrame:
    """Check a parsed file against the candle rules; return the frame or raise at the first
    offending line: NaN, non-positive prices, negative volume, high below low or not covering
    open/close, duplicate or out-of-order timestamps, timestamps off the timeframe's grid."""
    frame = parsed.frame
    step = timeframes.seconds(timeframe)
    line = lambda i: parsed.first_line + int(i) * parsed.line_step  # noqa: E731

    def fail(mask: np.ndarray, reason: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise ImportFileError(reason.format(row=frame.iloc[i], ts=frame.index[i]), line=line(i), name=name)

    values = frame[PRICE_COLUMNS]
    fail(values.isna().any(axis=1).to_numpy(), "a value is missing")
    fail(~np.isfinite(values.to_numpy()).all(axis=1), "a value is not a finite number")
    fail((frame[["open", "high", "low", "close"]] <= 0).any(axis=1).to_numpy(), "prices must be positive")
    fail((frame["volume"] < 0).to_numpy(), "volume is negative ({row.volume})")
    fail((frame["high"] < frame["low"]).to_numpy(), "high {row.high} is below low {row.low}")
    top = np.maximum(frame["open"], frame["close"])
    bottom = np.minimum(frame["open"], frame["close"])
    fail((frame["high"] < top).to_numpy(), "high {row.high} is below open/close")
    fail((frame["low"] > bottom).to_numpy(), "low {row.low} is above open/close")
    ns = frame.index.asi8
    if len(ns) > 1:
        diffs = np.diff(ns)
        dup = np.concatenate([[False], diffs == 0])
        fail(dup, "duplicate timestamp {ts:%Y-%m-%dT%H:%M:%SZ}")
        back = np.concatenate([[False], diffs < 0])
        fail(back, "timestamp {ts:%Y-%m-%dT%H:%M:%SZ} is earlier than the line before (out of order)")
    off_grid = ~timeframes.on_grid(frame.index, timeframe)
    fail(
        off_grid,
        "timestamp {ts:%Y-%m-%dT%H:%M:%SZ} is not on the " + timeframe + " grid (bar open times "
        f"are multiples of {step} s from the UTC epoch" + (", Mondays for 1w" if timeframe == "1w" else "") + ")",
    )
    return frame


# The platform's own files (BTC-USDT_5m.csv.gz, SPY_1d.csv), freqtrade's (BTC_USDT-5m.json),
# Binance public data (BTCUSDT-1m-2024-01.zip: the timeframe only, the pair is not unified).
_NAME_PLATFORM = re.compile(r"^(?P<symbol>[A-Za-z0-9.]+(?:-[A-Za-z0-9.]+)?)_(?P<tf>\d+[mhdw])\.(?:csv|json)(?:\.gz)?$")
_NAME_FREQTRADE = re.compile(r"^(?P<base>[A-Za-z0-9]+)_(?P<quote>[A-Za-z0-9]+)-(?P<tf>\d+[mhdw])\.json(?:\.gz)?$")
_NAME_BINANCE = re.compile(r"^[A-Z0-9]+-(?P<tf>\d+[mhdw])-\d{4}-\d{2}(?:-\d{2})?\.(?:zip|csv)$")


def series_from_name(name: str) -> tuple[str | None, str | None]:
    """(symbol, timeframe) as far as a file name tells them, else None for either:
    BTC-USDT_5m.csv.gz -> ("BTC/USDT", "5m"); SPY_1d.csv -> ("SPY", "1d");
    BTC_USDT-5m.json -> ("BTC/USDT", "5m"); BTCUSDT-1m-2024-01.zip -> (None, "1m")."""
    if match := _NAME_FREQTRADE.match(name):
        symbol, tf = f"{match['base']}/{match['quote']}".upper(), match["tf"]
    elif match := _NAME_PLATFORM.match(name):
        symbol, tf = match["symbol"].replace("-", "/").upper(), match["tf"]
    elif match := _NAME_BINANCE.match(name):
        symbol, tf = None, match["tf"]
    else:
        return None, None
    return symbol, tf if tf in timeframes.TIMEFRAMES else None
