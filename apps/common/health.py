"""What /healthz reports: the database, the cache/broker, and whether a worker is alive.

A worker is alive when the heartbeat task (scheduled by beat every 15 s, run by a worker) has
written to the cache within HEARTBEAT_MAX_AGE_SECONDS: that one fact covers beat, the broker
and a worker together.
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "platform:worker-heartbeat"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"; the detail says which
        logger.warning("healthz: database check failed: %s", exc)
        return Check("database", False, type(exc).__name__)
    return Check("database", True, connection.vendor)


def check_cache() -> Check:
    backend = "redis" if not settings.EMBEDDED else "in-memory"
    try:
        cache.set("platform:healthz", "1", 10)
        if cache.get("platform:healthz") != "1":
            return Check("cache", False, f"{backend}: value not read back")
    except Exception as exc:
        logger.warning("healthz: cache check failed: %s", exc)
        return Check("cache", False, f"{backend}: {type(exc).__name__}")
    return Check("cache", True, backend)


def check_broker() -> Check:
    if settings.EMBEDDED:
        return Check("broker", True, "in-memory")
    from tradingplatform.celery import app

    try:
        with app.connection_for_write() as conn:
            # One quick retry, not kombu's default 2 s back-off: a probe must answer promptly.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:
        logger.warning("healthz: broker check failed: %s", exc)
        return Check("broker", False, f"redis: {type(exc).__name__}")
    return Check("broker", True, "redis")


def record_heartbeat() -> None:
    cache.set(HEARTBEAT_KEY, time.time(), settings.HEARTBEAT_MAX_AGE_SECONDS * 4)


def check_worker() -> Check:
    try:
        beat = cache.get(HEARTBEAT_KEY)
    except Exception as exc:
        return Check("worker", False, f"heartbeat unreadable: {type(exc).__name__}")
    if beat is None:
        return Check("worker", False, "no heartbeat from any worker")
    age = time.time() - float(beat)
    if age > settings.HEARTBEAT_MAX_AGE_SECONDS:
        return Check("worker", False, f"last heartbeat {age:.0f}s ago")
    return Check("worker", True, f"last heartbeat {age:.0f}s ago")


def run_checks() -> list[Check]:
    return [check_database(), check_cache(), check_broker(), check_worker()]
