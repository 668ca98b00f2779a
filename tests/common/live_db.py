"""Database rules for tests where other threads (a server, a worker) use the database.

Such tests need committed rows, so they are transactional: tables are emptied after each test
instead of rolled back. (On PostgreSQL that relies on apps/users migration 0002 dropping
knox's unused `knox_authtoken`, whose foreign key would otherwise stop the TRUNCATE.)
"""

import pytest
from django.db import connections


def transactional_db() -> pytest.MarkDecorator:
    return pytest.mark.django_db(transaction=True)


def close_thread_connections() -> None:
    """Close this thread's database connections (call it in every thread that used them),
    so the test database can be flushed and dropped."""
    connections.close_all()
