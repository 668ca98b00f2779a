"""Fixtures the accounts tests share (imported by name in each test module).

- a canary secret: an exchange secret that must never appear in any response, page, log line,
  audit detail or Celery message;
- FakeVenue (tests/fakes/fake_venue.py, Binance's REST API over real HTTP) holding the canary as
  the key's secret, with settings.CCXT_API_URL_OVERRIDES pointing ccxt's "binance" at it;
- a fresh Fernet key per test (FIELD_ENCRYPTION_KEYS);
- clients whose session passed the second factor just now (or long ago);
- the connection-test task's sends, recorded instead of queued.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from rest_framework.test import APIClient

from tests.users.steps import session_mark_verified

CANARY_SECRET = "canary-secret-5f0c1e9a7b3d4e21"
CANARY_PASSPHRASE = "canary-pass-8d2b6c4a"
API_KEY = "alicekey-0000000000a1b2"


@pytest.fixture
def fernet_key(settings: Any) -> bytes:
    key = Fernet.generate_key()
    settings.FIELD_ENCRYPTION_KEYS = [key.decode()]
    return key


@pytest.fixture
def venue(settings: Any) -> Iterator[Any]:
    from tests.fakes.fake_venue import FakeVenue

    server = FakeVenue(api_key=API_KEY, api_secret=CANARY_SECRET)
    server.start()
    settings.CCXT_API_URL_OVERRIDES = {"binance": server.url}
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Sent:
    """Connection tests queued after commit: the task's args (account ids only)."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)


@pytest.fixture
def sent(monkeypatch: Any) -> Sent:
    from apps.accounts import tasks

    record = Sent()
    monkeypatch.setattr(tasks.account_test_connection, "delay", lambda *args: record.calls.append(args))
    return record


@pytest.fixture
def alice_device(alice: Any, enable_2fa: Any) -> Any:
    return enable_2fa(alice)


def session_client(user: Any, device: Any = None, *, seconds_ago: float = 0, api: bool = True) -> Any:
    client: Any = APIClient() if api else Client()
    client.force_login(user)
    if device is not None:
        session_mark_verified(client, device, seconds_ago=seconds_ago)
    return client


def exchange_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "kind": "ccxt",
        "name": "Binance main",
        "exchange_id": "binance",
        "api_key": API_KEY,
        "secret": CANARY_SECRET,
        "market_type": "spot",
    }
    body.update(overrides)
    return body


def paper_body(**overrides: Any) -> dict[str, Any]:
    body = {"kind": "paper", "name": "Paper", "balances": {"USDT": "10000"}}
    body.update(overrides)
    return body
