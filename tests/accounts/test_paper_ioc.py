"""Immediate-or-cancel market orders on the paper venue (apps.accounts.paper_immediate): they fill
at once at the series' newest close with the account's costs, or expire with the reason; they
never rest. Copies of a leader's fill use them."""

from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.brokers.base import InvalidOrderError
from apps.accounts.models import PaperFill, PaperOrder, TradingAccount
from apps.accounts.paper import PaperBroker
from tests.accounts.paper_support import account, balance, broker, close_bar, instrument, make_account, order

__all__ = ["account", "broker", "instrument"]
D = Decimal


def test_ioc_market_buy_fills_at_once_at_the_newest_close_with_the_fee(
    broker: PaperBroker, account: TradingAccount, instrument: Any
) -> None:
    close_bar(instrument, 1, 100, 106, 99, 105)  # the newest close: 105
    state = broker.submit(order("ioc1", quantity="2", time_in_force="IOC"))
    assert state.status == "filled" and state.filled_quantity == D("2") and state.average_price == D("105")
    (fill,) = state.fills
    assert fill.price == D("105") and fill.fee == D("0.21")  # 0.1 % default taker fee of 210
    assert balance(account, "USDT") == (D("10000") - D("210") - D("0.21"), D("0"))
    assert balance(account, "BTC") == (D("2"), D("0"))
    # nothing rests: a later bar changes nothing
    close_bar(instrument, 2, 90, 91, 80, 85)
    assert PaperOrder.objects.get(client_order_id="ioc1").filled_quantity == D("2")
    assert PaperFill.objects.filter(order__client_order_id="ioc1").count() == 1


def test_ioc_fill_is_slipped_by_the_accounts_slippage_model(alice: Any, instrument: Any) -> None:
    slipped = make_account(alice, "Slipped", costs={"fee": 0.0, "slippage": "fixed_bps", "slippage_bps": 50})
    state = PaperBroker(int(slipped.pk)).submit(order("ioc2", side="buy", quantity="1", time_in_force="IOC"))
    assert state.average_price == D("100.5")  # 50 bps above the close of 100


def test_ioc_order_that_cannot_fill_expires_with_the_reason(broker: PaperBroker, account: TradingAccount) -> None:
    state = broker.submit(order("ioc3", side="sell", quantity="1", reduce_only=True, time_in_force="IOC"))
    assert state.status == "expired" and "no position to reduce" in state.reason
    assert state.fills == ()
    assert balance(account, "USDT") == (D("10000"), D("0"))


def test_ioc_is_for_market_orders_only(broker: PaperBroker) -> None:
    with pytest.raises(InvalidOrderError, match="Only a market order"):
        broker.submit(order("ioc4", type="limit", price=90, time_in_force="IOC"))
    assert not PaperOrder.objects.filter(client_order_id="ioc4").exists()
