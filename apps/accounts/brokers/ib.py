"""IbBroker: the Broker contract (apps.accounts.brokers.base) for Interactive Brokers through
ib_async (TWS or IB Gateway). No Django here.

``IbBroker(host, port, client_id, account_code, *, ib=None, timeout=10.0, ack_seconds=5.0,
contract_hints=None)``. ``ib``: an ``ib_async.IB`` to use instead of a new one (tests pass
tests.fakes.fake_ib.FakeIB); the broker connects it when it is not connected, and disconnects
on ``close()`` only an IB it created itself.

Symbols -> contracts:
- ``"EUR/USD"`` (two 3-letter codes) -> ``Forex("EURUSD")`` on IDEALPRO;
- ``"FUT:ES:202512"`` or ``"FUT:ES:202512:CME"`` -> ``Future("ES", "202512", exchange)``;
- ``"AAPL"`` / ``"STK:AAPL"`` / ``"AAPL:NASDAQ"`` -> ``Stock("AAPL", "SMART", "USD",
  primaryExchange=...)``;
- ``contract_hints[symbol]`` (from the instrument: ``sec_type`` STK/FUT/CASH, ``exchange``,
  ``currency``, ``last_trade_date``, ``multiplier``, ``primary_exchange``, ``root`` = the
  future's underlying symbol) overrides the above.
Contracts are qualified with TWS once per broker; one TWS does not know -> InvalidOrderError.

Orders: MarketOrder / LimitOrder / StopOrder / StopLimitOrder with ``orderRef`` = our client
order id (that is how ``fetch_order`` / ``cancel`` find them again, across sessions, through
``reqAllOpenOrders``, ``reqCompletedOrders`` and ``reqExecutions``), ``account`` = the account
code. ``submit`` waits up to ``ack_seconds`` for TWS's acknowledgement.

Errors:
- TWS / Gateway unreachable before anything was sent (connect refused or timed out, "Not
  connected" on send) -> NotSentError;
- no acknowledgement in time, or the connection dropped after the order went out (1100, 504)
  -> AmbiguousBrokerError (ask ``fetch_order``);
- 201 "Order rejected" -> InsufficientFundsError when the reason speaks of funds / margin /
  buying power, else PermanentBrokerError; 200 (no security definition), 110 (price off the
  tick), 321 / 322 (validation) -> InvalidOrderError; 103 (duplicate order id: TWS placed
  nothing) -> NotSentError; 10147 (cancel: unknown id) -> OrderNotFoundError;
- a read that times out or loses the connection -> TemporaryBrokerError.

Balances: ``CashBalance`` account values per currency (fallback: ``TotalCashValue`` of the account
summary). Positions: a fresh ``reqPositions`` for the account (symbol as above: stock symbol,
``EUR/USD``, future local symbol), a timeout raises TemporaryBrokerError (never an empty list).
Permissions: the TWS API cannot withdraw funds; key permissions do not apply to IB
(``can_withdraw=False``, the rest unknown).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, TypeVar

from apps.accounts.brokers.base import (
    AmbiguousBrokerError,
    AuthenticationBrokerError,
    Balance,
    Broker,
    BrokerError,
    Capabilities,
    ConnectionReport,
    FillReport,
    InsufficientFundsError,
    InvalidOrderError,
    MarketRules,
    NotSentError,
    OrderNotFoundError,
    OrderRequest,
    OrderState,
    PermanentBrokerError,
    Permissions,
    PositionReport,
    TemporaryBrokerError,
)

T = TypeVar("T")
WAITING = frozenset({"PendingSubmit", "ApiPending"})
FUNDS_WORDS = ("insufficient", "margin", "buying power", "equity with loan")
INVALID_CODES = frozenset({110, 200, 321, 322, 387, 434})
LOST_CONNECTION_CODES = frozenset({504, 1100, 1300, 2110})
_STATUS = {
    "PendingSubmit": "open",
    "ApiPending": "open",
    "PreSubmitted": "open",
    "Submitted": "open",
    "ApiUpdate": "open",
    "PendingCancel": "open",
    "ValidationError": "open",
    "Filled": "filled",
    "Cancelled": "cancelled",
    "ApiCancelled": "cancelled",
    "Inactive": "rejected",
}
_TYPES = {"MKT": "market", "LMT": "limit", "STP": "stop", "STP LMT": "stop_limit"}


def _dec(value: Any) -> Decimal | None:
    """An IB number as a Decimal via str; IB's "unset" (float max) and NaN -> None."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or abs(number) >= Decimal("1e300"):
        return None
    number = number.normalize()
    return number.quantize(Decimal(1)) if number.as_tuple().exponent > 0 else number  # type: ignore[operator]


def _to_float(value: Decimal, what: str) -> float:
    number = float(value)
    if Decimal(str(number)) != value:
        raise InvalidOrderError(f"The {what} {value} has more digits than the IB API can carry.", code="precision")
    return number


class IbBroker(Broker):
    """Interactive Brokers through ib_async. One instance per worker task."""

    name = "ib"
    capabilities = Capabilities(
        order_types=frozenset({"market", "limit", "stop", "stop_limit"}),
        shorting=True,
        fractional=False,
        native_oco=False,
        quote_quantity_market_buy=False,
        reports_withdraw_permission=False,
        market_types=frozenset({"stock", "future", "forex"}),
    )

    def __init__(
        self,
        host: str,
        port: int,
        client_id: int,
        account_code: str,
        *,
        ib: Any = None,
        timeout: float = 10.0,
        ack_seconds: float = 5.0,
        contract_hints: dict[str, dict[str, str]] | None = None,
    ):
        self.host = host or "127.0.0.1"
        self.port = int(port or 7497)
        self.client_id = int(client_id)
        self.account_code = account_code
        self.timeout = float(timeout)
        self.ack_seconds = float(ack_seconds)
        self.contract_hints = dict(contract_hints or {})
        self._owns_ib = ib is None
        self._ib = ib
        self._contracts: dict[str, Any] = {}

    # --- connection -------------------------------------------------------------------------

    @property
    def ib(self) -> Any:
        """The connected IB. Raises NotSentError when TWS / Gateway cannot be reached."""
        if self._ib is None:
            from ib_async import IB

            self._ib = IB()
        ib = self._ib
        ib.RequestTimeout = self.timeout
        if not ib.isConnected():
            try:
                ib.connect(
                    self.host, self.port, clientId=self.client_id, timeout=self.timeout, account=self.account_code
                )
            except (OSError, TimeoutError) as exc:
                raise NotSentError(
                    f"TWS / IB Gateway at {self.host}:{self.port} is not reachable ({type(exc).__name__}).",
                    code="unreachable",
                ) from None
        return ib

    def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except BrokerError:
            raise
        except TimeoutError as exc:
            raise TemporaryBrokerError(f"IB did not answer in {self.timeout:g} s.", code="timeout") from exc
        except (ConnectionError, OSError) as exc:
            raise TemporaryBrokerError(f"The connection to IB failed ({exc}).", code="unavailable") from exc

    # --- contracts and rules ----------------------------------------------------------------

    def contract_for(self, symbol: str) -> Any:
        """The qualified ib_async contract for ``symbol`` (see the module docstring)."""
        if symbol in self._contracts:
            return self._contracts[symbol]
        from ib_async import Contract, Forex, Future, Stock

        hints = self.contract_hints.get(symbol, {})
        parts = symbol.split(":")
        sec_type = (hints.get("sec_type") or "").upper()
        contract: Any
        if sec_type == "CASH" or (not sec_type and "/" in symbol and len(symbol.split("/")[0]) == 3):
            base, _, quote = symbol.replace(".", "/").partition("/")
            contract = Forex(base + (quote or hints.get("currency", "USD")), exchange=hints.get("exchange", "IDEALPRO"))
        elif sec_type == "FUT" or parts[0].upper() == "FUT":
            rest = parts[1:] if parts[0].upper() == "FUT" else parts
            root = hints.get("root") or (rest[0] if rest else symbol)
            month = hints.get("last_trade_date") or (rest[1] if len(rest) > 1 else "")
            exchange = hints.get("exchange") or (rest[2] if len(rest) > 2 else "")
            contract = Future(root, month, exchange, currency=hints.get("currency", "USD"))
            if hints.get("multiplier"):
                contract.multiplier = hints["multiplier"]
        else:
            rest = parts[1:] if parts[0].upper() == "STK" else parts
            ticker = rest[0] if rest else symbol
            primary = hints.get("primary_exchange") or (rest[1] if len(rest) > 1 else "")
            contract = Stock(
                ticker, hints.get("exchange", "SMART"), hints.get("currency", "USD"), primaryExchange=primary
            )
        if not isinstance(contract, Contract):  # pragma: no cover - defensive
            raise InvalidOrderError(f"Cannot build an IB contract for {symbol!r}.", code="unknown_symbol")
        qualified = self._read(self.ib.qualifyContracts, contract)
        qualified = [c for c in qualified or [] if c is not None and bool(getattr(c, "conId", 0))]
        if not qualified:
            raise InvalidOrderError(f"IB does not know the contract {symbol!r}.", code="unknown_symbol")
        self._contracts[symbol] = qualified[0]
        return qualified[0]

    def market_rules(self, symbol: str) -> MarketRules:
        contract = self.contract_for(symbol)
        details = self._read(self.ib.reqContractDetails, contract)
        if not details:
            raise InvalidOrderError(f"IB does not know the contract {symbol!r}.", code="unknown_symbol")
        d = details[0]
        step = _dec(d.sizeIncrement) or _dec(d.minSize) or Decimal(1)
        return MarketRules(
            symbol=symbol,
            base=str(contract.symbol),
            quote=str(contract.currency),
            step_size=step,
            tick_size=_dec(d.minTick),
            min_quantity=_dec(d.minSize) or step,
        )

    def _our_symbol(self, contract: Any) -> str:
        for symbol, known in self._contracts.items():
            if known.conId and known.conId == contract.conId:
                return symbol
        if contract.secType == "CASH":
            return f"{contract.symbol}/{contract.currency}"
        if contract.secType == "FUT":
            return str(contract.localSymbol or contract.symbol)
        return str(contract.symbol)

    # --- reads ------------------------------------------------------------------------------

    def fetch_balances(self) -> list[Balance]:
        ib = self.ib
        values = [
            v
            for v in self._read(ib.accountValues, self.account_code)
            if v.tag == "CashBalance" and v.currency and v.currency != "BASE"
        ]
        if not values:
            values = [v for v in self._read(ib.accountSummary, self.account_code) if v.tag == "TotalCashValue"]
        return [Balance(asset=v.currency, free=_dec(v.value) or Decimal(0)) for v in values]

    def fetch_positions(self) -> list[PositionReport]:
        """A fresh reqPositions for the account; TemporaryBrokerError when TWS does not answer."""
        positions = self._read(self.ib.reqPositions)
        if positions is None:
            raise TemporaryBrokerError("IB answered no positions list.")
        reports = []
        for p in positions:
            if self.account_code and p.account != self.account_code:
                continue
            quantity = _dec(p.position) or Decimal(0)
            if quantity == 0:
                continue
            multiplier = _dec(p.contract.multiplier) or Decimal(1)
            cost = _dec(p.avgCost)
            reports.append(
                PositionReport(
                    symbol=self._our_symbol(p.contract),
                    quantity=quantity,
                    average_price=(cost / multiplier) if cost is not None else None,
                )
            )
        return reports

    def fetch_permissions(self) -> Permissions:
        return Permissions(
            can_withdraw=False,
            detail="Interactive Brokers: the TWS API cannot withdraw funds; key permissions do not apply.",
        )

    def test_connection(self) -> ConnectionReport:
        try:
            balances = self.fetch_balances()
        except BrokerError as exc:
            return ConnectionReport(ok=False, message=exc.message)
        return ConnectionReport(
            ok=True, balances=tuple(balances), permissions=self.fetch_permissions(), message="Connected."
        )

    # --- orders -----------------------------------------------------------------------------

    def _build_order(
        self, request: OrderRequest, quantity: Decimal, price: Decimal | None, stop: Decimal | None
    ) -> Any:
        from ib_async import LimitOrder, MarketOrder, StopLimitOrder, StopOrder

        action = "BUY" if request.side == "buy" else "SELL"
        qty = _to_float(quantity, "quantity")
        order: Any
        if request.type == "market":
            order = MarketOrder(action, qty)
        elif request.type == "limit":
            assert price is not None
            order = LimitOrder(action, qty, _to_float(price, "price"))
        elif request.type == "stop":
            assert stop is not None
            order = StopOrder(action, qty, _to_float(stop, "stop price"))
        else:
            assert price is not None and stop is not None
            order = StopLimitOrder(action, qty, _to_float(price, "price"), _to_float(stop, "stop price"))
        order.orderRef = request.client_order_id
        order.account = self.account_code
        order.tif = request.time_in_force or "GTC"
        return order

    def submit(self, request: OrderRequest) -> OrderState:
        """Place the order with orderRef = client order id; wait for TWS's acknowledgement."""
        if request.type not in self.capabilities.order_types:
            raise InvalidOrderError(f"IB does not take {request.type} orders here.", code="not_supported")
        ib = self.ib
        for trade in ib.trades():
            if trade.order.orderRef == request.client_order_id and not trade.isDone():
                raise AmbiguousBrokerError(
                    f"An order with client id {request.client_order_id} is open at IB.", code="duplicate"
                )
        rules = self.market_rules(request.symbol)
        quantity = rules.round_quantity(request.quantity)
        price = rules.round_price(request.price, request.side) if request.price is not None else None
        stop = None
        if request.stop_price is not None:
            tick = rules.tick_size
            stop = request.stop_price
            if tick:
                rounding = ROUND_CEILING if request.side == "sell" else ROUND_FLOOR
                stop = ((stop / tick).to_integral_value(rounding=rounding) * tick).normalize()
        if request.type in {"limit", "stop_limit"} and (price is None or price <= 0):
            raise InvalidOrderError("A limit order needs a price above zero.", code="missing_price")
        if request.type in {"stop", "stop_limit"} and (stop is None or stop <= 0):
            raise InvalidOrderError("A stop order needs a stop price above zero.", code="missing_stop_price")
        problem = rules.check(quantity, price if price is not None else stop)
        if problem:
            raise InvalidOrderError(problem, code="below_minimum")
        contract = self.contract_for(request.symbol)
        order = self._build_order(request, quantity, price, stop)
        try:
            trade = ib.placeOrder(contract, order)
        except ConnectionError as exc:
            raise NotSentError(f"Not connected to IB ({exc}).", code="unreachable") from None
        deadline = time.monotonic() + self.ack_seconds
        while trade.orderStatus.status in WAITING and ib.isConnected() and time.monotonic() < deadline:
            ib.sleep(0.02)
        ib.sleep(0)  # deliver what already arrived (fills after the acknowledgement)
        error = self._error_of(trade)
        if error is not None:
            raise error
        if trade.orderStatus.status in WAITING:
            raise AmbiguousBrokerError(
                "IB did not acknowledge the order in time"
                + ("" if ib.isConnected() else " and the connection dropped")
                + "; ask for it by its client id.",
            )
        return self._state(trade)

    def _error_of(self, trade: Any) -> BrokerError | None:
        for entry in trade.log:
            code = entry.errorCode
            if not code or (2100 <= code < 2200) or code in {399, 2104, 2106, 2158}:
                continue
            message = f"IB error {code}: {entry.message}"
            if code == 202:
                continue  # cancelled: a state, not an error
            if code == 201:
                text = entry.message.lower()
                if any(word in text for word in FUNDS_WORDS):
                    return InsufficientFundsError(message)
                return PermanentBrokerError(message, code="rejected")
            if code in INVALID_CODES:
                if code in {110, 321, 322} and not trade.isDone():
                    continue  # a warning about a live order
                return InvalidOrderError(message)
            if code == 103:
                return NotSentError(message, code="duplicate_order_id")
            if code in LOST_CONNECTION_CODES:
                return AmbiguousBrokerError(message)
            if code in {326, 502, 1101}:
                return AuthenticationBrokerError(message) if code == 326 else AmbiguousBrokerError(message)
            if trade.isDone():
                return PermanentBrokerError(message, code="rejected")
        return None

    def _find_trade(self, client_order_id: str) -> Any:
        ib = self.ib
        matches = [t for t in ib.trades() if t.order.orderRef == client_order_id]
        if not matches:
            matches = [t for t in self._read(ib.reqAllOpenOrders) if t.order.orderRef == client_order_id]
        if not matches:
            matches = [t for t in self._read(ib.reqCompletedOrders, True) if t.order.orderRef == client_order_id]
        if not matches:
            raise OrderNotFoundError(f"IB does not know the order {client_order_id}.")
        live = [t for t in matches if not t.isDone()]
        return (live or matches)[-1]

    def fetch_order(self, client_order_id: str, symbol: str) -> OrderState:
        trade = self._find_trade(client_order_id)
        state = self._state(trade)
        traded = state.filled_quantity > 0 or state.status == "filled"
        if traded and (not state.fills or sum(f.quantity for f in state.fills) < state.filled_quantity):
            fills = [
                f
                for f in self._read(self.ib.reqExecutions)
                if f.execution.orderRef == client_order_id
                and (not trade.order.permId or f.execution.permId == trade.order.permId)
            ]
            state = self._state(trade, extra_fills=fills)
        return state

    def cancel(self, client_order_id: str, symbol: str) -> OrderState:
        trade = self._find_trade(client_order_id)
        if trade.isDone():
            return self.fetch_order(client_order_id, symbol)
        ib = self.ib
        try:
            ib.cancelOrder(trade.order)
        except ConnectionError:
            raise NotSentError("Not connected to IB.", code="unreachable") from None
        deadline = time.monotonic() + self.ack_seconds
        while not trade.isDone() and ib.isConnected() and time.monotonic() < deadline:
            ib.sleep(0.02)
        for entry in trade.log:
            if entry.errorCode == 10147:
                raise OrderNotFoundError(f"IB error 10147: {entry.message}")
        if not trade.isDone():
            raise AmbiguousBrokerError("IB did not confirm the cancel in time; ask again.")
        return self.fetch_order(client_order_id, symbol)

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        trades = self._read(self.ib.reqAllOpenOrders)
        con_id = self.contract_for(symbol).conId if symbol else None
        return [self._state(t) for t in trades if con_id is None or t.contract.conId == con_id]

    def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[FillReport]:
        con_id = self.contract_for(symbol).conId
        fills = self._read(self.ib.reqExecutions)
        reports = [self._fill(f) for f in fills if f.contract.conId == con_id]
        if since is not None:
            reports = [r for r in reports if r.at >= since]
        return reports

    # --- parsing ----------------------------------------------------------------------------

    def _fill(self, fill: Any) -> FillReport:
        execution = fill.execution
        report = fill.commissionReport
        if (not report or not report.execId) and self._ib is not None:
            # ib_async keeps the commission on the first Fill object it saw for an execution;
            # a later reqExecutions answer carries an empty report.
            known = self._ib.wrapper.fills.get(execution.execId)
            report = known.commissionReport if known is not None else report
        at = fill.time or execution.time or datetime.now(tz=UTC)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return FillReport(
            trade_id=str(execution.execId),
            quantity=_dec(execution.shares) or Decimal(0),
            price=_dec(execution.price) or Decimal(0),
            fee=(_dec(report.commission) or Decimal(0)) if report else Decimal(0),
            fee_currency=str(report.currency if report else ""),
            at=at,
            is_maker=execution.lastLiquidity == 2,
        )

    def _state(self, trade: Any, *, extra_fills: list[Any] | None = None) -> OrderState:
        status_text = trade.orderStatus.status
        status = _STATUS.get(status_text, "open")
        by_id = {f.execution.execId: f for f in [*trade.fills, *(extra_fills or [])]}
        fills = tuple(self._fill(f) for f in by_id.values())
        filled = _dec(trade.orderStatus.filled) or _dec(getattr(trade.order, "filledQuantity", None)) or Decimal(0)
        if not filled and fills:
            filled = sum((f.quantity for f in fills), Decimal(0))
        if status == "open" and filled > 0:
            status = "partially_filled"
        if status == "cancelled" and any(e.errorCode for e in trade.log if e.errorCode not in (0, 202)):
            status = "rejected"
        average = _dec(trade.orderStatus.avgFillPrice) if filled > 0 else None
        if filled > 0 and not average and fills:
            average = sum((f.price * f.quantity for f in fills), Decimal(0)) / filled
        order = trade.order
        kind = _TYPES.get(order.orderType, order.orderType.lower())
        reason = next((e.message for e in reversed(trade.log) if e.errorCode), "")
        last = trade.log[-1].time if trade.log else None
        return OrderState(
            client_order_id=order.orderRef,
            status=status,
            exchange_order_id=str(order.permId or order.orderId or ""),
            symbol=self._our_symbol(trade.contract),
            side="buy" if order.action == "BUY" else "sell",
            type=kind,
            quantity=_dec(order.totalQuantity) or Decimal(0),
            price=_dec(order.lmtPrice) if kind in {"limit", "stop_limit"} else None,
            stop_price=_dec(order.auxPrice) if kind in {"stop", "stop_limit"} else None,
            filled_quantity=filled,
            average_price=average,
            fills=fills,
            reason=reason if status in {"rejected", "cancelled"} else "",
            updated_at=last if last is None or last.tzinfo else last.replace(tzinfo=UTC),
        )

    def close(self) -> None:
        if self._owns_ib and self._ib is not None and self._ib.isConnected():
            self._ib.disconnect()
