"""A second writer (the embedded worker thread of a live-server test) is never refused while
another transaction writes: in embedded mode the SQLite test database is a file in WAL mode
with a busy timeout, as `make run`'s database is, so it waits instead of failing with "database
table is locked"; PostgreSQL locks rows, not the database, so it does not even wait."""

import threading

import pytest
from django.db import connection, connections, transaction

from apps.users.models import User


@pytest.mark.django_db(transaction=True)
def test_a_second_writer_is_not_refused_while_another_writes() -> None:
    if connection.vendor == "sqlite":
        assert not connection.is_in_memory_db()
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
    first_holds = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def first_writer() -> None:
        try:
            with transaction.atomic():
                User.objects.create(email="first@example.com")
                first_holds.set()
                release.wait(5)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_writer)
    thread.start()
    assert first_holds.wait(5)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    # the first writer holds the write lock for 0.5 s: this one waits, then writes
    User.objects.create(email="second@example.com")
    thread.join(10)
    assert not errors
    assert set(User.objects.values_list("email", flat=True)) >= {"first@example.com", "second@example.com"}
