"""IbBroker at the ib_async boundary. No TWS or IB Gateway runs here: the tests use
tests.fakes.fake_ib.FakeIB, a real ``ib_async.IB`` (and its real Wrapper state machine) whose
socket client is a stub answering with ib_async objects shaped like a paper account's
messages (nextValidId, openOrder, orderStatus, execDetails, reqAllOpenOrders...). The IB wire
protocol itself is not exercised. No database."""

from decimal import Decimal as D

import pytest

from apps.accounts.brokers.base import (
    AmbiguousBrokerError,
    InsufficientFundsError,
    InvalidOrderError,
    NotSentError,
    OrderNotFoundError,
    OrderRequest,
    PermanentBrokerError,
    TemporaryBrokerError,
)
from apps.accounts.brokers.ib import IbBroker
from tests.fakes.fake_ib import ACCOUNT, FakeIB


@pytest.fixture
def fake():
    ib = FakeIB()
    yield ib
    if ib.isConnected():
        ib.disconnect()


@pytest.fixture
def broker(fake):
    return IbBroker("127.0.0.1", 7497, 7, ACCOUNT, ib=fake, timeout=0.5, ack_seconds=0.5)


def order(coid, symbol="AAPL", side="buy", kind="market", qty="10", price=None, stop=None):
    return OrderRequest(
        client_order_id=coid,
        symbol=symbol,
        side=side,
        type=kind,
        quantity=D(qty),
        price=D(price) if price else None,
        stop_price=D(stop) if stop else None,
    )


def test_connects_on_first_use_and_order_ids_follow_next_valid_id(fake, broker):
    fake.tws.next_valid_id = 41
    broker.submit(order("ib-a"))
    broker.submit(order("ib-b"))
    assert fake.connect_count == 1
    ids = [o.order_id for o in fake.tws.orders]
    assert ids[0] >= 41 and ids[1] > ids[0]  # request ids share the sequence, as in ib_async
    assert [o.order.orderRef for o in fake.tws.orders] == ["ib-a", "ib-b"]
    assert all(o.order.account == ACCOUNT for o in fake.tws.orders)


def test_rules_from_contract_details(broker):
    aapl = broker.market_rules("AAPL")
    assert (aapl.step_size, aapl.tick_size, aapl.min_quantity) == (D(1), D("0.01"), D(1))
    assert broker.market_rules("EUR/USD").tick_size == D("0.00005")
    assert broker.market_rules("FUT:ES:20251219:CME").tick_size == D("0.25")
    with pytest.raises(InvalidOrderError):
        broker.market_rules("NOPE")


def test_market_order_fills_with_execution_and_commission(fake, broker):
    state = broker.submit(order("ib-mkt", qty="10"))
    assert state.status == "filled" and state.client_order_id == "ib-mkt"
    assert state.filled_quantity == D(10) and state.average_price == D(190)
    [fill] = state.fills
    assert fill.price == D(190) and fill.quantity == D(10) and fill.fee == D(1) and fill.fee_currency == "USD"
    assert not fill.is_maker
    positions = broker.fetch_positions()
    assert [(p.symbol, p.quantity) for p in positions] == [("AAPL", D(10))]
    usd = next(b for b in broker.fetch_balances() if b.asset == "USD")
    assert usd.free == D("98099")  # 100000 - 10 x 190 - 1 commission


def test_limit_rests_then_fills_and_is_found_by_client_id(fake, broker):
    state = broker.submit(order("ib-lim", kind="limit", qty="5", price="180.004"))
    assert state.status == "open" and state.price == D("180")  # a buy's limit rounds down
    assert [o.client_order_id for o in broker.fetch_open_orders()] == ["ib-lim"]
    fake.set_price("AAPL", 179.5)
    done = broker.fetch_order("ib-lim", "AAPL")
    assert done.status == "filled" and done.fills[0].price == D(180) and done.fills[0].is_maker
    assert broker.fetch_open_orders("AAPL") == []
    assert [f.fee for f in broker.fetch_fills("AAPL")] == [D(1)]


def test_stop_order_waits_for_its_trigger(fake, broker):
    broker.submit(order("ib-long", qty="10"))
    state = broker.submit(order("ib-stop", side="sell", kind="stop", qty="10", stop="185.001"))
    assert state.status == "open" and state.type == "stop"
    assert state.stop_price == D("185.01")  # a sell stop rounds up
    fake.set_price("AAPL", 185)
    assert broker.fetch_order("ib-stop", "AAPL").status == "filled"
    assert broker.fetch_positions() == []


def test_cancel_by_client_id(fake, broker):
    broker.submit(order("ib-c", side="sell", kind="limit", qty="1", price="250"))
    state = broker.cancel("ib-c", "AAPL")
    assert state.status == "cancelled"
    # a filled order comes back filled; an unknown one is not found
    broker.submit(order("ib-f"))
    assert broker.cancel("ib-f", "AAPL").status == "filled"
    with pytest.raises(OrderNotFoundError):
        broker.cancel("ib-none", "AAPL")


def test_orders_are_found_again_from_a_new_session(fake, broker):
    """After a worker restart the session's trades are gone: reqAllOpenOrders and
    reqCompletedOrders + reqExecutions find the orders by orderRef."""
    broker.submit(order("ib-open", kind="limit", qty="2", price="150"))
    broker.submit(order("ib-done", qty="3"))
    fake.disconnect()  # clears ib_async's session state
    fresh = IbBroker("127.0.0.1", 7497, 7, ACCOUNT, ib=fake, timeout=0.5, ack_seconds=0.5)
    assert fresh.fetch_order("ib-open", "AAPL").status == "open"
    done = fresh.fetch_order("ib-done", "AAPL")
    assert done.status == "filled" and done.filled_quantity == D(3)
    assert [f.quantity for f in done.fills] == [D(3)]
    with pytest.raises(OrderNotFoundError):
        fresh.fetch_order("ib-never", "AAPL")
    # new ids continue above everything TWS has seen
    fresh.submit(order("ib-next"))
    assert fake.tws.orders[-1].order_id > max(o.order_id for o in fake.tws.orders[:-1])


def test_duplicate_open_client_id_is_refused_without_sending(fake, broker):
    broker.submit(order("ib-dup", kind="limit", qty="1", price="150"))
    with pytest.raises(AmbiguousBrokerError) as caught:
        broker.submit(order("ib-dup", kind="limit", qty="1", price="150"))
    assert caught.value.code == "duplicate"
    assert fake.tws.place_count("ib-dup") == 1


def test_rejection_201_insufficient_funds(fake, broker):
    fake.tws.reject_next = (201, "Order rejected - reason:Your account has insufficient funds.")
    with pytest.raises(InsufficientFundsError):
        broker.submit(order("ib-poor"))
    fake.tws.reject_next = (201, "Order rejected - reason:The contract is not available for trading.")
    with pytest.raises(PermanentBrokerError) as caught:
        broker.submit(order("ib-rej"))
    assert not isinstance(caught.value, InsufficientFundsError)
    assert broker.fetch_order("ib-rej", "AAPL").status == "rejected"


def test_local_validation_sends_nothing(fake, broker):
    with pytest.raises(InvalidOrderError):
        broker.submit(order("ib-frac", qty="0.5"))  # rounds to zero shares
    with pytest.raises(InvalidOrderError):
        broker.submit(order("ib-unknown", symbol="NOPE"))
    assert fake.tws.placed == []


def test_unreachable_gateway_is_not_sent(fake):
    fake.tws.refuse_connect = True
    broker = IbBroker("127.0.0.1", 7497, 7, ACCOUNT, ib=fake, timeout=0.5)
    with pytest.raises(NotSentError):
        broker.submit(order("ib-down"))
    report = broker.test_connection()
    assert report.ok is False and "not reachable" in report.message


def test_connection_drop_after_sending_is_ambiguous(fake, broker):
    broker.market_rules("AAPL")
    fake.tws.drop_after_place = True
    with pytest.raises(AmbiguousBrokerError):
        broker.submit(order("ib-drop"))
    assert fake.tws.place_count("ib-drop") == 1  # TWS has it: the caller must ask, not resend


def test_no_acknowledgement_is_ambiguous(fake, broker):
    broker.market_rules("AAPL")
    fake.tws.silent = True
    with pytest.raises(AmbiguousBrokerError):
        broker.submit(order("ib-silent"))


def test_positions_timeout_raises_never_empty(fake, broker):
    broker.submit(order("ib-pos"))
    fake.tws.positions_error = True
    with pytest.raises(TemporaryBrokerError):
        broker.fetch_positions()


def test_permissions_not_applicable(broker):
    permissions = broker.fetch_permissions()
    assert permissions.can_withdraw is False and "cannot withdraw" in permissions.detail
    assert broker.test_connection().ok


def test_forex_and_future_contracts(fake, broker):
    state = broker.submit(order("ib-fx", symbol="EUR/USD", qty="20000"))
    assert state.status == "filled" and state.symbol == "EUR/USD"
    hinted = IbBroker(
        "127.0.0.1",
        7497,
        7,
        ACCOUNT,
        ib=fake,
        timeout=0.5,
        contract_hints={"ESZ5": {"sec_type": "FUT", "root": "ES", "last_trade_date": "20251219", "exchange": "CME"}},
    )
    assert hinted.submit(order("ib-es", symbol="ESZ5", qty="1")).status == "filled"
    symbols = {p.symbol: p for p in hinted.fetch_positions()}
    assert symbols["ESZ5"].quantity == D(1) and symbols["ESZ5"].average_price == D(5000)
