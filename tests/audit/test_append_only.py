"""The audit trail is append-only: the ORM refuses changes everywhere, PostgreSQL refuses them
even from raw SQL."""

import pytest
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AppendOnlyError, AuditEvent
from apps.audit.services import audit_record
from tests.common.live_db import transactional_db


@pytest.fixture
def event(alice):
    return audit_record(action="user.login", actor=alice, details={"k": "v"})


def _unchanged(event: AuditEvent) -> None:
    row = AuditEvent.objects.get(pk=event.pk)
    assert (row.action, row.user_id, row.details) == (event.action, event.user_id, event.details)


def test_audit_event_save_on_existing_row_raises(event):
    event.action = "user.logout"

    with pytest.raises(AppendOnlyError):
        event.save()

    event.action = "user.login"
    _unchanged(event)


def test_audit_event_delete_raises(event):
    with pytest.raises(AppendOnlyError):
        event.delete()

    _unchanged(event)


def test_audit_event_queryset_update_raises(event):
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="user.logout")

    _unchanged(event)


def test_audit_event_queryset_delete_raises(event):
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()

    _unchanged(event)


def test_audit_event_bulk_update_raises(event):
    event.action = "user.logout"

    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.bulk_update([event], ["action"])

    event.action = "user.login"
    _unchanged(event)


def test_audit_event_new_rows_can_be_added(alice):
    audit_record(action="user.login", actor=alice)
    AuditEvent.objects.create(action="user.logout", actor=alice, user=alice)

    assert AuditEvent.objects.filter(user=alice).count() == 2


@pytest.mark.postgres
@transactional_db()
def test_audit_event_raw_sql_update_and_delete_fail_on_postgres(alice):
    # given
    event = audit_record(action="user.login", actor=alice)

    # when / then
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_event SET action = %s WHERE id = %s", ["user.logout", event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_event WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_event")

    row = AuditEvent.objects.get(pk=event.pk)
    assert row.action == "user.login"
    assert AuditEvent.objects.count() == 1
