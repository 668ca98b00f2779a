"""Fixtures of the risk, algo, API, portal and admin tests of the trades app: an instrument with
venue rules, alice's paper and exchange accounts, a running deployment, and helpers that put
positions and open orders on the book. Rows are made directly (the models are the contract);
the services under test are called for real."""

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from apps.accounts.brokers.base import MarketRules
from apps.accounts.models import TradingAccount
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment
from apps.trades.intents import OrderIntent
from apps.trades.models import Order, Position
from apps.trades.risk.checks import risk_check

D = Decimal


def make_instrument(symbol: str = "BTC/USDT", venue: str = "binance") -> Instrument:
    base, quote = symbol.split("/")
    instrument, _ = Instrument.objects.get_or_create(
        venue=venue,
        symbol=symbol,
        defaults={
            "base": base,
            "quote": quote,
            "tick_size": D("0.01"),
            "lot_size": D("0.0001"),
            "min_notional": D("10"),
        },
    )
    return instrument


def rules_for(instrument: Instrument) -> MarketRules:
    return MarketRules(
        symbol=instrument.symbol,
        base=instrument.base,
        quote=instrument.quote,
        step_size=instrument.lot_size,
        tick_size=instrument.tick_size,
        min_notional=instrument.min_notional,
    )


def make_account(owner: Any, *, name: str = "Paper", kind: str = "paper", **extra: Any) -> TradingAccount:
    return TradingAccount.objects.create(
        owner=owner, name=name, kind=kind, exchange_id="paper" if kind == "paper" else "binance", **extra
    )


def make_deployment(account: TradingAccount, instrument: Instrument, **extra: Any) -> Deployment:
    values: dict[str, Any] = {
        "owner": account.owner,
        "account": account,
        "name": "SMA cross",
        "strategy_key": "sma_cross",
        "timeframe": "1h",
        "capital": D("10000"),
        "status": Deployment.Status.PAPER,
    }
    values.update(extra)
    deployment = Deployment.objects.create(**values)
    deployment.instruments.add(instrument)
    return deployment


def hold(
    account: TradingAccount,
    instrument: Instrument,
    quantity: str,
    *,
    deployment: Deployment | None = None,
    price: str = "100",
) -> Position:
    position, _ = Position.objects.update_or_create(
        account=account,
        deployment=deployment,
        instrument=instrument,
        defaults={"symbol": instrument.symbol, "quantity": D(quantity), "average_price": D(price)},
    )
    return position


_counter = {"n": 0}


def open_order(
    account: TradingAccount,
    instrument: Instrument,
    side: str,
    quantity: str,
    *,
    deployment: Deployment | None = None,
    status: str = Order.Status.OPEN,
    reduce_only: bool = False,
    price: str | None = "100",
    **extra: Any,
) -> Order:
    _counter["n"] += 1
    return Order.objects.create(
        account=account,
        deployment=deployment,
        instrument=instrument,
        symbol=instrument.symbol,
        client_order_id=f"tptest{_counter['n']}",
        side=side,
        type="limit" if price else "market",
        quantity=D(quantity),
        price=D(price) if price else None,
        expected_price=D(price) if price else None,
        status=status,
        reduce_only=reduce_only,
        **extra,
    )


def intent(
    account: TradingAccount,
    instrument: Instrument,
    side: str,
    quantity: str | None,
    *,
    deployment: Deployment | None = None,
    **extra: Any,
) -> OrderIntent:
    return OrderIntent(
        account_id=account.pk,
        instrument_id=instrument.pk,
        side=side,
        quantity=D(quantity) if quantity is not None else None,
        deployment_id=deployment.pk if deployment is not None else None,
        source="strategy" if deployment is not None else "manual",
        **extra,
    )


def check(
    account: TradingAccount,
    instrument: Instrument,
    side: str,
    quantity: str | None,
    *,
    price: str = "100",
    deployment: Deployment | None = None,
    **extra: Any,
) -> None:
    """risk_check as order_submit calls it: in a transaction, account (and deployment) locked."""
    with transaction.atomic():
        locked = TradingAccount.objects.select_for_update().get(pk=account.pk)
        dep = Deployment.objects.select_for_update().get(pk=deployment.pk) if deployment is not None else None
        risk_check(
            account=locked,
            deployment=dep,
            intent=intent(account, instrument, side, quantity, deployment=deployment, **extra),
            price=D(price),
            rules=rules_for(instrument),
        )


@pytest.fixture
def btc_rules(db: Any) -> Instrument:
    return make_instrument()


@pytest.fixture
def paper(alice: Any) -> TradingAccount:
    return make_account(alice)


@pytest.fixture
def running(paper: TradingAccount, btc_rules: Instrument) -> Deployment:
    return make_deployment(paper, btc_rules)
