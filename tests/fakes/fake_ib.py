"""FakeIB: a real ``ib_async.IB`` whose socket client is replaced by a stub TWS.

No TWS or IB Gateway runs here, and the IB wire protocol is not faked. What is real: ib_async's
``IB`` object and its ``Wrapper`` (the state machine that turns TWS messages into Trade /
OrderStatus / Fill / Position objects). What is stubbed: ``IB.client`` (ib_async's ``Client``,
the socket layer). The stub answers each request the way TWS does, by calling the Wrapper's
callbacks with ib_async objects shaped like a paper account's messages (ids, exchanges, sides,
statuses as TWS sends them), delivered through the event loop as the network would:

- on connect: ``nextValidId`` (the client's order id sequence starts there; after a reconnect it
  continues above every id TWS has seen, as TWS does), ``managedAccounts``, account values;
- ``placeOrder``: ``openOrder`` (status PreSubmitted for stops, else Submitted) and
  ``orderStatus``; a market order (or a limit that crosses, or any order under
  ``fill_immediately``) then ``execDetails`` + ``commissionReport`` + ``orderStatus`` Filled;
- ``cancelOrder``: ``orderStatus`` Cancelled, or error 10147 (unknown id) / 10148 (already done);
- ``reqAllOpenOrders`` / ``reqOpenOrders``: ``openOrder`` + ``orderStatus`` per open order (all
  clients / this client), then ``openOrderEnd``; ``reqCompletedOrders``: ``completedOrder`` per
  done order, then ``completedOrdersEnd``;
- ``reqExecutions``: ``execDetails`` + ``commissionReport`` per execution, ``execDetailsEnd``;
- ``reqPositions``: ``position`` per holding, ``positionEnd``;
- ``reqContractDetails``: ``contractDetails`` + ``contractDetailsEnd`` for the recorded
  contracts (AAPL stock, EUR.USD forex, ES future), else error 200 "No security definition".

Knobs on ``fake.tws``: ``refuse_connect`` (connect raises ConnectionRefusedError),
``reject_next = (code, message)`` (the next order is rejected with that error, e.g. 201),
``drop_after_place`` (TWS receives the next order, then the connection drops before any
answer), ``silent`` (orders are received, no status ever comes back), ``positions_error``
(``positionEnd`` never comes: the request times out), ``fill_immediately``. Helpers:
``set_price(symbol, price)`` (fills crossed limits, triggers stops), ``orders_with_ref(ref)``,
``place_count(ref)``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ib_async import IB, util
from ib_async.contract import Contract, ContractDetails
from ib_async.objects import CommissionReport, ConnectionStats, Execution
from ib_async.order import Order, OrderState

ACCOUNT = "DU1234567"

# Contract details as TWS reports them for a paper account (the fields the adapter reads).
RECORDED_DETAILS: dict[tuple[str, str, str], ContractDetails] = {
    ("STK", "AAPL", "USD"): ContractDetails(
        contract=Contract(
            secType="STK",
            conId=265598,
            symbol="AAPL",
            exchange="SMART",
            primaryExchange="NASDAQ",
            currency="USD",
            localSymbol="AAPL",
            tradingClass="NMS",
        ),
        marketName="NMS",
        minTick=0.01,
        orderTypes="ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,COND,LMT,MKT,STP,STPLMT,TRAIL",
        validExchanges="SMART,AMEX,NYSE,CBOE,ISLAND",
        longName="APPLE INC",
        timeZoneId="US/Eastern",
        minSize=1.0,
        sizeIncrement=1.0,
        suggestedSizeIncrement=100.0,
    ),
    ("CASH", "EUR", "USD"): ContractDetails(
        contract=Contract(
            secType="CASH",
            conId=12087792,
            symbol="EUR",
            exchange="IDEALPRO",
            currency="USD",
            localSymbol="EUR.USD",
            tradingClass="EUR.USD",
        ),
        marketName="EUR.USD",
        minTick=0.00005,
        orderTypes="ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,CASHQTY,COND,LMT,MKT,STP,STPLMT,TRAIL",
        validExchanges="IDEALPRO",
        longName="European Monetary Union Euro",
        timeZoneId="US/Eastern",
        minSize=1.0,
        sizeIncrement=1.0,
        suggestedSizeIncrement=1.0,
    ),
    ("FUT", "ES", "USD"): ContractDetails(
        contract=Contract(
            secType="FUT",
            conId=637533641,
            symbol="ES",
            lastTradeDateOrContractMonth="20251219",
            multiplier="50",
            exchange="CME",
            currency="USD",
            localSymbol="ESZ5",
            tradingClass="ES",
        ),
        marketName="ES",
        minTick=0.25,
        orderTypes="ACTIVETIM,AD,ADJUST,ALERT,ALLOC,COND,LMT,MKT,STP,STPLMT,TRAIL",
        validExchanges="CME,QBALGO",
        longName="E-mini S&P 500",
        contractMonth="202512",
        timeZoneId="US/Central",
        minSize=1.0,
        sizeIncrement=1.0,
        suggestedSizeIncrement=1.0,
    ),
}


@dataclass
class TwsOrder:
    """An order as TWS holds it."""

    order_id: int
    client_id: int
    perm_id: int
    contract: Contract
    order: Order
    status: str = "Submitted"
    filled: float = 0.0
    avg_price: float = 0.0
    executions: list[tuple[Execution, CommissionReport]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in {"PreSubmitted", "Submitted", "PendingSubmit", "PendingCancel"}

    @property
    def remaining(self) -> float:
        return float(self.order.totalQuantity) - self.filled


class FakeTWS:
    """The brokerage side: book, executions, positions, cash, knobs."""

    def __init__(self, *, account: str = ACCOUNT, next_valid_id: int = 1, cash: dict[str, float] | None = None):
        self.account = account
        self.next_valid_id = next_valid_id
        self.perm_seq = 1_800_000_000
        self.exec_seq = 0
        self.orders: list[TwsOrder] = []
        self.placed: list[tuple[int, str]] = []  # (orderId, orderRef) of every placeOrder received
        self.prices: dict[int, float] = {265598: 190.0, 12087792: 1.085, 637533641: 5000.0}
        self.cash: dict[str, float] = dict(cash or {"USD": 100_000.0})
        self.positions: dict[int, tuple[Contract, float, float]] = {}  # conId -> (contract, qty, avgCost)
        self.commission = 1.0
        self.refuse_connect = False
        self.reject_next: tuple[int, str] | None = None
        self.drop_after_place = False
        self.silent = False
        self.positions_error = False
        self.fill_immediately = False

    def details_for(self, contract: Contract) -> ContractDetails | None:
        if contract.conId:
            for details in RECORDED_DETAILS.values():
                if details.contract and details.contract.conId == contract.conId:
                    return details
        return RECORDED_DETAILS.get((contract.secType, contract.symbol, contract.currency or "USD"))

    def orders_with_ref(self, order_ref: str) -> list[TwsOrder]:
        return [o for o in self.orders if o.order.orderRef == order_ref]

    def place_count(self, order_ref: str) -> int:
        return sum(1 for _, ref in self.placed if ref == order_ref)


class FakeIBClient:
    """Stands in for ib_async's ``Client``: requests go to FakeTWS, answers come back as Wrapper
    callbacks on the event loop."""

    def __init__(self, ib: FakeIB, tws: FakeTWS):
        self.ib = ib
        self.wrapper = ib.wrapper
        self.tws = tws
        self.host = "127.0.0.1"
        self.port = 7497
        self.clientId = 0
        self.connected = False
        self._reqIdSeq = 0

    # --- connection
    def isReady(self) -> bool:
        return self.connected

    def isConnected(self) -> bool:
        return self.connected

    def connectionStats(self) -> ConnectionStats:
        return ConnectionStats(0.0, 0.0, 0, 0, 0, 0)

    def disconnect(self) -> None:
        self.connected = False

    def getReqId(self) -> int:
        if not self.connected:
            raise ConnectionError("Not connected")
        value = self._reqIdSeq
        self._reqIdSeq += 1
        return value

    def updateReqId(self, minReqId: int) -> None:
        self._reqIdSeq = max(self._reqIdSeq, minReqId)

    def _send_check(self) -> None:
        if not self.connected:
            raise ConnectionError("Not connected")

    def _post(self, name: str, *args: Any) -> None:
        loop = util.getLoop()
        callback = getattr(self.wrapper, name)

        def deliver() -> None:
            self.wrapper.lastTime = dt.datetime.now(dt.UTC)  # as the real Client does per message
            callback(*args)

        loop.call_soon(deliver)

    # --- orders
    def _order_copy(self, tws_order: TwsOrder) -> Order:
        order = copy.copy(tws_order.order)
        order.orderId = tws_order.order_id
        order.clientId = tws_order.client_id
        order.permId = tws_order.perm_id
        return order

    def _status(self, o: TwsOrder) -> None:
        self._post(
            "orderStatus",
            o.order_id,
            o.status,
            o.filled,
            o.remaining,
            o.avg_price,
            o.perm_id,
            0,
            o.avg_price,
            o.client_id,
            "",
            0.0,
        )

    def _open_order(self, o: TwsOrder) -> None:
        self._post("openOrder", o.order_id, o.contract, self._order_copy(o), OrderState(status=o.status))

    def placeOrder(self, orderId: int, contract: Contract, order: Order) -> None:
        self._send_check()
        tws = self.tws
        tws.placed.append((orderId, order.orderRef))
        details = tws.details_for(contract)
        qualified = copy.copy(details.contract) if details and details.contract else contract
        tws.perm_seq += 1
        o = TwsOrder(orderId, self.clientId, tws.perm_seq, qualified, copy.copy(order))
        o.order.orderId, o.order.clientId, o.order.permId = orderId, self.clientId, o.perm_id
        tws.next_valid_id = max(tws.next_valid_id, orderId + 1)
        if tws.drop_after_place:
            tws.drop_after_place = False
            tws.orders.append(o)
            self.connected = False
            return
        if tws.reject_next is not None:
            code, message = tws.reject_next
            tws.reject_next = None
            o.status = "Cancelled"
            tws.orders.append(o)
            self._post("error", orderId, code, message, "")
            return
        if details is None:
            o.status = "Cancelled"
            tws.orders.append(o)
            self._post("error", orderId, 200, "No security definition has been found for the request", "")
            return
        o.status = "PreSubmitted" if order.orderType in {"STP", "STP LMT"} else "Submitted"
        tws.orders.append(o)
        if tws.silent:
            return
        self._open_order(o)
        self._status(o)
        self._match(o, tws.prices.get(qualified.conId, 0.0), arrival=True)

    def _match(self, o: TwsOrder, price: float, *, arrival: bool = False) -> None:
        if not o.is_open:
            return
        action = o.order.action
        kind = o.order.orderType
        if kind in {"STP", "STP LMT"}:
            stop = float(o.order.auxPrice or 0.0)
            hit = (action == "BUY" and price >= stop) or (action == "SELL" and price <= stop)
            if not hit and not self.tws.fill_immediately:
                return
            if kind == "STP":
                self._fill(o, price if not self.tws.fill_immediately else stop)
                return
            o.order.orderType = "LMT"  # triggered: now a limit
            o.status = "Submitted"
            self._status(o)
            kind = "LMT"
        if kind == "MKT":
            self._fill(o, price)
        elif kind == "LMT":
            limit = float(o.order.lmtPrice or 0.0)
            if self.tws.fill_immediately:
                self._fill(o, limit)
            elif (action == "BUY" and price <= limit) or (action == "SELL" and price >= limit):
                self._fill(o, price if arrival else limit)

    def _fill(self, o: TwsOrder, price: float) -> None:
        tws = self.tws
        qty = o.remaining
        tws.exec_seq += 1
        exec_id = f"0000e0d5.{o.perm_id:08x}.01.{tws.exec_seq:02d}"
        now = dt.datetime.now(dt.UTC)
        o.avg_price = (o.avg_price * o.filled + price * qty) / (o.filled + qty)
        o.filled += qty
        o.status = "Filled"
        side = "BOT" if o.order.action == "BUY" else "SLD"
        execution = Execution(
            execId=exec_id,
            time=now,
            acctNumber=tws.account,
            exchange=o.contract.primaryExchange or o.contract.exchange or "ISLAND",
            side=side,
            shares=qty,
            price=price,
            permId=o.perm_id,
            clientId=o.client_id,
            orderId=o.order_id,
            liquidation=0,
            cumQty=o.filled,
            avgPrice=o.avg_price,
            orderRef=o.order.orderRef,
            lastLiquidity=1 if o.order.orderType in {"MKT", "STP"} else 2,  # 1 removed, 2 added liquidity
        )
        report = CommissionReport(execId=exec_id, commission=tws.commission, currency="USD", realizedPNL=0.0)
        o.executions.append((execution, report))
        signed = qty if side == "BOT" else -qty
        multiplier = float(o.contract.multiplier or 1)
        _, held, cost = tws.positions.get(o.contract.conId, (o.contract, 0.0, 0.0))
        new = held + signed
        avg_cost = (
            (cost * held + price * multiplier * signed) / new if new and (held * signed > 0 or not held) else cost
        )
        tws.positions[o.contract.conId] = (o.contract, new, avg_cost if new else 0.0)
        currency = o.contract.currency or "USD"
        tws.cash[currency] = tws.cash.get(currency, 0.0) - signed * price * multiplier - tws.commission
        self._post("execDetails", -1, o.contract, execution)
        self._post("commissionReport", report)
        self._status(o)
        self._account_values()

    def cancelOrder(self, orderId: int, manualCancelOrderTime: str = "") -> None:
        self._send_check()
        o = next((x for x in self.tws.orders if x.order_id == orderId and x.client_id == self.clientId), None)
        if o is None:
            self._post("error", orderId, 10147, f"OrderId {orderId} that needs to be cancelled is not found.", "")
            return
        if not o.is_open:
            self._post(
                "error",
                orderId,
                10148,
                f"OrderId {orderId} that needs to be cancelled cannot be cancelled, state: {o.status}.",
                "",
            )
            return
        o.status = "Cancelled"
        self._status(o)

    def reqAllOpenOrders(self) -> None:
        self._send_check()
        for o in self.tws.orders:
            if o.is_open:
                self._open_order(o)
                self._status(o)
        self._post("openOrderEnd")

    def reqOpenOrders(self) -> None:
        self._send_check()
        for o in self.tws.orders:
            if o.is_open and o.client_id == self.clientId:
                self._open_order(o)
                self._status(o)
        self._post("openOrderEnd")

    def reqCompletedOrders(self, apiOnly: bool) -> None:
        self._send_check()
        for o in self.tws.orders:
            if not o.is_open:
                state = OrderState(status=o.status)
                order = self._order_copy(o)
                order.filledQuantity = o.filled
                self._post("completedOrder", o.contract, order, state)
        self._post("completedOrdersEnd")

    def reqExecutions(self, reqId: int, execFilter: Any) -> None:
        self._send_check()
        for o in self.tws.orders:
            for execution, report in o.executions:
                self._post("execDetails", reqId, o.contract, copy.copy(execution))
                self._post("commissionReport", copy.copy(report))
        self._post("execDetailsEnd", reqId)

    def reqPositions(self) -> None:
        self._send_check()
        if self.tws.positions_error:
            return  # positionEnd never comes
        for contract, qty, avg_cost in self.tws.positions.values():
            self._post("position", self.tws.account, contract, qty, avg_cost)
        self._post("positionEnd")

    def reqContractDetails(self, reqId: int, contract: Contract) -> None:
        self._send_check()
        details = self.tws.details_for(contract)
        if details is None:
            self._post("error", reqId, 200, "No security definition has been found for the request", "")
            return
        self._post("contractDetails", reqId, copy.deepcopy(details))
        self._post("contractDetailsEnd", reqId)

    def reqAccountUpdates(self, subscribe: bool, acctCode: str) -> None:
        self._send_check()
        self._account_values()
        self._post("accountDownloadEnd", acctCode)

    def _account_values(self) -> None:
        for currency, value in self.tws.cash.items():
            self._post("updateAccountValue", "CashBalance", f"{value:.2f}", currency, self.tws.account)
        total = sum(self.tws.cash.values())
        self._post("updateAccountValue", "TotalCashValue", f"{total:.2f}", "USD", self.tws.account)
        self._post("updateAccountValue", "NetLiquidation", f"{total:.2f}", "USD", self.tws.account)

    def __getattr__(self, name: str) -> Any:
        """Requests this stub does not model are accepted and never answered."""
        if name.startswith("req") or name.startswith("cancel"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


class FakeIB(IB):
    """``ib_async.IB`` with the stub client. Pass it as ``IbBroker(..., ib=fake)``."""

    def __init__(self, tws: FakeTWS | None = None):
        super().__init__()
        self.tws = tws or FakeTWS()
        self.client = FakeIBClient(self, self.tws)  # type: ignore[assignment]
        self.connect_count = 0

    def connect(  # type: ignore[override]
        self,
        host: str = "127.0.0.1",
        port: int = 7497,
        clientId: int = 1,
        timeout: float = 4,
        readonly: bool = False,
        account: str = "",
        **kwargs: Any,
    ) -> FakeIB:
        if self.tws.refuse_connect:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 7497)")
        client = self.client
        assert isinstance(client, FakeIBClient)
        client.host, client.port, client.clientId = host, port, clientId
        client.connected = True
        client._reqIdSeq = self.tws.next_valid_id  # nextValidId
        self.wrapper.clientId = clientId
        self.wrapper.accounts = [self.tws.account]
        self.connect_count += 1
        client._account_values()
        self.sleep(0)  # let the startup messages arrive
        return self

    def set_price(self, con_or_symbol: int | str, price: float) -> None:
        """Move the market for a recorded contract and match resting orders."""
        con_id = con_or_symbol if isinstance(con_or_symbol, int) else self._con_id(con_or_symbol)
        self.tws.prices[con_id] = float(price)
        client = self.client
        assert isinstance(client, FakeIBClient)
        for o in list(self.tws.orders):
            if o.contract.conId == con_id:
                client._match(o, float(price))
        if client.connected:
            self.sleep(0)

    @staticmethod
    def _con_id(symbol: str) -> int:
        for (_, sym, _), details in RECORDED_DETAILS.items():
            if sym == symbol and details.contract:
                return int(details.contract.conId)
        raise KeyError(symbol)


def run_pending() -> None:
    """Deliver every queued callback (outside an IB call)."""
    loop = util.getLoop()
    loop.run_until_complete(asyncio.sleep(0))
