"""Fixtures of the execution tests (test_orders*, test_fills*, test_positions*, test_reconcile*,
test_tasks*): real venues, real services.

- ``venue``: FakeVenue (tests/fakes/fake_venue.py), Binance's spot REST API over HTTP on
  loopback, with settings.CCXT_API_URL_OVERRIDES pointing ccxt's "binance" at it. Orders are
  counted from its request log and book, never from our database.
- ``exchange``: alice's ccxt account on it, its key encrypted with apps.accounts.crypto under a
  fresh Fernet key (the worker path decrypts it: apps.accounts.broker_factory).
- ``btc``: BTC/USDT on binance with FakeVenue's filters (tick 0.01, step 0.00001, notional 5).
- ``paper`` / ``paper_btc``: a funded paper account and an instrument with a stored 1h bar; the
  paper venue is apps.accounts.paper, matched bar by bar with :func:`close_bar`.
- ``queued``: the tasks the services queue after commit (order_send / order_resolve /
  order_cancel), recorded instead of published; run them by calling the services.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from cryptography.fernet import Fernet

from apps.accounts.crypto import encrypt_credentials
from apps.accounts.models import TradingAccount
from apps.accounts.paper import paper_account_fund, paper_bar_closed
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write
from apps.strategies.models import Deployment
from apps.trades.intents import OrderIntent
from tests.fakes.fake_venue import ORDER_PATH, FakeVenue

D = Decimal
API_KEY = "exec-key-0000000000000001"
API_SECRET = "exec-secret-000000000000000000000001"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass
class Queued:
    """Tasks queued after commit, by name: [(order_id, countdown), ...]."""

    calls: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)

    def add(self, name: str, order_id: int, countdown: float | None = None) -> None:
        self.calls.setdefault(name, []).append((order_id, countdown))

    def __getitem__(self, name: str) -> list[tuple[int, float | None]]:
        return self.calls.get(name, [])

    def ids(self, name: str) -> list[int]:
        return [order_id for order_id, _ in self[name]]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Queued:
    from apps.trades.services import orders

    record = Queued()
    monkeypatch.setattr(orders, "_enqueue_send", lambda pk, countdown=None: record.add("order_send", pk, countdown))
    monkeypatch.setattr(
        orders, "_enqueue_resolve", lambda pk, countdown=None: record.add("order_resolve", pk, countdown)
    )
    monkeypatch.setattr(orders, "_enqueue_cancel", lambda pk: record.add("order_cancel", pk))
    return record


@pytest.fixture
def fernet(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]


@pytest.fixture
def venue(settings: Any) -> Iterator[FakeVenue]:
    server = FakeVenue(api_key=API_KEY, api_secret=API_SECRET)
    server.start()
    settings.CCXT_API_URL_OVERRIDES = {"binance": server.url}
    try:
        yield server
    finally:
        server.release_hung()
        server.stop()


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """ccxt's timeout down from 10 s to 1.5 s (for accept_then_hang): the worker's broker is
    still the real one, built by broker_for from the encrypted key."""
    from apps.accounts.broker_factory import broker_for
    from apps.trades.services import orders

    def quick(account: TradingAccount) -> Any:
        broker = broker_for(account)
        exchange = getattr(broker, "exchange", None)
        if exchange is not None:
            exchange.timeout = 1500
        return broker

    monkeypatch.setattr(orders, "broker_for", quick)


def make_btc() -> Instrument:
    instrument, _ = Instrument.objects.get_or_create(
        venue="binance",
        symbol="BTC/USDT",
        defaults={
            "base": "BTC",
            "quote": "USDT",
            "tick_size": D("0.01"),
            "lot_size": D("0.00001"),
            "min_notional": D("5"),
        },
    )
    return instrument


@pytest.fixture
def btc(db: Any) -> Instrument:
    return make_btc()


def make_exchange_account(owner: Any, name: str = "Binance") -> TradingAccount:
    return TradingAccount.objects.create(
        owner=owner,
        name=name,
        kind=TradingAccount.Kind.CCXT,
        exchange_id="binance",
        credentials_encrypted=encrypt_credentials({"api_key": API_KEY, "secret": API_SECRET}),
        credentials_hint="key …0001",
    )


@pytest.fixture
def exchange(alice: Any, fernet: None, venue: FakeVenue, btc: Instrument) -> TradingAccount:
    return make_exchange_account(alice)


def bar_frame(ts: datetime, o: float, h: float, lo: float, c: float, v: float = 1000.0) -> pd.DataFrame:
    index = pd.DatetimeIndex([ts], name="ts")
    return pd.DataFrame({"open": [o], "high": [h], "low": [lo], "close": [c], "volume": [v]}, index=index)


def close_bar(instrument: Instrument, n: int, o: float, h: float, lo: float, c: float) -> dict[int, list[str]]:
    """Store bar ``n`` (open time T0 + n hours) and match the paper book against it (the paper
    venue then sends paper_orders_changed after commit)."""
    ts = T0 + n * HOUR
    candles_write(instrument=instrument, timeframe="1h", frame=bar_frame(ts, o, h, lo, c))
    return paper_bar_closed(
        instrument_id=int(instrument.pk), timeframe="1h", ts=ts, bar={"open": o, "high": h, "low": lo, "close": c}
    )


@pytest.fixture
def paper_btc(db: Any) -> Instrument:
    instrument, _ = Instrument.objects.get_or_create(
        venue="papertest",
        symbol="BTC/USDT",
        defaults={"base": "BTC", "quote": "USDT", "tick_size": D("0.01"), "lot_size": D("0.001")},
    )
    candles_write(instrument=instrument, timeframe="1h", frame=bar_frame(T0, 100, 101, 99, 100))
    return instrument


def make_paper_account(owner: Any, name: str = "Paper", usdt: str = "100000", **connection: Any) -> TradingAccount:
    account = TradingAccount.objects.create(
        owner=owner, name=name, kind=TradingAccount.Kind.PAPER, exchange_id="paper", connection=connection
    )
    paper_account_fund(account=account, balances={"USDT": D(usdt)})
    return account


@pytest.fixture
def paper(alice: Any, paper_btc: Instrument) -> TradingAccount:
    return make_paper_account(alice, costs={"fee": 0.001})


def make_deployment(account: TradingAccount, instrument: Instrument, **extra: Any) -> Deployment:
    values: dict[str, Any] = {
        "owner": account.owner,
        "account": account,
        "name": f"SMA cross {Deployment.objects.count() + 1}",
        "strategy_key": "sma_cross",
        "timeframe": "1h",
        "capital": D("10000"),
        "status": Deployment.Status.PAPER if account.kind == "paper" else Deployment.Status.LIVE,
    }
    values.update(extra)
    deployment = Deployment.objects.create(**values)
    deployment.instruments.add(instrument)
    return deployment


def intent(account: TradingAccount, instrument: Instrument, **fields: Any) -> OrderIntent:
    values: dict[str, Any] = {
        "account_id": account.pk,
        "instrument_id": instrument.pk,
        "side": "buy",
        "type": "market",
        "quantity": D("0.01"),
        "expected_price": D("40000"),
    }
    values.update(fields)
    return OrderIntent(**values)


def order_posts(venue: FakeVenue, client_order_id: str) -> int:
    """POST /api/v3/order requests the venue logged for this client id (accepted or not)."""
    return venue.post_count(client_order_id)


__all__ = ["ORDER_PATH"]
