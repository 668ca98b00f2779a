"""The broker contract: what every venue adapter (paper, ccxt, ib) offers the execution service.

Pure Python, no Django. Money and quantities are Decimal in and out; timestamps aware UTC.

Every call either returns a frozen dataclass below or raises one of the errors below, and the
error says what the caller may do next:

- :class:`NotSentError` (a :class:`TemporaryBrokerError`): the request certainly did not reach
  the venue's matching engine (a connection refused before the body went out, a 429, a
  validation failure of our own). Safe to send again later (after ``retry_after`` seconds).
- :class:`AmbiguousBrokerError` (a :class:`TemporaryBrokerError`): the request may have been
  accepted (a timeout or reset after the body went out, a 5xx after it). The caller must not
  send again; it asks :meth:`Broker.fetch_order` about the client order id until it answers.
- :class:`PermanentBrokerError`: the venue refused (insufficient balance, a filter, an unknown
  symbol); retrying cannot help. :class:`AuthenticationBrokerError` (revoked or wrong key) and
  :class:`InsufficientFundsError` are kinds of it.
- :class:`OrderNotFoundError`: the venue does not know that client order id (now).

Idempotency: ``submit`` carries the caller's ``client_order_id``; an adapter never invents
another. The execution service's own database is the first guard against a double send (some
venues, Binance among them, only refuse a reused client id while that order is still open).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any, Literal

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]
ORDER_TYPES: tuple[str, ...] = ("market", "limit", "stop", "stop_limit")

# Venue-side order states (the execution service adds new / sending / unknown of its own).
VENUE_STATUSES: tuple[str, ...] = ("open", "partially_filled", "filled", "cancelled", "rejected", "expired")
TERMINAL_VENUE_STATUSES = frozenset({"filled", "cancelled", "rejected", "expired"})


# --- Errors -----------------------------------------------------------------------------------


class BrokerError(Exception):
    """Base of every adapter error. ``message`` is safe to show to the account's owner: it never
    contains a secret."""

    code = "broker_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class TemporaryBrokerError(BrokerError):
    """Try again later; ``retry_after`` seconds if the venue said so."""

    code = "temporary"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class NotSentError(TemporaryBrokerError):
    """The request certainly did not reach the venue (or the venue refused it before looking
    at it, as a 429 does). Sending again is safe."""

    code = "not_sent"


class AmbiguousBrokerError(TemporaryBrokerError):
    """The request may have been accepted. Never send again: ask ``fetch_order``."""

    code = "ambiguous"


class PermanentBrokerError(BrokerError):
    """The venue (or the adapter, checking the venue's rules) refused; retrying cannot help."""

    code = "rejected"


class AuthenticationBrokerError(PermanentBrokerError):
    """The key is wrong, revoked or lacks a permission. The account needs reconnecting."""

    code = "authentication"


class InsufficientFundsError(PermanentBrokerError):
    code = "insufficient_funds"


class InvalidOrderError(PermanentBrokerError):
    """The order breaks a venue rule: below the minimum size or notional, off the tick, an
    unknown symbol, an order type the venue does not offer."""

    code = "invalid_order"


class OrderNotFoundError(BrokerError):
    """The venue does not know this client order id (yet, or any more)."""

    code = "order_not_found"


# --- Values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capabilities:
    """What a venue (and its adapter) can do."""

    order_types: frozenset[str] = frozenset(ORDER_TYPES)
    shorting: bool = False
    fractional: bool = True
    native_oco: bool = False
    quote_quantity_market_buy: bool = False  # a market buy may say how much quote to spend
    reports_withdraw_permission: bool = False
    market_types: frozenset[str] = frozenset({"spot"})


@dataclass(frozen=True)
class Permissions:
    """What the connected key may do, as the venue reports it (None = the venue does not say)."""

    can_trade: bool | None = None
    can_withdraw: bool | None = None
    can_margin: bool | None = None
    can_futures: bool | None = None
    detail: str = ""


@dataclass(frozen=True)
class MarketRules:
    """A symbol's trading rules. ``None`` = no such rule. Rounding never makes an order bigger
    or its price worse than asked: quantities go down to the step; a buy's limit goes down to
    the tick and a sell's up (and the reverse for stop triggers, which protect)."""

    symbol: str
    base: str = ""
    quote: str = ""
    step_size: Decimal | None = None
    tick_size: Decimal | None = None
    min_quantity: Decimal | None = None
    max_quantity: Decimal | None = None
    min_notional: Decimal | None = None

    def round_quantity(self, quantity: Decimal) -> Decimal:
        if self.step_size is None or self.step_size <= 0:
            return quantity
        steps = (quantity / self.step_size).to_integral_value(rounding=ROUND_DOWN)
        return (steps * self.step_size).normalize() if steps else Decimal(0)

    def round_price(self, price: Decimal, side: Side, *, is_stop: bool = False) -> Decimal:
        """A limit: buys round down, sells up (never pay more / receive less than asked). A stop
        trigger: a sell stop (protecting a long) rounds up, a buy stop down, so it triggers no
        later than asked."""
        if self.tick_size is None or self.tick_size <= 0:
            return price
        # Limits and stops round the same way: a buy limit down pays less, a buy stop (above the
        # market, protecting a short) down triggers sooner; sells the other way round.
        down = side == "buy"
        rounding = ROUND_FLOOR if down else ROUND_CEILING
        return ((price / self.tick_size).to_integral_value(rounding=rounding) * self.tick_size).normalize()

    def check(self, quantity: Decimal, price: Decimal | None) -> str | None:
        """Why an order of ``quantity`` at about ``price`` breaks these rules, or None."""
        if quantity <= 0:
            return "The quantity rounds down to zero at this symbol's step size."
        if self.min_quantity is not None and quantity < self.min_quantity:
            return f"The quantity {quantity} is below the minimum {self.min_quantity}."
        if self.max_quantity is not None and quantity > self.max_quantity:
            return f"The quantity {quantity} is above the maximum {self.max_quantity}."
        if price is not None and self.min_notional is not None and quantity * price < self.min_notional:
            return f"The order's value {quantity * price:.8f} is below the minimum {self.min_notional}."
        return None


@dataclass(frozen=True)
class OrderRequest:
    """One order to place. ``quantity`` in base units (already rounded by the caller with
    :meth:`MarketRules.round_quantity`). ``quote_quantity``: for a market buy on a venue with
    ``quote_quantity_market_buy``, spend at most this much quote (fees included) instead; the
    paper venue sizes such an order at the fill exactly as the backtest engine does.
    ``sizing``: the paper venue's engine sizing inputs when the size is decided at the fill
    (see apps.accounts.paper); other adapters ignore it. ``attached``: a bracket's exits,
    placed as an OCO pair when the entry fills, natively by venues with ``native_oco`` (the
    paper venue, checking them inside the fill bar as the engine does), otherwise by the
    execution service (apps.trades.services.algos)."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None  # limit price (limit, stop_limit)
    stop_price: Decimal | None = None  # trigger (stop, stop_limit)
    reduce_only: bool = False
    quote_quantity: Decimal | None = None
    time_in_force: str = "GTC"
    sizing: dict[str, Any] | None = None
    attached: dict[str, Any] | None = None  # bracket: see apps.accounts.paper (stop_loss, take_profit, ids)
    timeframe: str | None = None  # the paper venue matches against this candle series


@dataclass(frozen=True)
class FillReport:
    """One execution at the venue. ``trade_id`` is unique per venue and symbol."""

    trade_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    at: datetime
    is_maker: bool = False


@dataclass(frozen=True)
class OrderState:
    """What the venue knows about one of our orders."""

    client_order_id: str
    status: str  # one of VENUE_STATUSES
    exchange_order_id: str = ""
    symbol: str = ""
    side: str = ""
    type: str = ""
    quantity: Decimal = Decimal(0)
    price: Decimal | None = None
    stop_price: Decimal | None = None
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fills: tuple[FillReport, ...] = ()
    reason: str = ""
    updated_at: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_VENUE_STATUSES


@dataclass(frozen=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True)
class PositionReport:
    """A holding at the venue. Spot venues report base-asset balances as positions."""

    symbol: str
    quantity: Decimal  # signed: short < 0
    average_price: Decimal | None = None


@dataclass(frozen=True)
class ConnectionReport:
    """What "test connection" shows: balances and permissions, or why it failed."""

    ok: bool
    balances: tuple[Balance, ...] = ()
    permissions: Permissions = field(default_factory=Permissions)
    message: str = ""


# --- The adapter ------------------------------------------------------------------------------


class Broker(abc.ABC):
    """A venue adapter, used synchronously from one worker at a time. Construct it with the
    decrypted credentials (inside the worker), use it, ``close()`` it."""

    name: str = ""
    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    def test_connection(self) -> ConnectionReport:
        """Balances and permissions; never raises for a bad key (ok=False, message says why)."""

    @abc.abstractmethod
    def fetch_permissions(self) -> Permissions: ...

    @abc.abstractmethod
    def fetch_balances(self) -> list[Balance]: ...

    @abc.abstractmethod
    def fetch_positions(self) -> list[PositionReport]:
        """Raise TemporaryBrokerError when the venue does not answer: an empty list means flat,
        so an error must never come back as one."""

    @abc.abstractmethod
    def market_rules(self, symbol: str) -> MarketRules:
        """Raise InvalidOrderError for a symbol the venue does not list."""

    @abc.abstractmethod
    def submit(self, request: OrderRequest) -> OrderState:
        """Place the order. Raises NotSentError / AmbiguousBrokerError / PermanentBrokerError."""

    @abc.abstractmethod
    def cancel(self, client_order_id: str, symbol: str) -> OrderState:
        """Cancel; the state after (an already filled order comes back filled)."""

    @abc.abstractmethod
    def fetch_order(self, client_order_id: str, symbol: str) -> OrderState:
        """The venue's view of one order, with its fills. OrderNotFoundError if unknown."""

    @abc.abstractmethod
    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]: ...

    @abc.abstractmethod
    def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[FillReport]: ...

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: datetime | None = None, limit: int | None = None
    ) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        raise InvalidOrderError(f"{self.name} does not serve candles.", code="not_supported")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
