"""Seal the rows written before the hash chain existed into their chains, in id order, so
`audit_verify` checks the whole trail from its first row (no recorded start to trust).

On PostgreSQL the append-only trigger is disabled for this one UPDATE of the new columns and
enabled again in the same transaction: nothing else can write in between (ALTER TABLE holds an
ACCESS EXCLUSIVE lock on the table until the migration commits).
"""

from types import SimpleNamespace
from typing import Any

from django.db import migrations

from apps.audit.chain import GENESIS, chain_of, row_hash

FIELDS = (
    "id",
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
BATCH = 5000


def _sealed(AuditEvent: Any, using: str) -> Any:
    """(id, prev_id, prev_hash, hash) per unsealed row, in id order, in batches."""
    heads: dict[int, tuple[int | None, str]] = {}
    rows = AuditEvent.objects.using(using).filter(hash="").order_by("id").values_list(*FIELDS)
    batch = []
    for values in rows.iterator(chunk_size=BATCH):
        row = SimpleNamespace(**dict(zip(FIELDS, values, strict=True)))
        key = chain_of(row.user_id)
        row.prev_id, row.prev_hash = heads.get(key, (None, GENESIS))
        row.hash = row_hash(row)
        heads[key] = (row.id, row.hash)
        batch.append((row.id, row.prev_id, row.prev_hash, row.hash))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def forwards(apps: Any, schema_editor: Any) -> None:
    AuditEvent = apps.get_model("audit", "AuditEvent")
    connection = schema_editor.connection
    postgres = connection.vendor == "postgresql"
    if not AuditEvent.objects.using(connection.alias).filter(hash="").exists():
        return
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        for batch in _sealed(AuditEvent, connection.alias):
            if postgres:
                ids, prev_ids, prev_hashes, hashes = (list(column) for column in zip(*batch, strict=True))
                cursor.execute(
                    "UPDATE audit_event AS t SET prev_id = v.prev_id, prev_hash = v.prev_hash, hash = v.hash "
                    "FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[]) "
                    "AS v(id, prev_id, prev_hash, hash) WHERE t.id = v.id",
                    [ids, prev_ids, prev_hashes, hashes],
                )
            else:
                cursor.executemany(
                    "UPDATE audit_event SET prev_id = %s, prev_hash = %s, hash = %s WHERE id = %s",
                    [(prev_id, prev_hash, digest, pk) for pk, prev_id, prev_hash, digest in batch],
                )
        if postgres:
            cursor.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_hash_chain")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
