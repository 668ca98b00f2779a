"""Bulk writes: one statement per table whatever the row count (the paper venue's matcher, the
paper order batch of the copy fan-out, the audit rows of both).

On PostgreSQL the rows travel as one array per column through ``unnest``: Django's
``bulk_update`` builds a CASE with a branch per row for every field (seconds for a few
thousand rows, in Python to build and in the server to evaluate) and ``bulk_create`` prepares
every value through the field machinery. Values here are already what the columns hold
(Decimals at 10 places, aware datetimes, text), so they go to psycopg as they are. Other
databases (SQLite in embedded mode) use Django's bulk methods.
"""

import json
from typing import Any

import psycopg
from django.db import connection
from django.db.models import JSONField, Model

BATCH = 500


def _value(column: Any, row: Model) -> Any:
    value = getattr(row, column.attname)
    if isinstance(column, JSONField):
        return None if value is None else json.dumps(value)
    return value


def _arrays(columns: list[Any], rows: list[Any]) -> tuple[list[list[Any]], str, list[str]]:
    """Per column its values, the ``unnest(...)`` argument list and the quoted column names."""
    arrays = [[_value(column, row) for row in rows] for column in columns]
    unnest = ", ".join(f"%s::{column.db_type(connection)}[]" for column in columns)
    names = [connection.ops.quote_name(column.column) for column in columns]
    return arrays, unnest, names


def bulk_update(model: type[Model], rows: list[Any], fields: list[str]) -> None:
    """Write ``fields`` of ``rows`` (saved instances) back in one UPDATE ... FROM unnest."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(rows, fields, batch_size=BATCH)
        return
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns: list[Any] = [pk, *(meta.get_field(name) for name in fields)]
    arrays, unnest, names = _arrays(columns, rows)
    sets = ", ".join(f"{name} = v.{name}" for name in names[1:])
    table = connection.ops.quote_name(meta.db_table)
    sql = (
        f"UPDATE {table} AS t SET {sets} FROM unnest({unnest}) AS v({', '.join(names)}) "  # noqa: S608
        f"WHERE t.{names[0]} = v.{names[0]}"
    )
    _execute(sql, arrays)


def _execute(sql: str, arrays: list[list[Any]], *, fetch: bool = False) -> list[tuple[Any, ...]]:
    """Run on the connection's own psycopg cursor, with server-side binding: Django's cursor
    binds client-side, quoting every array element into the SQL text (a third of the time of
    a 3,000-row write). Same connection, same transaction."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, arrays, binary=True)
        return cursor.fetchall() if fetch else []


def bulk_insert(
    model: type[Model], rows: list[Any], *, key: tuple[str, ...] = (), ignore_conflicts: bool = False
) -> None:
    """Insert ``rows`` (new instances, every field set; auto_now fields are not filled in) in
    one INSERT ... SELECT FROM unnest and give them their primary keys. ``key``: fields that
    identify a row (unique together), used to match the returned ids to the rows; without it
    the rows need no id afterwards. ``ignore_conflicts``: a row breaking a unique constraint is
    skipped (ON CONFLICT DO NOTHING; no ids are given back then)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(rows, batch_size=BATCH, ignore_conflicts=ignore_conflicts)
        return
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    columns = [f for f in meta.concrete_fields if not f.primary_key]
    arrays, unnest, names = _arrays(columns, rows)
    table = connection.ops.quote_name(meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({unnest})"  # noqa: S608
    if ignore_conflicts:
        _execute(f"{sql} ON CONFLICT DO NOTHING", arrays)
        return
    if not key:
        _execute(sql, arrays)
        return
    key_columns: list[Any] = [meta.get_field(name) for name in key]
    returning = ", ".join(connection.ops.quote_name(c.column) for c in [pk, *key_columns])
    ids = {tuple(found[1:]): found[0] for found in _execute(f"{sql} RETURNING {returning}", arrays, fetch=True)}
    for row in rows:
        row.pk = ids[tuple(getattr(row, c.attname) for c in key_columns)]
        row._state.adding = False
