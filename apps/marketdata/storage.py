"""How every other part reads and writes candles.

`candles_frame(instrument, timeframe, start, end)` returns a DataFrame indexed by open time
(UTC) with float64 columns open, high, low, close, volume. `candles_write(...)` upserts a frame:
re-writing the same bars changes nothing, and a bar that differs is replaced.

On PostgreSQL both use COPY in binary format: rows travel as fixed-width records that NumPy
reads or writes in one call, which is what makes a million candles a sub-second read. Other
databases (SQLite in embedded mode) use the ORM.
"""

from datetime import datetime

import numpy as np
import pandas as pd
import psycopg
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Min, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format

from apps.marketdata import timeframes
from apps.marketdata.models import Candle, CandleSeries, Instrument

COLUMNS = ["open", "high", "low", "close", "volume"]
# PostgreSQL's binary COPY: per row an int16 field count, then per field an int32 length and
# the value (timestamptz = int64 microseconds since 2000-01-01 UTC; float8 = IEEE double),
# all big-endian. Six NOT NULL fixed-width fields make every row 74 bytes.
_ROW = np.dtype(
    [("n", ">i2"), ("l0", ">i4"), ("ts", ">i8")]
    + [(part, t) for name in COLUMNS for part, t in ((f"l_{name}", ">i4"), (name, ">f8"))]
)
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000


def empty_frame() -> pd.DataFrame:
    index = pd.DatetimeIndex([], tz="UTC", name="ts")
    return pd.DataFrame({c: np.array([], dtype="float64") for c in COLUMNS}, index=index)


def _instrument_id(instrument: Instrument | int) -> int:
    return instrument if isinstance(instrument, int) else int(instrument.pk)


def candles_frame(
    instrument: Instrument | int,
    timeframe: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    limit: int | None = None,
) -> pd.DataFrame:
    """Candles of one series with open time in [start, end), oldest first.

    With `limit` and no `start`, the newest `limit` bars before `end` (the tick's warm-up read).
    """
    timeframes.seconds(timeframe)
    instrument_id = _instrument_id(instrument)
    if connection.vendor == "postgresql":
        return _frame_postgres(instrument_id, timeframe, start, end, limit)
    return _frame_orm(instrument_id, timeframe, start, end, limit)


def _where(
    instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None
) -> tuple[str, list[object]]:
    sql = "instrument_id = %s AND timeframe = %s"
    params: list[object] = [instrument_id, timeframe]
    if start is not None:
        sql += " AND ts >= %s"
        params.append(start)
    if end is not None:
        sql += " AND ts < %s"
        params.append(end)
    return sql, params


class _RawBinary(Loader):
    """Hands back a column's binary wire value untouched, for NumPy to parse in one call."""

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


_FLOAT8_ARRAY_OID = 1022
_TIMESTAMPTZ_ARRAY_OID = 1185
# A binary array: ndim, has-null flag, element type, then (size, lower bound) for its one
# dimension; then each element as an int32 length and the value.
_ARRAY_HEADER = 20
_F8_ITEM = np.dtype([("len", ">i4"), ("v", ">f8")])
_I8_ITEM = np.dtype([("len", ">i4"), ("v", ">i8")])


def _array(data: bytes, item: np.dtype) -> np.ndarray:
    if len(data) <= 12:  # an empty array has no dimension block
        return np.array([], dtype=item["v"].newbyteorder("="))
    return np.frombuffer(data, dtype=item, offset=_ARRAY_HEADER)["v"]


def _frame_postgres(
    instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None, limit: int | None
) -> pd.DataFrame:
    """One row of six arrays in binary: the server aggregates, NumPy parses each array in one
    call, so no Python object is made per candle. All six aggregates consume the same rows in
    the same order, so they line up; the order itself is restored here with a sort."""
    where, params = _where(instrument_id, timeframe, start, end)
    source = f"SELECT ts, open, high, low, close, volume FROM marketdata_candle WHERE {where}"  # noqa: S608
    if limit is not None:
        direction = "DESC" if start is None else "ASC"
        source += f" ORDER BY ts {direction} LIMIT %s"
        params.append(int(limit))
    aggregates = ", ".join(f"array_agg({c})" for c in COLUMNS)
    query = (
        "SELECT array_agg(ts), "  # noqa: S608
        f"{aggregates} FROM ({source}) AS bars"
    )
    connection.ensure_connection()
    # Django's cursors bind parameters client-side, which cannot ask for binary results; a
    # plain psycopg cursor on the same connection (same transaction) can.
    with psycopg.Cursor(connection.connection) as raw:
        raw.adapters.register_loader(_FLOAT8_ARRAY_OID, _RawBinary)
        raw.adapters.register_loader(_TIMESTAMPTZ_ARRAY_OID, _RawBinary)
        raw.execute(query, params, binary=True)
        row = raw.fetchone()
    if row is None or row[0] is None:
        return empty_frame()
    micros = _array(row[0], _I8_ITEM).astype(np.int64) + _PG_EPOCH_US
    argsort = np.argsort(micros, kind="stable")
    order: np.ndarray | slice = slice(None) if (argsort == np.arange(len(argsort))).all() else argsort
    index = pd.DatetimeIndex((micros[order] * 1000).view("datetime64[ns]"), name="ts").tz_localize("UTC")
    data = {c: _array(row[i + 1], _F8_ITEM)[order].astype(np.float64) for i, c in enumerate(COLUMNS)}
    return pd.DataFrame(data, index=index)


def _frame_orm(
    instrument_id: int, timeframe: str, start: datetime | None, end: datetime | None, limit: int | None
) -> pd.DataFrame:
    qs = Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe)
    if start is not None:
        qs = qs.filter(ts__gte=start)
    if end is not None:
        qs = qs.filter(ts__lt=end)
    if limit is not None and start is None:
        rows = list(qs.order_by("-ts").values_list("ts", *COLUMNS)[:limit])[::-1]
    else:
        qs = qs.order_by("ts")
        rows = list(qs.values_list("ts", *COLUMNS)[:limit] if limit is not None else qs.values_list("ts", *COLUMNS))
    if not rows:
        return empty_frame()
    arr = np.array([r[1:] for r in rows], dtype=np.float64)
    index = pd.DatetimeIndex([r[0] for r in rows], name="ts")
    index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    return pd.DataFrame(arr, index=index, columns=COLUMNS)


def _check_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"Candle frame lacks columns: {', '.join(missing)}")
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
        raise ValueError("Candle frame needs a timezone-aware DatetimeIndex of open times.")


@transaction.atomic
def candles_write(*, instrument: Instrument | int, timeframe: str, frame: pd.DataFrame, source: str = "") -> int:
    """Upsert the bars of `frame` (validated by the caller) and bring the series' summary up
    to date.

    Returns how many bars were inserted or changed. Idempotent: writing the same bars again
    returns 0. Runs in one transaction: all bars are written or none.
    """
    timeframes.seconds(timeframe)
    _check_frame(frame)
    instrument_id = _instrument_id(instrument)
    if frame.empty:
        return 0
    frame = frame.tz_convert("UTC") if str(frame.index.tz) != "UTC" else frame
    if connection.vendor == "postgresql":
        changed, inserted = _write_postgres(instrument_id, timeframe, frame)
    elif connection.vendor == "sqlite" and not frame.index.microsecond.any():
        changed, inserted = _write_sqlite(instrument_id, timeframe, frame)
    else:
        changed, inserted = _write_orm(instrument_id, timeframe, frame)
    _series_extend(
        instrument_id=instrument_id,
        timeframe=timeframe,
        first=frame.index.min().to_pydatetime(),
        last=frame.index.max().to_pydatetime(),
        inserted=inserted,
        source=source,
    )
    return changed


def _series_extend(
    *, instrument_id: int, timeframe: str, first: datetime, last: datetime, inserted: int, source: str
) -> None:
    """Widen the series' range and add the newly inserted bars to its count: constant work,
    where counting the whole series again after every page of a long backfill would grow
    with the square of its length. A series seen for the first time is counted once."""
    fields: dict[str, object] = {
        "first_ts": Least(Coalesce(F("first_ts"), Value(first)), Value(first)),
        "last_ts": Greatest(Coalesce(F("last_ts"), Value(last)), Value(last)),
        "count": F("count") + inserted,
        "updated_at": timezone.now(),
    }
    if source:
        fields["source"] = source
    if not CandleSeries.objects.filter(instrument_id=instrument_id, timeframe=timeframe).update(**fields):
        series_refresh(instrument_id=instrument_id, timeframe=timeframe, source=source)


def _copy_buffer(frame: pd.DataFrame) -> bytes:
    rows = np.empty(len(frame), dtype=_ROW)
    rows["n"] = 6
    rows["l0"] = 8
    rows["ts"] = frame.index.as_unit("us").asi8 - _PG_EPOCH_US
    for name in COLUMNS:
        rows[f"l_{name}"] = 8
        rows[name] = frame[name].to_numpy(dtype=np.float64)
    return _HEADER + rows.tobytes() + _TRAILER


def _copy_direct_buffer(instrument_id: int, timeframe: str, frame: pd.DataFrame) -> bytes:
    tf = timeframe.encode()
    row = np.dtype(
        [
            ("n", ">i2"),
            ("l_inst", ">i4"),
            ("inst", ">i8"),
            ("l_tf", ">i4"),
            ("tf", f"S{len(tf)}"),
            ("l_ts", ">i4"),
            ("ts", ">i8"),
        ]
        + [(part, t) for name in COLUMNS for part, t in ((f"l_{name}", ">i4"), (name, ">f8"))]
    )
    rows = np.empty(len(frame), dtype=row)
    rows["n"] = 8
    rows["l_inst"], rows["inst"] = 8, instrument_id
    rows["l_tf"], rows["tf"] = len(tf), tf
    rows["l_ts"], rows["ts"] = 8, frame.index.as_unit("us").asi8 - _PG_EPOCH_US
    for name in COLUMNS:
        rows[f"l_{name}"] = 8
        rows[name] = frame[name].to_numpy(dtype=np.float64)
    return _HEADER + rows.tobytes() + _TRAILER


def _write_postgres(instrument_id: int, timeframe: str, frame: pd.DataFrame) -> tuple[int, int]:
    """Returns (bars inserted or changed, bars inserted)."""
    overlaps = Candle.objects.filter(
        instrument_id=instrument_id, timeframe=timeframe, ts__gte=frame.index[0], ts__lte=frame.index[-1]
    ).exists()
    if not overlaps:
        # Nothing stored in this range: COPY straight into the table. If a concurrent writer
        # got there first the unique constraint fails the savepoint and the upsert runs.
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                columns = ", ".join(["instrument_id", "timeframe", "ts", *COLUMNS])
                sql = f"COPY marketdata_candle ({columns}) FROM STDIN (FORMAT BINARY)"
                with cursor.cursor.copy(sql) as copy:
                    copy.write(_copy_direct_buffer(instrument_id, timeframe, frame))
            return len(frame), len(frame)
        except IntegrityError:
            pass
    return _upsert_postgres(instrument_id, timeframe, frame)


def _upsert_postgres(instrument_id: int, timeframe: str, frame: pd.DataFrame) -> tuple[int, int]:
    set_cols = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)
    old = ", ".join(f"marketdata_candle.{c}" for c in COLUMNS)
    new = ", ".join(f"EXCLUDED.{c}" for c in COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS candle_load (ts timestamptz NOT NULL, open float8 NOT NULL, "
            "high float8 NOT NULL, low float8 NOT NULL, close float8 NOT NULL, volume float8 NOT NULL) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE candle_load")
        with cursor.cursor.copy("COPY candle_load FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_copy_buffer(frame))
        cursor.execute(
            f"INSERT INTO marketdata_candle (instrument_id, timeframe, ts, {', '.join(COLUMNS)}) "  # noqa: S608
            f"SELECT %s, %s, ts, {', '.join(COLUMNS)} FROM candle_load "
            f"ON CONFLICT (instrument_id, timeframe, ts) DO UPDATE SET {set_cols} "
            f"WHERE ({old}) IS DISTINCT FROM ({new}) "
            # xmax is 0 on a row this statement inserted, set on one it updated.
            "RETURNING (xmax = 0)",
            [instrument_id, timeframe],
        )
        flags = cursor.fetchall()
        return len(flags), sum(1 for (is_insert,) in flags if is_insert)


def _write_sqlite(instrument_id: int, timeframe: str, frame: pd.DataFrame) -> tuple[int, int]:
    """One executemany of plain tuples with SQLite's upsert: no model instance per bar (the
    ORM path spends ~50 s on a million). Timestamps in the text form Django stores (UTC)."""
    stamps = frame.index.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")
    values = frame[COLUMNS].to_numpy(dtype=np.float64).tolist()
    rows = [(instrument_id, timeframe, ts, *v) for ts, v in zip(stamps, values, strict=True)]
    table = "marketdata_candle"
    in_range = f"SELECT COUNT(*) FROM {table} WHERE instrument_id = %s AND timeframe = %s AND ts >= %s AND ts <= %s"  # noqa: S608
    bounds = [instrument_id, timeframe, min(stamps), max(stamps)]
    old = ", ".join(f"{table}.{c}" for c in COLUMNS)
    new = ", ".join(f"excluded.{c}" for c in COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(in_range, bounds)
        before = cursor.fetchone()[0]
        cursor.executemany(
            f"INSERT INTO {table} (instrument_id, timeframe, ts, {', '.join(COLUMNS)}) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT (instrument_id, timeframe, ts) DO UPDATE SET "
            f"{', '.join(f'{c} = excluded.{c}' for c in COLUMNS)} WHERE ({old}) IS NOT ({new})",
            rows,
        )
        changed = int(cursor.rowcount)
        cursor.execute(in_range, bounds)
        after = cursor.fetchone()[0]
    return changed, int(after - before)


def _write_orm(instrument_id: int, timeframe: str, frame: pd.DataFrame) -> tuple[int, int]:
    existing = {
        row[0]: row[1:]
        for row in Candle.objects.filter(
            instrument_id=instrument_id, timeframe=timeframe, ts__gte=frame.index[0], ts__lte=frame.index[-1]
        ).values_list("ts", *COLUMNS)
    }
    values = frame[COLUMNS].to_numpy(dtype=np.float64)
    objs = []
    inserted = 0
    for ts, row in zip(frame.index.to_pydatetime(), values, strict=True):
        old = existing.get(ts)
        if old == tuple(row):
            continue
        inserted += old is None
        objs.append(
            Candle(
                instrument_id=instrument_id,
                timeframe=timeframe,
                ts=ts,
                open=row[0],
                high=row[1],
                low=row[2],
                close=row[3],
                volume=row[4],
            )
        )
    Candle.objects.bulk_create(
        objs,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["instrument", "timeframe", "ts"],
        update_fields=COLUMNS,
    )
    return len(objs), inserted


def series_refresh(*, instrument_id: int, timeframe: str, source: str = "") -> CandleSeries:
    """Recount a series' summary from its candles (creating the summary if needed)."""
    stats = Candle.objects.filter(instrument_id=instrument_id, timeframe=timeframe).aggregate(
        first=Min("ts"), last=Max("ts"), n=Count("ts")
    )
    series, _ = CandleSeries.objects.update_or_create(
        instrument_id=instrument_id,
        timeframe=timeframe,
        defaults={
            "first_ts": stats["first"],
            "last_ts": stats["last"],
            "count": stats["n"],
            **({"source": source} if source else {}),
        },
    )
    return series
