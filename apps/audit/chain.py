"""The audit trail's hash chain (RELIABILITY 27).

Every AuditEvent belongs to one chain: its ``user_id`` (the tenant), or the system chain for
events about no user. Each row records the id and hash of the row before it in its chain
(``prev_id``, ``prev_hash``; the first row of a chain has none and ``GENESIS``), and its own
``hash``: sha256 over a canonical serialisation of its fields, its id and the link. Editing a
row breaks its hash; deleting a row breaks its successor's link; the last rows of a chain are
covered by the chain heads exported outside the database (``audit_heads_export``).

Writers append through ``append`` only (``AuditEvent.save`` and ``audit_record_many`` call it):
on PostgreSQL it takes a transaction-level advisory lock per chain, in chain order, before
reading each chain's head and allocating ids, so concurrent writers never fork a chain and ids
follow chain order. The locks are held to the end of the caller's transaction (a row is only
visible to the next writer once committed). SQLite (embedded mode) has one writer at a time:
``transaction.atomic`` there starts an IMMEDIATE transaction, which takes the write lock.

A batch is four statements whatever its size: lock, read the heads, allocate ids, insert
(one INSERT ... SELECT FROM unnest with binary arrays, as apps.common.bulk does).
"""

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from django.db import connection, models, transaction
from django.utils import timezone

if TYPE_CHECKING:
    from apps.audit.models import AuditEvent

GENESIS = "0" * 64
SYSTEM_CHAIN = 0
# The classid of pg_advisory_xact_lock(classid, objid): "AUDT", so the locks never collide with
# another feature's advisory locks.
LOCK_CLASS = 0x41554454
VERSION = "v1"


def chain_of(user_id: int | None) -> int:
    """The chain a row belongs to: its user's id, or SYSTEM_CHAIN (user ids start at 1)."""
    return user_id or SYSTEM_CHAIN


def _json_value(value: Any) -> Any:
    """JSON as the database gives it back: PostgreSQL's jsonb turns 1e16 into 10000000000000000
    (an int after loading) and keeps 1.0 as 1.0, so an integral float is written as an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _ip(value: str | None) -> str | None:
    return ipaddress.ip_address(value).compressed if value else None


def canonical(row: Any) -> bytes:
    """The bytes a row's hash covers (``row``: an AuditEvent or anything with its attributes)."""
    payload = [
        VERSION,
        row.id,
        row.prev_id,
        row.prev_hash,
        _timestamp(row.created_at),
        row.actor_id,
        row.actor_email,
        row.user_id,
        row.action,
        row.target_type,
        row.target_id,
        row.target_repr,
        _ip(row.ip),
        row.user_agent,
        _json_value(row.details),
    ]
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(row: Any) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


# --- Appending ----------------------------------------------------------------------------------


def append(events: list["AuditEvent"]) -> list["AuditEvent"]:
    """Seal ``events`` (new, unsaved) into their chains in list order and insert them."""
    if not events:
        return events
    now = timezone.now()
    for event in events:
        event.created_at = event.created_at or now
    chains = sorted({chain_of(event.user_id) for event in events})
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _pg_lock(chains)
            heads = _pg_heads(chains)
            ids = _pg_allocate(len(events))
        else:
            heads = _orm_heads(chains)
            ids = _orm_allocate(len(events))
        for event, new_id in zip(events, ids, strict=True):
            key = chain_of(event.user_id)
            event.id = new_id
            event.prev_id, event.prev_hash = heads.get(key, (None, GENESIS))
            event.hash = row_hash(event)
            heads[key] = (new_id, event.hash)
        if connection.vendor == "postgresql":
            _pg_insert(events)
        else:
            type(events[0])._base_manager.bulk_create(events, batch_size=500)
    for event in events:
        event._state.adding = False
        event._state.db = connection.alias
    return events


def _pg_execute(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """On the connection's own psycopg cursor with server-side binding (apps.common.bulk)."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall() if cursor.description else []


def _pg_lock(chains: list[int]) -> None:
    # In ascending order: two batches sharing chains wait for each other, never deadlock.
    _pg_execute(
        "SELECT count(pg_advisory_xact_lock(%s, k)) FROM "
        "(SELECT (c %% 2147483647)::int AS k FROM unnest(%s::bigint[]) AS c ORDER BY c) AS s",
        [LOCK_CLASS, chains],
    )


def _pg_heads(chains: list[int]) -> dict[int, tuple[int | None, str]]:
    users = [c for c in chains if c != SYSTEM_CHAIN]
    rows = _pg_execute(
        "SELECT c, h.id, h.hash FROM unnest(%s::bigint[]) AS c CROSS JOIN LATERAL "
        "(SELECT id, hash FROM audit_event WHERE user_id = c ORDER BY id DESC LIMIT 1) AS h "
        "UNION ALL SELECT 0, s.id, s.hash FROM "
        "(SELECT id, hash FROM audit_event WHERE user_id IS NULL ORDER BY id DESC LIMIT 1) AS s WHERE %s",
        [users, SYSTEM_CHAIN in chains],
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def _pg_allocate(count: int) -> list[int]:
    rows = _pg_execute(
        "SELECT nextval(pg_get_serial_sequence('audit_event', 'id')) FROM generate_series(1, %s)", [count]
    )
    return sorted(row[0] for row in rows)


def _pg_insert(events: list["AuditEvent"]) -> None:
    meta = events[0]._meta
    columns = list(meta.concrete_fields)
    arrays = []
    for column in columns:
        values = [getattr(event, column.attname) for event in events]
        if isinstance(column, models.JSONField):
            values = [None if v is None else json.dumps(v) for v in values]
        arrays.append(values)
    db_types = [column.db_type(connection) for column in columns]
    unnest = ", ".join(f"%s::{db_type}[]" for db_type in db_types)
    names = ", ".join(connection.ops.quote_name(str(column.column)) for column in columns)
    _pg_execute(f"INSERT INTO audit_event ({names}) SELECT * FROM unnest({unnest})", arrays)  # noqa: S608


def _orm_heads(chains: list[int]) -> dict[int, tuple[int | None, str]]:
    from apps.audit.models import AuditEvent

    base = AuditEvent._base_manager.all()
    users = [c for c in chains if c != SYSTEM_CHAIN]
    last_ids = list(
        base.filter(user_id__in=users).order_by().values("user_id").annotate(last=models.Max("id")).values("last")
    )
    wanted = [row["last"] for row in last_ids]
    if SYSTEM_CHAIN in chains:
        system_last = base.filter(user_id__isnull=True).aggregate(last=models.Max("id"))["last"]
        if system_last is not None:
            wanted.append(system_last)
    return {
        chain_of(user_id): (pk, digest)
        for pk, user_id, digest in base.filter(id__in=wanted).values_list("id", "user_id", "hash")
    }


def _orm_allocate(count: int) -> list[int]:
    from apps.audit.models import AuditEvent

    last = AuditEvent._base_manager.aggregate(last=models.Max("id"))["last"] or 0
    with connection.cursor() as cursor:
        # AUTOINCREMENT never reuses an id, even of a deleted last row: neither do we.
        cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_event'")
        found = cursor.fetchone()
    last = max(last, found[0] if found else 0)
    return list(range(last + 1, last + 1 + count))


# --- Verifying ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    """The outcome of a walk over every chain. ``broken_id``: the smallest id of a row that was
    edited or deleted (None: intact)."""

    rows: int
    chains: int
    broken_id: int | None
    reason: str
    heads: dict[int, tuple[int, str]]

    @property
    def intact(self) -> bool:
        return self.broken_id is None


_FIELDS = (
    "id",
    "prev_id",
    "prev_hash",
    "hash",
    "created_at",
    "actor_id",
    "actor_email",
    "user_id",
    "action",
    "target_type",
    "target_id",
    "target_repr",
    "ip",
    "user_agent",
    "details",
)


@dataclass
class _Row:
    id: int
    prev_id: int | None
    prev_hash: str
    hash: str
    created_at: datetime
    actor_id: int | None
    actor_email: str
    user_id: int | None
    action: str
    target_type: str
    target_id: str
    target_repr: str
    ip: str | None
    user_agent: str
    details: Any


def _rows(using: str) -> Iterator[_Row]:
    from apps.audit.models import AuditEvent

    query = AuditEvent._base_manager.using(using).order_by("id").values_list(*_FIELDS)
    for values in query.iterator(chunk_size=5000):
        yield _Row(*values)


def verify(*, using: str = "default", exported_heads: Iterable[tuple[int, str]] = ()) -> Verdict:
    """Walk every chain in id order. A row is broken when its hash does not match its content
    (edited), when its successor names a predecessor that is gone (deleted) or whose hash it does
    not match (edited and re-hashed), or when two rows claim the same predecessor (a fork).
    ``exported_heads`` (id, hash) from an earlier export: each must still be there unchanged,
    which covers the rows after the last one anybody links to."""
    heads: dict[int, tuple[int, str]] = {}
    expected = dict(exported_heads)
    seen_ids: set[int] = set()
    broken: list[tuple[int, str]] = []
    count = 0
    for row in _rows(using):
        count += 1
        key = chain_of(row.user_id)
        last_id, last_hash = heads.get(key, (None, GENESIS))
        if row_hash(row) != row.hash:
            broken.append((row.id, f"row {row.id}: its content does not match its hash (edited)"))
        if row.prev_id != last_id:
            if row.prev_id is not None and row.prev_id not in seen_ids:
                broken.append((row.prev_id, f"row {row.prev_id}: missing (deleted), row {row.id} links to it"))
            else:
                broken.append((row.id, f"row {row.id}: links to {row.prev_id}, the chain's last row is {last_id}"))
        elif row.prev_hash != last_hash:
            broken.append((last_id or row.id, f"row {last_id}: changed after row {row.id} linked to it"))
        if row.id in expected and expected.pop(row.id) != row.hash:
            broken.append((row.id, f"row {row.id}: differs from the exported chain head"))
        seen_ids.add(row.id)
        heads[key] = (row.id, row.hash)
    for missing in expected:
        broken.append((missing, f"row {missing}: an exported chain head is missing (deleted)"))
    if not broken:
        return Verdict(rows=count, chains=len(heads), broken_id=None, reason="intact", heads=heads)
    first = min(broken)
    return Verdict(rows=count, chains=len(heads), broken_id=first[0], reason=first[1], heads=heads)


# --- Chain heads --------------------------------------------------------------------------------


def heads_latest(*, using: str = "default") -> dict[int, tuple[int, str]]:
    """Each chain's last row (id, hash)."""
    from apps.audit.models import AuditEvent

    base = AuditEvent._base_manager.using(using)
    last_ids = base.order_by().values("user_id").annotate(last=models.Max("id")).values("last")
    return {
        chain_of(user_id): (pk, digest)
        for pk, user_id, digest in base.filter(id__in=models.Subquery(last_ids)).values_list("id", "user_id", "hash")
    }


def heads_document(heads: dict[int, tuple[int, str]]) -> dict[str, Any]:
    """The JSON written for an external copy (``audit_verify --export`` and the daily task)."""
    return {
        "version": VERSION,
        "generated_at": _timestamp(timezone.now()),
        "chains": {
            ("system" if key == SYSTEM_CHAIN else str(key)): {"id": pk, "hash": digest}
            for key, (pk, digest) in sorted(heads.items())
        },
    }


def heads_from_document(document: dict[str, Any]) -> list[tuple[int, str]]:
    return [(int(head["id"]), str(head["hash"])) for head in document.get("chains", {}).values()]
