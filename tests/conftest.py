"""Shared fixtures: personas (alice owns things, bob follows, mallory is an outsider), second
factor helpers, and the rule for tests that need a server or a browser.

On a developer's machine a test whose server or browser is missing skips with the reason. Under
CI=true that is a failure: CI installs everything, so a missing part means a broken setup.
"""

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from tests.factories import UserFactory

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REDIS_DATABASES = 16  # redis-server's default `databases`
REDIS_URL_OF_THE_RUN = settings.REDIS_URL  # before each xdist worker takes its own database


def _redis_url_of_xdist_worker(url: str, worker: str) -> str:
    """REDIS_URL for the pytest-xdist worker ``worker`` ("gw0", "gw1", ...): database N + K of
    the same server for worker K, where N is REDIS_URL's database. The suite empties its Redis
    database between tests (the cache's clear() is FLUSHDB) and every test's broker queues and
    channel groups live there, so two workers must never share one."""
    parts = urlsplit(url)
    path = parts.path.strip("/") or "0"
    if not path.isdigit():
        raise pytest.UsageError(f"under pytest-xdist, REDIS_URL must end in /<database number>, not {url}")
    base = int(path)
    database = base + int(worker.removeprefix("gw"))
    if database >= REDIS_DATABASES:
        raise pytest.UsageError(
            f"REDIS_URL's database {base} leaves no Redis database for xdist worker {worker}: "
            f"worker K uses database {base}+K; pick a lower database or fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{database}"))


def _isolate_redis_per_xdist_worker() -> None:
    """Under pytest-xdist, point this worker's cache, Channels layer and Celery broker (and
    the processes it starts, through the environment) at its own Redis database. Django's
    settings are loaded before any conftest, but the Redis clients are made lazily, on first
    use; the Celery app read its configuration at import, so it is told too."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or settings.EMBEDDED:
        return
    url = _redis_url_of_xdist_worker(settings.REDIS_URL, worker)
    settings.REDIS_URL = url
    settings.CACHES["default"]["LOCATION"] = url
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [url]
    settings.CELERY_BROKER_URL = url
    os.environ["REDIS_URL"] = url

    from tradingplatform.celery import app

    app.conf.update(broker_url=url)


_isolate_redis_per_xdist_worker()


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (under CI=true) when a needed server or browser is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests whose server or browser is missing here, except under CI, where they run and
    fail. (The embedded CI run deselects the postgres/redis tests with -m instead.)"""
    if IN_CI:
        return
    db_vendor = settings.DATABASES["default"]["ENGINE"]
    has_chromium = bool(shutil.which("chromium")) or os.path.exists("/usr/bin/chromium")
    for item in items:
        if "postgres" in item.keywords and "postgresql" not in db_vendor:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://..."))
        if "redis" in item.keywords and settings.EMBEDDED:
            item.add_marker(pytest.mark.skip(reason="needs Redis: set REDIS_URL=redis://..."))
        if "browser" in item.keywords and not has_chromium:
            item.add_marker(pytest.mark.skip(reason="needs Debian's chromium (apt-get install chromium)"))


@pytest.fixture(autouse=True)
def _fresh_caches_and_queues() -> None:
    """Every test starts with an empty cache, empty broker queues and empty per-process tick
    caches, whichever tests this process ran before (under pytest-xdist that order varies).

    With Redis, the cache's clear() (FLUSHDB) empties the broker's queues too: they are in the
    same database. The in-memory broker keeps its queues for the whole process, so a task one
    test queued and no worker ran would be run by a later test's embedded worker. The tick's
    caches are keyed by deployment id, and the SQLite test database hands out the same ids again
    in every test: a later test's deployment 1 would tick with an earlier one's account (and the
    copy fan-out's set of known copy books would skip a later test's listed deployment 1)."""
    from django.core.cache import cache

    from apps.marketplace.services import fanout
    from apps.strategies.services import ticks

    cache.clear()
    ticks.caches_clear()
    fanout.copy_books_forget()
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        from tradingplatform.celery import app

        app.control.purge()


@pytest.fixture
def password() -> str:
    return "correct-horse-battery-9"


@pytest.fixture
def alice(db: Any, password: str) -> Any:
    return UserFactory(email="alice@example.com", password=password)


@pytest.fixture
def bob(db: Any, password: str) -> Any:
    return UserFactory(email="bob@example.com", password=password)


@pytest.fixture
def mallory(db: Any, password: str) -> Any:
    return UserFactory(email="mallory@example.com", password=password)


@pytest.fixture
def staff(db: Any, password: str) -> Any:
    return UserFactory(email="ops@example.com", password=password, is_staff=True, is_superuser=True)


def totp_now(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    """The code an authenticator app would show now (or `offset_steps` steps later)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset_steps * device.step
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture
def enable_2fa() -> Callable[[Any], TOTPDevice]:
    def _enable(user: Any) -> TOTPDevice:
        from apps.users.services import _backup_codes_create

        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
        _backup_codes_create(user=user)
        return device

    return _enable


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def web_client() -> Client:
    return Client()
