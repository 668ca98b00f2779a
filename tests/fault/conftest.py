"""Fixtures of the fault tests: real Celery worker processes against the test database and
Redis, the FakeVenue (an HTTP server speaking Binance's spot API) in a thread of the test
process, so it outlives every worker the test kills, and a ccxt account pointed at it.

Every process a fixture starts is ended at teardown, whatever the test did; when a test fails,
the workers' logs are printed (pytest shows them under "Captured stdout teardown"; set
TP_FAULT_SHOW_LOGS=1 to see them for passing tests too, with -rP).
"""

import copy
import os
import shutil
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings

from tests.fault.processes import CeleryWorker, OwnedProcess, RedisServer, broker_url, terminate_all

# A short visibility timeout, so a message whose worker was killed is handed out again within
# seconds (production: an hour, above every task's time limit), and a restore sweep every
# second instead of every 100.
VISIBILITY_TIMEOUT = 6
# An order left SENDING (its worker died mid-send) is asked about after this long, and "not
# found" answers must span it before an order is given up as never received (production: 30 s).
INFLIGHT_SECONDS = 4


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def fault_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "fault"
    folder.mkdir()
    return folder


@pytest.fixture
def owned_processes(request: pytest.FixtureRequest) -> Iterator[list[OwnedProcess]]:
    """Every process the test started; all ended at teardown (logs shown when it failed)."""
    processes: list[OwnedProcess] = []
    yield processes
    failed = request.node.stash.get(_FAILED, True) or bool(os.environ.get("TP_FAULT_SHOW_LOGS"))
    terminate_all(processes)
    for process in reversed(processes):
        if failed:
            print(f"\n===== {process.name} ({process.log_path}) =====\n{process.tail(120)}")


def _worker_logging() -> dict[str, Any]:
    """The platform's logging, plus one line per task received and finished (the tests read
    the workers' logs to see a message delivered twice)."""
    logging: dict[str, Any] = copy.deepcopy(django_settings.LOGGING)
    logging["loggers"]["celery.app.trace"] = {"level": "INFO"}
    logging["loggers"]["celery.worker.strategy"] = {"level": "INFO"}
    return logging


@pytest.fixture
def worker_settings() -> dict[str, Any]:
    """Settings every worker of the test gets (tests add keys before starting workers)."""
    return {
        "LOGGING": _worker_logging(),
        "CELERY_IMPORTS": ["tests.fault.worker_hooks"],
        "ORDER_INFLIGHT_SECONDS": INFLIGHT_SECONDS,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
    }


@pytest.fixture
def start_worker(
    transactional_db: None, owned_processes: list[OwnedProcess], fault_dir: Path, worker_settings: dict[str, Any]
) -> Callable[..., CeleryWorker]:
    """start_worker(name=..., extra_env=..., broker=..., wait=True) -> a prefork worker (-c 2), ready
    unless wait=False (then call its wait_ready(): start several at once)."""

    def _start(
        name: str = "worker",
        *,
        extra_env: dict[str, str] | None = None,
        broker: str | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> CeleryWorker:
        worker = CeleryWorker(
            fault_dir,
            broker_url=broker or broker_url(),
            settings_overrides=worker_settings,
            extra_env=extra_env,
            name=name,
            **kwargs,
        )
        owned_processes.append(worker)
        return worker.start(wait=wait)

    return _start


@pytest.fixture
def start_redis(owned_processes: list[OwnedProcess], fault_dir: Path) -> Callable[..., RedisServer]:
    from tests.conftest import free_port, require

    def _start(*, appendonly: bool) -> RedisServer:
        require(bool(shutil.which("redis-server")), "needs redis-server (apt-get install redis-server)")
        server = RedisServer(fault_dir, port=free_port(), appendonly=appendonly)
        owned_processes.append(server)
        return server.start()

    return _start


# --- The venue and an account on it -----------------------------------------------------------


@pytest.fixture
def venue(settings: Any, worker_settings: dict[str, Any], owned_processes: list[OwnedProcess]) -> Iterator[Any]:
    """A FakeVenue thread in the test process; the test process and its workers point ccxt's
    binance at it (CCXT_API_URL_OVERRIDES, settings only). The workers end before it does."""
    from tests.fakes.fake_venue import FakeVenue

    fake = FakeVenue()
    fake.start()
    try:
        overrides = {"binance": fake.url}
        settings.CCXT_API_URL_OVERRIDES = overrides
        worker_settings["CCXT_API_URL_OVERRIDES"] = overrides
        yield fake
    finally:
        terminate_all(owned_processes)
        fake.stop()


@pytest.fixture
def btc(db: None) -> Any:
    from apps.marketdata.models import Instrument

    instrument, _ = Instrument.objects.update_or_create(
        venue="binance",
        symbol="BTC/USDT",
        defaults={
            "base": "BTC",
            "quote": "USDT",
            "tick_size": Decimal("0.01"),
            "lot_size": Decimal("0.00001"),
            "min_notional": Decimal("5"),
        },
    )
    return instrument


@pytest.fixture
def ccxt_account(db: None, alice: Any, venue: Any) -> Any:
    from apps.accounts.crypto import encrypt_credentials
    from apps.accounts.models import TradingAccount

    return TradingAccount.objects.create(
        owner=alice,
        name="Binance (fake)",
        kind=TradingAccount.Kind.CCXT,
        exchange_id="binance",
        base_currency="USDT",
        credentials_encrypted=encrypt_credentials({"apiKey": venue.api_key, "secret": venue.api_secret}),
        credentials_hint="key …fake",
    )
