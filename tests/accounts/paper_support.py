"""Fixtures and helpers of the paper venue tests (test_paper*.py).

A test instrument ``BTC/USDT`` on venue ``papertest`` with one stored 1h bar at T0 (close 100),
a funded paper account of alice's, and :func:`close_bar`, which stores a bar the way the feed
does and then runs the matcher for it, as the tick fan-out will.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from apps.accounts.brokers.base import OrderRequest
from apps.accounts.models import PaperBalance, PaperOrder, TradingAccount
from apps.accounts.paper import PaperBroker, paper_account_fund, paper_bar_closed
from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SYMBOL = "BTC/USDT"


def bar_frame(ts: datetime, o: float, h: float, lo: float, c: float, v: float = 1000.0) -> pd.DataFrame:
    index = pd.DatetimeIndex([ts], name="ts")
    return pd.DataFrame({"open": [o], "high": [h], "low": [lo], "close": [c], "volume": [v]}, index=index)


def close_bar(
    instrument: Instrument, n: int, o: float, h: float, lo: float, c: float, v: float = 1000.0
) -> dict[int, list[str]]:
    """Store bar number ``n`` (open time T0 + n hours) and match the paper book against it."""
    ts = T0 + n * HOUR
    candles_write(instrument=instrument, timeframe="1h", frame=bar_frame(ts, o, h, lo, c, v))
    bar = {"open": o, "high": h, "low": lo, "close": c, "volume": v}
    return paper_bar_closed(instrument_id=int(instrument.pk), timeframe="1h", ts=ts, bar=bar)


@pytest.fixture
def instrument(db: Any) -> Instrument:
    inst = market_services.instrument_get_or_create(venue="papertest", symbol=SYMBOL)
    candles_write(instrument=inst, timeframe="1h", frame=bar_frame(T0, 100, 101, 99, 100))
    return inst


def make_account(owner: Any, name: str = "Paper", *, usdt: str = "10000", **connection: Any) -> TradingAccount:
    account = TradingAccount.objects.create(owner=owner, name=name, kind="paper", connection=connection)
    paper_account_fund(account=account, balances={"USDT": Decimal(usdt)})
    return account


@pytest.fixture
def account(alice: Any, instrument: Instrument) -> TradingAccount:
    return make_account(alice)


@pytest.fixture
def broker(account: TradingAccount) -> PaperBroker:
    return PaperBroker(int(account.pk))


def order(
    cid: str, side: Any = "buy", type: Any = "market", quantity: str = "1", symbol: str = SYMBOL, **fields: Any
) -> OrderRequest:
    for key in ("price", "stop_price", "quote_quantity"):
        if key in fields and fields[key] is not None:
            fields[key] = Decimal(str(fields[key]))
    return OrderRequest(
        client_order_id=cid,
        symbol=symbol,
        side=side,
        type=type,
        quantity=Decimal(quantity),
        **fields,
    )


def balance(account: TradingAccount, asset: str) -> tuple[Decimal, Decimal]:
    row = PaperBalance.objects.filter(account=account, asset=asset).first()
    return (row.free, row.locked) if row else (Decimal(0), Decimal(0))


def paper_order(account: TradingAccount, cid: str) -> PaperOrder:
    return PaperOrder.objects.get(account=account, client_order_id=cid)
