"""The in-memory SQLite test database must not fail a writer because another thread is reading
(tests/conftest.py sets read_uncommitted on it)."""

import pytest
from django.db import connection


@pytest.mark.django_db
def test_the_in_memory_sqlite_test_database_lets_readers_not_lock_writers():
    if connection.vendor != "sqlite" or not connection.is_in_memory_db():
        pytest.skip("only the in-memory SQLite test database has shared-cache table locks")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA read_uncommitted")
        assert cursor.fetchone()[0] == 1
