"""The audit trail's hash chain (RELIABILITY 27): every row sealed into its user's chain (or the
system chain), concurrent writers never fork a chain, and `audit_verify` names the first row
that was edited or deleted behind the application's back (min of them)."""

import itertools
import json
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from apps.audit import chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_event, audit_heads_write, audit_record, audit_record_many, audit_verify
from tests.common.live_db import close_thread_connections, transactional_db
from tests.factories import UserFactory


def _chain_rows(user_id: int | None) -> list[AuditEvent]:
    if user_id is None:
        return list(AuditEvent.objects.filter(user_id__isnull=True).order_by("id"))
    return list(AuditEvent.objects.filter(user_id=user_id).order_by("id"))


def _tamper(sql: str, params: list[Any]) -> None:
    """Change the trail behind the application's back: as the database superuser with the
    append-only trigger disabled on PostgreSQL (SQLite has no trigger)."""
    with transaction.atomic(), connection.cursor() as cursor:
        postgres = connection.vendor == "postgresql"
        if postgres:
            cursor.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params)
        if postgres:
            cursor.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


def _verify_command(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


def _mixed_trail(alice: Any, bob: Any) -> list[AuditEvent]:
    """Rows over three chains (alice, bob, the system), single and batched writes interleaved."""
    rows = [audit_record(action="user.login", actor=alice)]
    rows += audit_record_many(
        [
            audit_event(action="order.created", user_id=alice.pk, details={"qty": 1.0, "price": "10.5"}),
            audit_event(action="order.created", user_id=bob.pk, details={"big": 1e16, "small": 1.5e-7}),
            audit_event(action="order.fill", user_id=alice.pk),
            audit_event(action="admin.changed", details={"model": "listing"}),
        ]
    )
    rows.append(audit_record(action="user.logout", actor=bob))
    rows.append(audit_record(action="admin.added", actor=None, details={"object": "x"}))
    rows.append(AuditEvent.objects.create(action="user.login", actor=alice, user=alice))
    return rows


def test_rows_are_linked_in_their_users_chains_and_the_system_chain(alice, bob):
    # when
    rows = _mixed_trail(alice, bob)

    # then: each chain starts at the genesis and links every row to the one before it
    for user_id in (alice.pk, bob.pk, None):
        linked = _chain_rows(user_id)
        assert linked, user_id
        assert (linked[0].prev_id, linked[0].prev_hash) == (None, chain.GENESIS)
        for before, after in itertools.pairwise(linked):
            assert (after.prev_id, after.prev_hash) == (before.id, before.hash)
        for row in linked:
            assert row.hash == chain.row_hash(row)
    assert [r.pk for r in rows] == sorted(r.pk for r in rows)
    assert [r.hash for r in rows] == [AuditEvent.objects.get(pk=r.pk).hash for r in rows]
    verdict = audit_verify()
    assert verdict.intact, verdict.reason
    assert (verdict.rows, verdict.chains) == (len(rows), 3)


def test_audit_verify_reports_intact_with_exit_code_zero(alice, bob):
    _mixed_trail(alice, bob)

    code, output = _verify_command()

    assert code == 0
    assert "intact: 8 rows in 3 chains" in output


def test_an_edited_row_is_reported_with_exit_code_one(alice, bob):
    # given
    rows = _mixed_trail(alice, bob)
    edited = rows[2]

    # when
    _tamper("UPDATE audit_event SET details = %s WHERE id = %s", ['{"qty": 1000}', edited.pk])

    # then
    code, output = _verify_command()
    assert code == 1
    assert f"BROKEN at id {edited.pk}" in output
    assert "edited" in output


def test_an_edited_row_with_its_hash_recomputed_is_still_reported(alice, bob):
    rows = _mixed_trail(alice, bob)
    edited = AuditEvent.objects.get(pk=rows[1].pk)  # alice's chain continues after it
    edited.action = "order.cancelled"
    forged = chain.row_hash(edited)

    _tamper("UPDATE audit_event SET action = %s, hash = %s WHERE id = %s", [edited.action, forged, edited.pk])

    verdict = audit_verify()
    assert verdict.broken_id == edited.pk


def test_after_an_edit_and_a_deletion_the_verifier_reports_the_smaller_id(alice, bob):
    # given: a trail over three chains; k is edited in one, m (an earlier id) deleted in another
    rows = _mixed_trail(alice, bob) + _mixed_trail(alice, bob)
    k = rows[9].pk  # alice's order.created, second round
    m = rows[2].pk  # bob's order.created, first round: his chain continues after it
    assert AuditEvent.objects.get(pk=m).user_id == bob.pk
    assert audit_verify().intact

    # when
    _tamper("UPDATE audit_event SET target_repr = %s WHERE id = %s", ["forged", k])
    _tamper("DELETE FROM audit_event WHERE id = %s", [m])

    # then
    verdict = audit_verify()
    assert verdict.broken_id == min(k, m) == m
    assert "deleted" in verdict.reason
    code, output = _verify_command()
    assert (code, f"BROKEN at id {m}" in output) == (1, True)


def test_a_deleted_row_after_the_edited_one_reports_the_edit(alice, bob):
    rows = _mixed_trail(alice, bob) + _mixed_trail(alice, bob)
    k, m = rows[0].pk, rows[9].pk

    _tamper("UPDATE audit_event SET ip = %s WHERE id = %s", ["10.0.0.1", k])
    _tamper("DELETE FROM audit_event WHERE id = %s", [m])

    assert audit_verify().broken_id == min(k, m) == k


def test_a_deleted_chain_tail_is_caught_by_the_exported_heads(alice, bob, tmp_path):
    # given: heads exported; alice's last row has no successor to miss it
    rows = _mixed_trail(alice, bob)
    exported = tmp_path / "heads.json"
    code, output = _verify_command("--export", str(exported))
    assert code == 0 and "chain heads written" in output
    document = json.loads(exported.read_text())
    tail = rows[-1]
    assert document["chains"][str(alice.pk)] == {"id": tail.pk, "hash": tail.hash}
    assert set(document["chains"]) == {str(alice.pk), str(bob.pk), "system"}

    # when
    _tamper("DELETE FROM audit_event WHERE id = %s", [tail.pk])

    # then: the chains alone look intact, the heads do not
    assert audit_verify().intact
    code, output = _verify_command("--heads", str(exported))
    assert code == 1
    assert f"BROKEN at id {tail.pk}" in output


def test_heads_export_to_a_folder_writes_a_dated_file(alice, bob, tmp_path, settings):
    from apps.audit.tasks import audit_heads_export

    _mixed_trail(alice, bob)
    settings.AUDIT_HEAD_EXPORT_DIR = str(tmp_path / "heads")

    audit_heads_export.apply()

    (written,) = (tmp_path / "heads").glob("audit-heads-*.json")
    heads = chain.heads_from_document(json.loads(written.read_text()))
    assert sorted(heads) == sorted(chain.heads_latest().values())
    assert audit_heads_write(tmp_path / "one.json").name == "one.json"


def test_the_heads_export_is_scheduled_daily_and_bounded(settings):
    from apps.audit.tasks import audit_heads_export

    entry = settings.CELERY_BEAT_SCHEDULE["audit-heads-export"]
    assert entry["task"] == audit_heads_export.name
    assert audit_heads_export.time_limit < 3600
    assert audit_heads_export.acks_late


def test_rows_written_outside_the_services_still_join_the_chain(alice):
    AuditEvent.objects.bulk_create([AuditEvent(action="x.one", user=alice), AuditEvent(action="x.two", user=alice)])

    first, second = _chain_rows(alice.pk)
    assert second.prev_id == first.id
    assert audit_verify().intact


@pytest.mark.postgres
@transactional_db()
def test_concurrent_writers_never_fork_a_chain():
    """4 threads, each with its own connection, append 10,000 events over 3 tenants (batches
    spanning all three, and single rows), all at once."""
    users = [UserFactory() for _ in range(3)]
    per_thread_batches, batch_size, singles = 25, 96, 100
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            start.wait()
            for b in range(per_thread_batches):
                with transaction.atomic():
                    audit_record_many(
                        [
                            audit_event(action="order.fill", user_id=users[(i + n) % 3].pk, details={"t": n, "b": b})
                            for i in range(batch_size)
                        ]
                    )
            for i in range(singles):
                audit_record(action="order.note", user=users[(i + n) % 3], details={"t": n, "i": i})
        except BaseException as error:  # handed to the test thread
            errors.append(error)
        finally:
            close_thread_connections()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert AuditEvent.objects.count() == 4 * (per_thread_batches * batch_size + singles) == 10_000
    verdict = audit_verify()
    assert verdict.intact, verdict.reason
    assert verdict.chains == 3
    with connection.cursor() as cursor:  # no two rows claim the same predecessor
        cursor.execute(
            "SELECT count(*) FROM (SELECT user_id, prev_id FROM audit_event GROUP BY 1, 2 HAVING count(*) > 1) AS f"
        )
        assert cursor.fetchone() == (0,)


@pytest.mark.postgres
@transactional_db()
def test_the_migration_seals_rows_written_before_the_chain(alice, bob):
    """Rows from before migration 0004 are chained in id order by 0005 (no recorded start)."""
    try:
        call_command("migrate", "audit", "0003", verbosity=0)
        with connection.cursor() as cursor:
            for user_id, action in [(alice.pk, "user.login"), (None, "admin.added"), (alice.pk, "user.logout")]:
                cursor.execute(
                    "INSERT INTO audit_event (created_at, actor_email, user_id, action, target_type, target_id, "
                    "target_repr, user_agent, details) VALUES (now(), '', %s, %s, '', '', '', 'ua', '{\"a\": 2.0}')",
                    [user_id, action],
                )
    finally:
        call_command("migrate", "audit", verbosity=0)

    first, second = _chain_rows(alice.pk)
    assert (first.prev_id, second.prev_id, second.prev_hash) == (None, first.id, first.hash)
    assert len(_chain_rows(None)) == 1
    audit_record(action="user.login", actor=alice)
    assert audit_verify().intact
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_event WHERE id = %s", [first.id])
