"""Storing a backtest's trades in bulk.

PostgreSQL: one binary COPY whose rows NumPy lays out in a few vectorised steps (no Python
object per trade): tens of thousands of trades in a few hundredths of a second. In the binary
format every field carries its own length, so a row's width depends on its text values; rows
are grouped by (side, exit reason, which fields are null), each group is one fixed-width record
type, and the groups are sent one after another (row order does not matter to COPY: `number`
carries it). Other databases (SQLite in embedded mode): one `executemany` of plain tuples, no
model instance per trade.
"""

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.db import connection

from apps.backtests.models import BacktestTrade

TABLE = BacktestTrade._meta.db_table
COLUMNS = (
    "backtest_id",
    "number",
    "side",
    "entry_at",
    "entry_price",
    "exit_at",
    "exit_price",
    "size",
    "fees",
    "pnl",
    "return_pct",
    "bars_held",
    "exit_reason",
)


def _times(values: pd.Series) -> list[datetime | None]:
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    stamps = index.to_pydatetime()
    mask = index.isna()
    return [None if missing else stamp for stamp, missing in zip(stamps, mask, strict=True)]


def _floats(values: pd.Series, *, nullable: bool = False) -> list[float | None]:
    array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    if nullable:
        return [v if math.isfinite(v) else None for v in array.tolist()]
    return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0).tolist()


def trade_rows(backtest_id: int, trades: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Rows in COLUMNS order from the engine's trades frame (numbered from 1 in entry order)."""
    n = len(trades)
    if n == 0:
        return iter(())
    sides = trades["side"].astype(str).str.lower().tolist()
    reasons = trades["exit_reason"].fillna("").astype(str).str.slice(0, 20).tolist()
    bars = pd.to_numeric(trades["bars_held"], errors="coerce").fillna(0).clip(lower=0).astype(np.int64).tolist()
    return zip(
        [backtest_id] * n,
        range(1, n + 1),
        sides,
        _times(trades["entry_at"]),
        _floats(trades["entry_price"]),
        _times(trades["exit_at"]),
        _floats(trades["exit_price"], nullable=True),
        _floats(trades["size"]),
        _floats(trades["fees"]),
        _floats(trades["pnl"]),
        _floats(trades["return_pct"]),
        bars,
        reasons,
        strict=True,
    )


def trades_store(*, backtest_id: int, trades: pd.DataFrame) -> int:
    """Replace the backtest's stored trades with ``trades`` (the engine's frame). Returns how
    many were stored. Precondition: inside the transaction that finishes the backtest."""
    BacktestTrade.objects.filter(backtest_id=backtest_id).delete()
    if not len(trades):
        return 0
    if connection.vendor == "postgresql":
        _copy_postgres(backtest_id, trades)
    else:
        _insert_many(trade_rows(backtest_id, trades))
    return len(trades)


_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000
_NULL = -1


def _micros(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since PostgreSQL's epoch (2000-01-01 UTC), and where the value is missing."""
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    missing = np.asarray(index.isna())
    micros = np.where(missing, 0, index.as_unit("us").asi8) - _PG_EPOCH_US
    return micros, missing


def _copy_buffer(backtest_id: int, trades: pd.DataFrame) -> bytes:
    """The trades in PostgreSQL's binary COPY format, COLUMNS order (see the module docstring)."""
    n = len(trades)
    sides = trades["side"].astype(str).str.lower().to_numpy(dtype=object)
    reasons = trades["exit_reason"].fillna("").astype(str).str.slice(0, 20).to_numpy(dtype=object)
    entry_us, _ = _micros(trades["entry_at"])
    exit_us, exit_missing = _micros(trades["exit_at"])
    floats = {
        name: pd.to_numeric(trades[name], errors="coerce").to_numpy(dtype=np.float64)
        for name in ("entry_price", "exit_price", "size", "fees", "pnl", "return_pct")
    }
    price_missing = ~np.isfinite(floats["exit_price"])
    for name in ("entry_price", "size", "fees", "pnl", "return_pct"):
        floats[name] = np.nan_to_num(floats[name], nan=0.0, posinf=0.0, neginf=0.0)
    bars = pd.to_numeric(trades["bars_held"], errors="coerce").fillna(0).clip(lower=0).to_numpy(dtype=np.int64)
    numbers = np.arange(1, n + 1, dtype=np.int64)
    keys = pd.DataFrame({"side": sides, "reason": reasons, "no_exit": exit_missing, "no_price": price_missing})
    chunks = [_HEADER]
    for (side, reason, no_exit, no_price), rows in keys.groupby(list(keys.columns), sort=False).indices.items():
        side_b, reason_b = str(side).encode(), str(reason).encode()
        fields: list[tuple[str, str]] = [("n", ">i2")]
        fields += [("l_bt", ">i4"), ("bt", ">i8"), ("l_num", ">i4"), ("num", ">i4")]
        fields += [("l_side", ">i4"), ("side", f"S{len(side_b)}")] if side_b else [("l_side", ">i4")]
        fields += [("l_entry", ">i4"), ("entry", ">i8"), ("l_entry_price", ">i4"), ("entry_price", ">f8")]
        fields += [("l_exit", ">i4")] + ([] if no_exit else [("exit", ">i8")])
        fields += [("l_exit_price", ">i4")] + ([] if no_price else [("exit_price", ">f8")])
        for name in ("size", "fees", "pnl", "return_pct"):
            fields += [(f"l_{name}", ">i4"), (name, ">f8")]
        fields += [("l_bars", ">i4"), ("bars", ">i4")]
        fields += [("l_reason", ">i4"), ("reason", f"S{len(reason_b)}")] if reason_b else [("l_reason", ">i4")]
        record = np.zeros(len(rows), dtype=np.dtype(fields))
        record["n"] = len(COLUMNS)
        record["l_bt"], record["bt"] = 8, backtest_id
        record["l_num"], record["num"] = 4, numbers[rows]
        record["l_side"] = len(side_b)
        if side_b:
            record["side"] = side_b
        record["l_entry"], record["entry"] = 8, entry_us[rows]
        record["l_entry_price"], record["entry_price"] = 8, floats["entry_price"][rows]
        if no_exit:
            record["l_exit"] = _NULL
        else:
            record["l_exit"], record["exit"] = 8, exit_us[rows]
        if no_price:
            record["l_exit_price"] = _NULL
        else:
            record["l_exit_price"], record["exit_price"] = 8, floats["exit_price"][rows]
        for name in ("size", "fees", "pnl", "return_pct"):
            record[f"l_{name}"], record[name] = 8, floats[name][rows]
        record["l_bars"], record["bars"] = 4, bars[rows]
        record["l_reason"] = len(reason_b)
        if reason_b:
            record["reason"] = reason_b
        chunks.append(record.tobytes())
    chunks.append(_TRAILER)
    return b"".join(chunks)


def _copy_postgres(backtest_id: int, trades: pd.DataFrame) -> None:
    sql = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        copy.write(_copy_buffer(backtest_id, trades))


def _insert_many(rows: Iterator[tuple[Any, ...]]) -> None:
    adapt = connection.ops.adapt_datetimefield_value
    prepared = [(*row[:3], adapt(row[3]), row[4], adapt(row[5]), *row[6:]) for row in rows]
    placeholders = ", ".join(["%s"] * len(COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders})",  # noqa: S608
            prepared,
        )
