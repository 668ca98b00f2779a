"""Fault tests with real processes (RELIABILITY.md): Celery workers killed and restarted, a
throw-away Redis shut down, the workers' PostgreSQL connections cut, against the FakeVenue.
Marked postgres and redis: the embedded run deselects them (test_bad_input.py and the settings
checks run in both)."""
