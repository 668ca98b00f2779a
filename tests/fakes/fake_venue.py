"""FakeVenue: a local HTTP server that speaks enough of Binance's spot REST API for ccxt 4.x's
``binance`` class, with signature checks, Binance's order rules, a request log and fault knobs.

It is the venue of the execution tests: "exactly one order" is counted from its request log and
its order book, never from our database.

In a test (same process)::

    with FakeVenue() as venue:                       # or venue = FakeVenue(); venue.start() ... venue.stop()
        broker = fake_venue_broker(venue)            # CcxtBroker("binance", keys, api_url=venue.url)
        venue.set_price("BTCUSDT", "40000")
        venue.accept_then_hang = True                # knobs: see below
        ...
        assert venue.post_count("dep1-abc") == 1     # POST /api/v3/order with that newClientOrderId
        [order] = venue.orders_for("dep1-abc")       # the book's orders with that client id

As its own process (so fault tests can kill and restart workers while the venue lives on)::

    python -m tests.fakes.fake_venue --port 0 --ready-file /tmp/v.json [--state-file /tmp/state.json]
        [--api-key K --api-secret S] [--price BTCUSDT=40000] [--balance USDT=100000]

``--ready-file`` receives ``{"url": ..., "port": ..., "pid": ...}`` once the server listens (wait
for it to appear). ``--state-file`` receives a JSON snapshot (orders, trades, balances, request
log, knobs) after every request, written atomically, for reading after the process is gone.
SIGTERM / SIGINT stop it. Drive it over HTTP with :class:`FakeVenueClient` (the same method
names as FakeVenue for the common things), which uses the control endpoint:

- ``GET  /__control__/state``  -> snapshot (see :meth:`FakeVenue.snapshot`)
- ``GET  /__control__/requests?method=POST&path=/api/v3/order&client_order_id=X`` -> log entries
- ``GET  /__control__/post_count?client_order_id=X`` -> ``{"count": n}``
- ``POST /__control__`` with JSON ``{"set": {"accept_then_hang": true, ...},
  "call": [["rate_limit", 5], ["set_price", "BTCUSDT", "41000"], ...]}`` -> snapshot.
  Calls allowed: see ``CONTROL_CALLS``.

Control requests are not part of the request log.

Binance behaviour reproduced
- Public: ``/api/v3/ping``, ``/api/v3/time``, ``/api/v3/exchangeInfo`` (PRICE_FILTER, LOT_SIZE,
  NOTIONAL filters for BTCUSDT and ETHUSDT, more with :meth:`add_symbol`), ``/api/v3/klines``,
  ``/api/v3/ticker/price``, ``/api/v3/ticker/24hr``, ``/api/v3/ticker/bookTicker``,
  ``/sapi/v1/margin/allPairs`` and ``/sapi/v1/margin/isolated/allPairs`` (empty lists).
- Signed (``X-MBX-APIKEY`` + ``timestamp`` + HMAC-SHA256 ``signature`` over query string + body):
  ``GET /api/v3/account``, ``GET /sapi/v1/account/apiRestrictions``, ``POST/GET/DELETE
  /api/v3/order``, ``GET /api/v3/openOrders``, ``GET /api/v3/allOrders``, ``GET /api/v3/myTrades``.
  A wrong key or a revoked one: HTTP 401 ``-2015 Invalid API-key, IP, or permissions for action.``;
  a bad signature: HTTP 400 ``-1022 Signature for this request is not valid.`` (Binance answers
  400 for it; ccxt maps the code to AuthenticationError); a timestamp outside ``recvWindow``
  (default 5000 ms): 400 ``-1021``.
- Orders: MARKET (``quantity`` or ``quoteOrderQty``), LIMIT, LIMIT_MAKER, STOP_LOSS,
  STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT. Filters enforced with Binance's messages
  (``-1013 Filter failure: PRICE_FILTER`` / ``LOT_SIZE`` / ``NOTIONAL``); unknown symbol ``-1121``;
  not enough free balance ``-2010 Account has insufficient balance for requested action.``; a
  ``newClientOrderId`` equal to that of an order still open ``-2010 Duplicate order sent.``
  (Binance only refuses a reused client id while that order is open: a filled or cancelled
  order's id may be used again and makes a second order). Market orders fill at once at the
  symbol's price (:meth:`set_price`, taker); limits rest (their balance locked) and fill at their
  price when :meth:`set_price` crosses them (maker), or at once at the current price when they
  cross on arrival. Stops trigger on :meth:`set_price` (STOP_LOSS: a sell at price <= stop, a
  buy at >= stop; TAKE_PROFIT the other way). Fee: ``fee_rate`` (0.1 %) of the asset received.
  Unknown order: ``-2013 Order does not exist.`` (GET) / ``-2011 Unknown order sent.`` (DELETE).

Knobs (attributes; the POST ones take True = every POST, or an int n = the next n POSTs):
- ``accept_then_hang``: accept and log the POST (the order exists, status logged 200), then wait
  ``hang_seconds`` (default 30; :meth:`release_hung` or stop() ends the wait) before answering,
  past the client's timeout.
- ``accept_then_reset``: accept, then close the socket without answering.
- ``fail_5xx_before_accept``: 503 without creating anything.
- ``fail_5xx_after_accept``: create the order, then answer 503.
- ``rate_limit(seconds)``: every API request answers 429 with ``Retry-After`` for that long,
  creating nothing.
- ``not_found_for(seconds)``: orders accepted from now on are invisible to GET/DELETE order,
  openOrders, allOrders and myTrades (``-2013``) for that many seconds after their acceptance;
  ``not_found_for(0)`` turns it off. :meth:`hide_order` hides one existing order.
- ``fill_immediately``: every order (limits and stops too) fills in full on arrival, at its
  limit (or stop) price, else the current price.
- ``positions_error``: ``GET /api/v3/account`` answers 500.
- ``withdraw_enabled``: apiRestrictions (and account) report withdrawals enabled.
- ``revoked_key``: every signed endpoint answers 401 ``-2015``.
- ``balances``: ``{asset: Decimal}`` free balances (:meth:`set_balance`).

Helpers: :meth:`post_count`, :meth:`orders_for`, :meth:`requests_for`, :meth:`fill`
(a partial or full fill by hand), :meth:`cancel_order` (cancel at the venue, as if by someone
else), :meth:`reset_log`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib import request as urlrequest
from urllib.parse import parse_qsl, urlencode, urlsplit

DEFAULT_API_KEY = "fake-venue-key"
DEFAULT_API_SECRET = "fake-venue-secret"
ORDER_PATH = "/api/v3/order"
CONTROL_PREFIX = "/__control__"
# How often the server loop checks for stop(): socketserver's default of 0.5 s made every test
# that stops a venue wait up to half a second in its teardown.
SHUTDOWN_POLL_SECONDS = 0.02
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
INTERVALS = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
    "3d": 259200,
    "1w": 604800,
}
POST_KNOBS = ("accept_then_hang", "accept_then_reset", "fail_5xx_before_accept", "fail_5xx_after_accept")
CONTROL_CALLS = (
    "rate_limit",
    "not_found_for",
    "hide_order",
    "set_price",
    "set_balance",
    "fill",
    "cancel_order",
    "release_hung",
    "reset_log",
    "add_symbol",
)
SETTABLE = (*POST_KNOBS, "hang_seconds", "fill_immediately", "positions_error", "withdraw_enabled", "revoked_key")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def now_ms() -> int:
    return int(time.time() * 1000)


def fmt(value: Decimal | None, places: int = 8) -> str:
    if value is None:
        return f"{Decimal(0):.{places}f}"
    return f"{value:.{places}f}"


class VenueError(Exception):
    """An error answer: HTTP status, Binance code and message."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


@dataclass
class LoggedRequest:
    """One API request as the venue saw it. ``at`` is time.monotonic() at arrival (comparable
    across processes on this machine), ``wall`` time.time(). ``status`` is the HTTP status the
    venue decided (200 for an accepted order even when the answer never left: see ``outcome``:
    answered / hung / reset / pending). ``params`` exclude ``signature``."""

    method: str
    path: str
    params: dict[str, str]
    at: float
    wall: float
    thread: str
    status: int | None = None
    outcome: str = "pending"
    client_order_id: str = ""


@dataclass
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    price: Decimal
    tick_size: Decimal = Decimal("0.01")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")

    def info(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": list(ORDER_TYPES),
            "icebergAllowed": True,
            "ocoAllowed": True,
            "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": str(self.min_price),
                    "maxPrice": str(self.max_price),
                    "tickSize": str(self.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": str(self.min_qty),
                    "maxQty": str(self.max_qty),
                    "stepSize": str(self.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": str(self.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": str(self.max_notional),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }


@dataclass
class VenueOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    type: str
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    quote_order_qty: Decimal | None
    time_in_force: str
    created_ms: int
    status: str = "NEW"
    executed_qty: Decimal = Decimal(0)
    cummulative_quote_qty: Decimal = Decimal(0)
    updated_ms: int = 0
    hidden_until: float = 0.0  # monotonic
    triggered: bool = False
    lock_asset: str = ""
    lock_amount: Decimal = Decimal(0)  # still locked for this order

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.executed_qty

    def as_binance(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.quantity),
            "executedQty": fmt(self.executed_qty),
            "cummulativeQuoteQty": fmt(self.cummulative_quote_qty),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(self.stop_price),
            "icebergQty": fmt(None),
            "time": self.created_ms,
            "updateTime": self.updated_ms or self.created_ms,
            "isWorking": self.type in {"LIMIT", "LIMIT_MAKER", "MARKET"} or self.triggered,
            "workingTime": self.created_ms,
            "origQuoteOrderQty": fmt(self.quote_order_qty),
            "selfTradePreventionMode": "NONE",
        }


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """(raw without its signature parameter, the signature)."""
    kept: list[str] = []
    signature = None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), signature


class FakeVenue:
    """The venue. Thread-safe; every HTTP request is handled on its own thread."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        port: int = 0,
        host: str = "127.0.0.1",
        balances: dict[str, Decimal | str | int] | None = None,
        prices: dict[str, Decimal | str | int] | None = None,
        state_file: str | Path | None = None,
    ):
        self.api_key = api_key
        self.api_secret = api_secret
        self.host = host
        self.port = port or free_port()
        self.state_file = Path(state_file) if state_file else None
        self.lock = threading.RLock()
        self.requests: list[LoggedRequest] = []
        self.orders: dict[int, VenueOrder] = {}
        self.trades: list[dict[str, Any]] = []
        self.symbols: dict[str, SymbolSpec] = {}
        self.balances: dict[str, Decimal] = {}
        self.locked: dict[str, Decimal] = {}
        self.fee_rate = Decimal("0.001")
        # knobs
        self.accept_then_hang: bool | int = False
        self.accept_then_reset: bool | int = False
        self.fail_5xx_before_accept: bool | int = False
        self.fail_5xx_after_accept: bool | int = False
        self.hang_seconds: float = 30.0
        self.fill_immediately = False
        self.positions_error = False
        self.withdraw_enabled = False
        self.revoked_key = False
        self.recv_window_default = 5000
        self._rate_limited_until = 0.0
        self._not_found_seconds = 0.0
        self._next_order_id = 1000
        self._next_trade_id = 5000
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_symbol("BTCUSDT", "BTC", "USDT", price="40000")
        self.add_symbol(
            "ETHUSDT",
            "ETH",
            "USDT",
            price="2500",
            tick_size="0.01",
            step_size="0.0001",
            min_qty="0.0001",
            min_notional="5",
        )
        for asset, amount in (balances if balances is not None else {"USDT": "100000", "BTC": "0", "ETH": "0"}).items():
            self.balances[asset] = Decimal(str(amount))
        for symbol, price in (prices or {}).items():
            self.symbols[symbol].price = Decimal(str(price))

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeVenue:
        if self._server is not None:
            return self
        self._release.clear()
        self._server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), name="fake-venue", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeVenue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- knobs and helpers ------------------------------------------------------------------

    def rate_limit(self, seconds: float) -> None:
        """Answer 429 + Retry-After to every API request for ``seconds`` (0 ends it)."""
        with self.lock:
            self._rate_limited_until = time.monotonic() + float(seconds) if seconds else 0.0

    def not_found_for(self, seconds: float) -> None:
        """Orders accepted from now on stay invisible for ``seconds`` after acceptance (0: off)."""
        with self.lock:
            self._not_found_seconds = float(seconds)

    def hide_order(self, client_order_id: str, seconds: float) -> None:
        with self.lock:
            for order in self._by_client_id(client_order_id):
                order.hidden_until = time.monotonic() + float(seconds)

    def release_hung(self) -> None:
        """End every accept_then_hang wait now (they answer)."""
        self._release.set()
        self._release = threading.Event()

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    def set_balance(self, asset: str, amount: Decimal | str | int) -> None:
        with self.lock:
            self.balances[asset] = Decimal(str(amount))

    def add_symbol(
        self,
        symbol: str,
        base: str,
        quote: str,
        *,
        price: Decimal | str | int,
        tick_size: Decimal | str = "0.01",
        step_size: Decimal | str = "0.00001",
        min_qty: Decimal | str | None = None,
        max_qty: Decimal | str = "9000",
        min_notional: Decimal | str = "5",
        min_price: Decimal | str | None = None,
        max_price: Decimal | str = "1000000",
    ) -> SymbolSpec:
        """Add (or replace) a symbol. A broker sees it after it (re)loads its markets."""
        tick = Decimal(str(tick_size))
        step = Decimal(str(step_size))
        spec = SymbolSpec(
            symbol=symbol,
            base=base,
            quote=quote,
            price=Decimal(str(price)),
            tick_size=tick,
            step_size=step,
            min_qty=Decimal(str(min_qty)) if min_qty is not None else step,
            max_qty=Decimal(str(max_qty)),
            min_price=Decimal(str(min_price)) if min_price is not None else tick,
            max_price=Decimal(str(max_price)),
            min_notional=Decimal(str(min_notional)),
        )
        with self.lock:
            self.symbols[symbol] = spec
            self.balances.setdefault(base, Decimal(0))
            self.balances.setdefault(quote, Decimal(0))
        return spec

    def set_price(self, symbol: str, price: Decimal | str | int | float) -> list[VenueOrder]:
        """Move the market; triggers stops and fills crossed limits. Returns the orders that
        traded."""
        traded: list[VenueOrder] = []
        with self.lock:
            spec = self.symbols[symbol]
            spec.price = Decimal(str(price))
            for order in sorted(self.orders.values(), key=lambda o: o.order_id):
                if order.symbol != symbol or not order.is_open:
                    continue
                try:
                    if self._match_resting(order, spec.price):
                        traded.append(order)
                except VenueError:  # could not pay at this price: the venue expires it
                    self._unlock(order, order.lock_amount)
                    order.status = "EXPIRED"
                    order.updated_ms = now_ms()
            self._save()
        return traded

    def price(self, symbol: str) -> Decimal:
        return self.symbols[symbol].price

    def fill(
        self, client_order_id: str, quantity: Decimal | str | None = None, price: Decimal | str | None = None
    ) -> VenueOrder:
        """Fill the open order with this client id by hand (all that remains by default) at
        ``price`` (its limit price, else the current price). As a maker fill."""
        with self.lock:
            order = next((o for o in reversed(self._by_client_id(client_order_id)) if o.is_open), None)
            if order is None:
                raise KeyError(f"no open order {client_order_id!r}")
            qty = Decimal(str(quantity)) if quantity is not None else order.remaining
            at = Decimal(str(price)) if price is not None else (order.price or self.symbols[order.symbol].price)
            self._execute(order, min(qty, order.remaining), at, maker=True)
            self._save()
            return order

    def cancel_order(self, client_order_id: str) -> VenueOrder:
        """Cancel at the venue (as the user on the venue's website would)."""
        with self.lock:
            order = next((o for o in reversed(self._by_client_id(client_order_id)) if o.is_open), None)
            if order is None:
                raise KeyError(f"no open order {client_order_id!r}")
            self._cancel(order)
            self._save()
            return order

    def post_count(self, client_order_id: str) -> int:
        """How many ``POST /api/v3/order`` requests carried this ``newClientOrderId`` (whatever
        their answer)."""
        with self.lock:
            return sum(
                1
                for r in self.requests
                if r.method == "POST" and r.path == ORDER_PATH and r.params.get("newClientOrderId") == client_order_id
            )

    def orders_for(self, client_order_id: str) -> list[VenueOrder]:
        """The book's orders created with this client id (oldest first)."""
        with self.lock:
            return list(self._by_client_id(client_order_id))

    def requests_for(
        self, *, method: str | None = None, path: str | None = None, client_order_id: str | None = None
    ) -> list[LoggedRequest]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (path is None or r.path == path)
                and (client_order_id is None or r.client_order_id == client_order_id)
            ]

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-able data: orders (Binance's fields + hidden_until), trades,
        balances {asset: {free, locked}}, prices, requests, knobs."""
        with self.lock:
            return {
                "url": self.url,
                "orders": [{**o.as_binance(), "hiddenUntil": o.hidden_until} for o in self.orders.values()],
                "trades": [dict(t) for t in self.trades],
                "balances": {
                    a: {"free": str(v), "locked": str(self.locked.get(a, Decimal(0)))} for a, v in self.balances.items()
                },
                "prices": {s: str(spec.price) for s, spec in self.symbols.items()},
                "requests": [asdict(r) for r in self.requests],
                "knobs": {name: getattr(self, name) for name in SETTABLE}
                | {
                    "rate_limited_for": max(0.0, self._rate_limited_until - time.monotonic()),
                    "not_found_seconds": self._not_found_seconds,
                },
            }

    def _save(self) -> None:
        if self.state_file is None:
            return
        data = json.dumps(self.snapshot(), default=str)
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(data)
        os.replace(tmp, self.state_file)

    # --- book -------------------------------------------------------------------------------

    def _by_client_id(self, client_order_id: str) -> list[VenueOrder]:
        return [o for o in self.orders.values() if o.client_order_id == client_order_id]

    def _visible(self, order: VenueOrder) -> bool:
        return order.hidden_until <= time.monotonic()

    def _take_knob(self, name: str) -> bool:
        """Whether a POST knob fires for this request (decrementing a count)."""
        value = getattr(self, name)
        if value is True:
            return True
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            setattr(self, name, value - 1)
            return True
        return False

    def _lock_funds(self, asset: str, amount: Decimal) -> None:
        if self.balances.get(asset, Decimal(0)) < amount:
            raise VenueError(400, -2010, "Account has insufficient balance for requested action.")
        self.balances[asset] -= amount
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + amount

    def _unlock(self, order: VenueOrder, amount: Decimal) -> None:
        amount = min(amount, order.lock_amount)
        if amount <= 0:
            return
        order.lock_amount -= amount
        self.locked[order.lock_asset] -= amount
        self.balances[order.lock_asset] = self.balances.get(order.lock_asset, Decimal(0)) + amount

    def _execute(self, order: VenueOrder, qty: Decimal, price: Decimal, *, maker: bool) -> dict[str, Any]:
        """Trade ``qty`` of ``order`` at ``price``: balances, fee, trade record, status."""
        spec = self.symbols[order.symbol]
        quote_qty = qty * price
        if order.lock_amount > 0:
            share = order.lock_amount if qty >= order.remaining else order.lock_amount * qty / order.remaining
            self._unlock(order, share)
        if order.side == "BUY":
            if self.balances.get(spec.quote, Decimal(0)) < quote_qty:
                raise VenueError(400, -2010, "Account has insufficient balance for requested action.")
            commission, commission_asset = qty * self.fee_rate, spec.base
            self.balances[spec.quote] -= quote_qty
            self.balances[spec.base] = self.balances.get(spec.base, Decimal(0)) + qty - commission
        else:
            if self.balances.get(spec.base, Decimal(0)) < qty:
                raise VenueError(400, -2010, "Account has insufficient balance for requested action.")
            commission, commission_asset = quote_qty * self.fee_rate, spec.quote
            self.balances[spec.base] -= qty
            self.balances[spec.quote] = self.balances.get(spec.quote, Decimal(0)) + quote_qty - commission
        order.executed_qty += qty
        order.cummulative_quote_qty += quote_qty
        order.status = "FILLED" if order.executed_qty >= order.quantity else "PARTIALLY_FILLED"
        order.updated_ms = now_ms()
        if order.status == "FILLED" and order.lock_amount > 0:
            self._unlock(order, order.lock_amount)
        self._next_trade_id += 1
        trade = {
            "symbol": order.symbol,
            "id": self._next_trade_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "price": fmt(price),
            "qty": fmt(qty),
            "quoteQty": fmt(quote_qty),
            "commission": fmt(commission),
            "commissionAsset": commission_asset,
            "time": order.updated_ms,
            "isBuyer": order.side == "BUY",
            "isMaker": maker,
            "isBestMatch": True,
        }
        self.trades.append(trade)
        return trade

    def _cancel(self, order: VenueOrder) -> None:
        self._unlock(order, order.lock_amount)
        order.status = "CANCELED"
        order.updated_ms = now_ms()

    def _match_resting(self, order: VenueOrder, price: Decimal) -> bool:
        """Trigger / fill a resting order at the market ``price``. True if it traded."""
        if order.type in {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"} and not order.triggered:
            stop = order.stop_price or Decimal(0)
            rising = (order.side == "BUY") == order.type.startswith("STOP_LOSS")
            if (rising and price >= stop) or (not rising and price <= stop):
                order.triggered = True
                order.updated_ms = now_ms()
            else:
                return False
        if order.type in {"STOP_LOSS", "TAKE_PROFIT", "MARKET"}:
            self._execute(order, order.remaining, price, maker=False)
            return True
        limit = order.price or Decimal(0)
        if (order.side == "BUY" and price <= limit) or (order.side == "SELL" and price >= limit):
            self._execute(order, order.remaining, limit, maker=True)
            return True
        return False

    # --- request handling -------------------------------------------------------------------

    def _check_signed(self, headers: Any, query: str, body: str, params: dict[str, str]) -> None:
        if self.revoked_key or headers.get("X-MBX-APIKEY") != self.api_key:
            raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        q, sig_q = _strip_signature(query)
        b, sig_b = _strip_signature(body)
        signature = sig_q or sig_b
        if not signature:
            raise VenueError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
        payload = q + b
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise VenueError(400, -1022, "Signature for this request is not valid.")
        if "timestamp" not in params:
            raise VenueError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
        window = int(params.get("recvWindow", self.recv_window_default))
        stamp = int(params["timestamp"])
        current = now_ms()
        if stamp > current + 1000 or current - stamp > window:
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _check_rate_limit(self, path: str) -> None:
        if path.startswith(("/api/", "/sapi/")) and time.monotonic() < self._rate_limited_until:
            retry = max(1, math.ceil(self._rate_limited_until - time.monotonic()))
            raise VenueError(
                429,
                -1003,
                "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.",
                {"Retry-After": str(retry)},
            )

    def route(
        self, method: str, path: str, params: dict[str, str], headers: Any, query: str, body: str
    ) -> tuple[int, dict[str, str], Any]:
        self._check_rate_limit(path)
        public: dict[str, Callable[[dict[str, str]], Any]] = {
            "/api/v3/ping": lambda p: {},
            "/api/v3/time": lambda p: {"serverTime": now_ms()},
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/klines": self._klines,
            "/api/v3/ticker/price": self._ticker_price,
            "/api/v3/ticker/24hr": self._ticker_24hr,
            "/api/v3/ticker/bookTicker": self._book_ticker,
            "/sapi/v1/margin/allPairs": lambda p: [],
            "/sapi/v1/margin/isolated/allPairs": lambda p: [],
            "/sapi/v1/system/status": lambda p: {"status": 0, "msg": "normal"},
        }
        if method == "GET" and path in public:
            return 200, {}, public[path](params)
        signed: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
            ("GET", "/api/v3/account"): self._account,
            ("GET", "/sapi/v1/account/apiRestrictions"): self._api_restrictions,
            ("GET", ORDER_PATH): self._get_order,
            ("DELETE", ORDER_PATH): self._delete_order,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/allOrders"): self._all_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
        }
        if (method, path) in signed:
            self._check_signed(headers, query, body, params)
            with self.lock:
                return 200, {}, signed[(method, path)](params)
        raise VenueError(404, -1, f"No route {method} {path}.")

    # public
    def _spec(self, params: dict[str, str]) -> SymbolSpec:
        symbol = params.get("symbol", "")
        if symbol not in self.symbols:
            raise VenueError(400, -1121, "Invalid symbol.")
        return self.symbols[symbol]

    def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            specs = list(self.symbols.values())
        return {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
            "symbols": [s.info() for s in specs],
        }

    def _klines(self, params: dict[str, str]) -> list[list[Any]]:
        spec = self._spec(params)
        interval = params.get("interval", "")
        if interval not in INTERVALS:
            raise VenueError(400, -1120, "Invalid interval.")
        step = INTERVALS[interval] * 1000
        limit = min(int(params.get("limit", 500)), 1000)
        last_open = now_ms() // step * step
        end = min(int(params["endTime"]), last_open) if "endTime" in params else last_open
        start = -(-int(params["startTime"]) // step) * step if "startTime" in params else end - (limit - 1) * step
        rows: list[list[Any]] = []
        t = start
        base = spec.price
        while t <= end and len(rows) < limit:
            k = (last_open - t) // step
            o = base * (1 + Decimal((k * 37) % 200 - 100) / 10000)
            c = base * (1 + Decimal((k * 53) % 200 - 100) / 10000) if t != last_open else base
            h = max(o, c) * Decimal("1.002")
            low = min(o, c) * Decimal("0.998")
            v = Decimal(1 + k % 11) / 8
            rows.append(
                [
                    t,
                    fmt(o),
                    fmt(h),
                    fmt(low),
                    fmt(c),
                    fmt(v),
                    t + step - 1,
                    fmt(v * c),
                    10,
                    fmt(v / 2),
                    fmt(v * c / 2),
                    "0",
                ]
            )
            t += step
        return rows

    def _ticker_price(self, params: dict[str, str]) -> Any:
        if "symbol" in params:
            spec = self._spec(params)
            return {"symbol": spec.symbol, "price": fmt(spec.price)}
        return [{"symbol": s.symbol, "price": fmt(s.price)} for s in self.symbols.values()]

    def _ticker_24hr(self, params: dict[str, str]) -> Any:
        def one(spec: SymbolSpec) -> dict[str, Any]:
            p = fmt(spec.price)
            t = now_ms()
            return {
                "symbol": spec.symbol,
                "priceChange": "0.00000000",
                "priceChangePercent": "0.000",
                "weightedAvgPrice": p,
                "prevClosePrice": p,
                "lastPrice": p,
                "lastQty": "1.00000000",
                "bidPrice": fmt(spec.price - spec.tick_size),
                "bidQty": "1.00000000",
                "askPrice": fmt(spec.price + spec.tick_size),
                "askQty": "1.00000000",
                "openPrice": p,
                "highPrice": p,
                "lowPrice": p,
                "volume": "1.00000000",
                "quoteVolume": p,
                "openTime": t - 86_400_000,
                "closeTime": t,
                "firstId": 1,
                "lastId": 1,
                "count": 1,
            }

        if "symbol" in params:
            return one(self._spec(params))
        return [one(s) for s in self.symbols.values()]

    def _book_ticker(self, params: dict[str, str]) -> Any:
        def one(spec: SymbolSpec) -> dict[str, Any]:
            return {
                "symbol": spec.symbol,
                "bidPrice": fmt(spec.price - spec.tick_size),
                "bidQty": "1.00000000",
                "askPrice": fmt(spec.price + spec.tick_size),
                "askQty": "1.00000000",
            }

        if "symbol" in params:
            return one(self._spec(params))
        return [one(s) for s in self.symbols.values()]

    # signed
    def _account(self, params: dict[str, str]) -> dict[str, Any]:
        if self.positions_error:
            raise VenueError(500, -1000, "An unknown error occured while processing the request.")
        assets = sorted(set(self.balances) | set(self.locked))
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": self.withdraw_enabled,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": now_ms(),
            "accountType": "SPOT",
            "balances": [
                {
                    "asset": a,
                    "free": fmt(self.balances.get(a, Decimal(0))),
                    "locked": fmt(self.locked.get(a, Decimal(0))),
                }
                for a in assets
            ],
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _api_restrictions(self, params: dict[str, str]) -> dict[str, Any]:
        return {
            "ipRestrict": False,
            "createTime": 1_700_000_000_000,
            "enableReading": True,
            "enableWithdrawals": self.withdraw_enabled,
            "enableInternalTransfer": False,
            "enableMargin": False,
            "enableFutures": False,
            "permitsUniversalTransfer": False,
            "enableVanillaOptions": False,
            "enableFixApiTrade": False,
            "enableFixReadOnly": False,
            "enableSpotAndMarginTrading": True,
            "enablePortfolioMarginTrading": False,
        }

    def _find(self, params: dict[str, str]) -> VenueOrder:
        spec = self._spec(params)
        candidates: list[VenueOrder]
        if params.get("orderId"):
            candidates = [o for o in self.orders.values() if str(o.order_id) == params["orderId"]]
        elif params.get("origClientOrderId"):
            candidates = self._by_client_id(params["origClientOrderId"])
        else:
            raise VenueError(
                400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        candidates = [o for o in candidates if o.symbol == spec.symbol and self._visible(o)]
        if not candidates:
            raise VenueError(400, -2013, "Order does not exist.")
        return candidates[-1]

    def _get_order(self, params: dict[str, str]) -> dict[str, Any]:
        return self._find(params).as_binance()

    def _delete_order(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            order = self._find(params)
        except VenueError as exc:
            if exc.code == -2013:
                raise VenueError(400, -2011, "Unknown order sent.") from None
            raise
        if not order.is_open:
            raise VenueError(400, -2011, "Unknown order sent.")
        self._cancel(order)
        self._save()
        answer = order.as_binance()
        answer["origClientOrderId"] = order.client_order_id
        answer["clientOrderId"] = params.get("newClientOrderId") or f"cancel{order.order_id}"
        answer["transactTime"] = order.updated_ms
        return answer

    def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._spec(params).symbol if "symbol" in params else None
        return [
            o.as_binance()
            for o in self.orders.values()
            if o.is_open and self._visible(o) and (symbol is None or o.symbol == symbol)
        ]

    def _all_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._spec(params).symbol
        start = int(params.get("startTime", 0))
        rows = [
            o.as_binance()
            for o in self.orders.values()
            if o.symbol == symbol and self._visible(o) and o.created_ms >= start
        ]
        return rows[-int(params.get("limit", 500)) :]

    def _my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._spec(params).symbol
        start = int(params.get("startTime", 0))
        end = int(params.get("endTime", 2**62))
        hidden = {o.order_id for o in self.orders.values() if not self._visible(o)}
        rows = [
            t
            for t in self.trades
            if t["symbol"] == symbol
            and start <= t["time"] <= end
            and t["orderId"] not in hidden
            and ("orderId" not in params or str(t["orderId"]) == params["orderId"])
        ]
        return rows[-int(params.get("limit", 500)) :]

    @staticmethod
    def _on_price_filter(spec: SymbolSpec, price: Decimal) -> bool:
        return spec.min_price <= price <= spec.max_price and (price - spec.min_price) % spec.tick_size == 0

    def _check_filters(self, spec: SymbolSpec, qty: Decimal, price: Decimal | None, *, notional_price: Decimal) -> None:
        if price is not None and not self._on_price_filter(spec, price):
            raise VenueError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty < spec.min_qty or qty > spec.max_qty or (qty - spec.min_qty) % spec.step_size != 0:
            raise VenueError(400, -1013, "Filter failure: LOT_SIZE")
        if qty * notional_price < spec.min_notional:
            raise VenueError(400, -1013, "Filter failure: NOTIONAL")

    def create_order(self, params: dict[str, str]) -> tuple[VenueOrder, list[dict[str, Any]]]:
        """Validate and place an order (under the lock): the order and the fills it made."""
        spec = self._spec(params)

        def number(name: str, *, required: bool = False) -> Decimal | None:
            raw = params.get(name)
            if raw in (None, ""):
                if required:
                    raise VenueError(
                        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
                    )
                return None
            try:
                return Decimal(str(raw))
            except ArithmeticError:
                raise VenueError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None

        side = params.get("side", "")
        if side not in {"BUY", "SELL"}:
            raise VenueError(400, -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed.")
        kind = params.get("type", "")
        if kind not in ORDER_TYPES:
            raise VenueError(400, -1116, "Invalid orderType.")
        client_id = params.get("newClientOrderId") or f"fake{self._next_order_id + 1}"
        if any(o.is_open for o in self._by_client_id(client_id)):
            raise VenueError(400, -2010, "Duplicate order sent.")
        market = kind in {"MARKET", "STOP_LOSS", "TAKE_PROFIT"}
        price = None if market else number("price", required=True)
        stop = number("stopPrice", required=kind not in {"MARKET", "LIMIT", "LIMIT_MAKER"})
        quote_qty = number("quoteOrderQty") if kind == "MARKET" else None
        if quote_qty is not None:
            if params.get("quantity"):
                raise VenueError(400, -1106, "Parameter 'quantity' sent when not required.")
            qty = (quote_qty / spec.price / spec.step_size).to_integral_value(rounding="ROUND_DOWN") * spec.step_size
        else:
            qty = number("quantity", required=True) or Decimal(0)
        if stop is not None and not self._on_price_filter(spec, stop):
            raise VenueError(400, -1013, "Filter failure: PRICE_FILTER")
        self._check_filters(spec, qty, price, notional_price=price or stop or spec.price)
        current = spec.price
        crosses = price is not None and ((side == "BUY" and price >= current) or (side == "SELL" and price <= current))
        if kind == "LIMIT_MAKER" and crosses:
            raise VenueError(400, -2010, "Order would immediately match and take.")
        if kind.startswith(("STOP_LOSS", "TAKE_PROFIT")) and stop is not None and not self.fill_immediately:
            rising = (side == "BUY") == kind.startswith("STOP_LOSS")
            if (rising and current >= stop) or (not rising and current <= stop):
                raise VenueError(400, -2010, "Stop price would trigger immediately.")
        # balance: what this order needs
        if side == "BUY":
            need_asset = spec.quote
            need = qty * (price if price is not None else (stop or current))
        else:
            need_asset, need = spec.base, qty
        if self.balances.get(need_asset, Decimal(0)) < need:
            raise VenueError(400, -2010, "Account has insufficient balance for requested action.")
        self._next_order_id += 1
        created = now_ms()
        order = VenueOrder(
            order_id=self._next_order_id,
            client_order_id=client_id,
            symbol=spec.symbol,
            side=side,
            type=kind,
            quantity=qty,
            price=price,
            stop_price=stop,
            quote_order_qty=quote_qty,
            time_in_force=params.get("timeInForce", "GTC") if not market else "GTC",
            created_ms=created,
            updated_ms=created,
            hidden_until=time.monotonic() + self._not_found_seconds if self._not_found_seconds else 0.0,
        )
        self.orders[order.order_id] = order
        fills: list[dict[str, Any]] = []
        if self.fill_immediately:
            order.triggered = True
            at = price if price is not None else (stop or current)
            fills.append(self._execute(order, qty, at, maker=price is not None))
        elif kind == "MARKET" or (
            kind in {"LIMIT", "LIMIT_MAKER"}
            and price is not None
            and ((side == "BUY" and price >= current) or (side == "SELL" and price <= current))
        ):
            fills.append(self._execute(order, qty, current, maker=False))
        else:
            order.lock_asset = need_asset
            self._lock_funds(need_asset, need)
            order.lock_amount = need
            if kind in {"STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "STOP_LOSS", "TAKE_PROFIT"}:
                order.triggered = False
        return order, fills

    def order_answer(self, order: VenueOrder, fills: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        answer = order.as_binance()
        answer["transactTime"] = order.created_ms
        for key in ("time", "updateTime", "isWorking", "icebergQty", "stopPrice", "origQuoteOrderQty"):
            answer.pop(key, None)
        if order.stop_price is not None:
            answer["stopPrice"] = fmt(order.stop_price)
        kind = params.get("newOrderRespType", "FULL" if order.type in {"MARKET", "LIMIT"} else "ACK")
        if kind == "ACK":
            return {
                "symbol": order.symbol,
                "orderId": order.order_id,
                "orderListId": -1,
                "clientOrderId": order.client_order_id,
                "transactTime": order.created_ms,
            }
        if kind == "FULL":
            answer["fills"] = [
                {
                    "price": f["price"],
                    "qty": f["qty"],
                    "commission": f["commission"],
                    "commissionAsset": f["commissionAsset"],
                    "tradeId": f["id"],
                }
                for f in fills
            ]
        return answer

    # --- control ----------------------------------------------------------------------------

    def control(self, method: str, path: str, params: dict[str, str], body: str) -> Any:
        sub = path[len(CONTROL_PREFIX) :].strip("/")
        if method == "GET" and sub in {"", "state"}:
            return self.snapshot()
        if method == "GET" and sub == "requests":
            return [
                asdict(r)
                for r in self.requests_for(
                    method=params.get("method"), path=params.get("path"), client_order_id=params.get("client_order_id")
                )
            ]
        if method == "GET" and sub == "post_count":
            return {"count": self.post_count(params.get("client_order_id", ""))}
        if method == "POST" and sub == "":
            command = json.loads(body or "{}")
            for name, value in (command.get("set") or {}).items():
                if name == "balances":
                    for asset, amount in value.items():
                        self.set_balance(asset, amount)
                    continue
                if name not in SETTABLE:
                    raise VenueError(400, -1, f"unknown knob {name}")
                setattr(self, name, value)
            for call in command.get("call") or []:
                name, *args = call
                if name not in CONTROL_CALLS:
                    raise VenueError(400, -1, f"unknown call {name}")
                getattr(self, name)(*args)
            self._save()
            return self.snapshot()
        raise VenueError(404, -1, f"No control route {method} {sub}.")


def _handler(venue: FakeVenue) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(body, default=str).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (a hang past its timeout)
                pass

        def _reset(self) -> None:
            """Close the socket with an RST, no answer."""
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
            self.close_connection = True

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = parts.query
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = dict(parse_qsl(query, keep_blank_values=True))
            params.update(dict(parse_qsl(body, keep_blank_values=True)))
            params.pop("signature", None)
            if parts.path.startswith(CONTROL_PREFIX):
                try:
                    with venue.lock:
                        answer = venue.control(method, parts.path, params, body)
                    self._send(200, answer)
                except VenueError as exc:
                    self._send(exc.status, {"code": exc.code, "msg": exc.msg})
                return
            entry = LoggedRequest(
                method=method,
                path=parts.path,
                params=params,
                at=time.monotonic(),
                wall=time.time(),
                thread=threading.current_thread().name,
                client_order_id=params.get("newClientOrderId") or params.get("origClientOrderId") or "",
            )
            with venue.lock:
                venue.requests.append(entry)
            try:
                if (method, parts.path) == ("POST", ORDER_PATH):
                    self._post_order(entry, params, query, body)
                    return
                status, headers, answer = venue.route(method, parts.path, params, self.headers, query, body)
                entry.status, entry.outcome = status, "answered"
                self._send(status, answer, headers)
            except VenueError as exc:
                entry.status, entry.outcome = exc.status, "answered"
                self._send(exc.status, {"code": exc.code, "msg": exc.msg}, exc.headers)
            finally:
                with venue.lock:
                    venue._save()

        def _post_order(self, entry: LoggedRequest, params: dict[str, str], query: str, body: str) -> None:
            venue._check_rate_limit(ORDER_PATH)
            venue._check_signed(self.headers, query, body, params)
            with venue.lock:
                if venue._take_knob("fail_5xx_before_accept"):
                    entry.status, entry.outcome = 503, "answered"
                    self._send_text(503, "Service Unavailable")
                    return
                order, fills = venue.create_order(params)
                answer = venue.order_answer(order, fills, params)
                entry.status = 200
                hang = venue._take_knob("accept_then_hang")
                reset = venue._take_knob("accept_then_reset")
                after_5xx = venue._take_knob("fail_5xx_after_accept")
                release = venue._release
            if reset:
                entry.outcome = "reset"
                self._reset()
                return
            if hang:
                entry.outcome = "hung"
                release.wait(venue.hang_seconds)
            if after_5xx:
                entry.status, entry.outcome = 503, "answered"
                self._send_text(503, "Service Unavailable")
                return
            if not hang:
                entry.outcome = "answered"
            self._send(200, answer)

        def _send_text(self, status: int, text: str) -> None:
            payload = text.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class FakeVenueClient:
    """Drive a FakeVenue running in another process through its control endpoint."""

    def __init__(self, url: str, *, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urlrequest.Request(self.url + path, data=data, method=method)  # noqa: S310 - loopback test server
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urlrequest.urlopen(req, timeout=self.timeout) as response:  # noqa: S310 - loopback test server
            return json.loads(response.read().decode())

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", f"{CONTROL_PREFIX}/state"))

    def set(self, **knobs: Any) -> dict[str, Any]:
        return dict(self._call("POST", CONTROL_PREFIX, {"set": knobs}))

    def call(self, name: str, *args: Any) -> dict[str, Any]:
        return dict(self._call("POST", CONTROL_PREFIX, {"call": [[name, *args]]}))

    def post_count(self, client_order_id: str) -> int:
        return int(
            self._call("GET", f"{CONTROL_PREFIX}/post_count?{urlencode({'client_order_id': client_order_id})}")["count"]
        )

    def orders_for(self, client_order_id: str) -> list[dict[str, Any]]:
        return [o for o in self.state()["orders"] if o["clientOrderId"] == client_order_id]

    def requests_for(
        self, *, method: str | None = None, path: str | None = None, client_order_id: str | None = None
    ) -> list[dict[str, Any]]:
        query = {k: v for k, v in {"method": method, "path": path, "client_order_id": client_order_id}.items() if v}
        return list(self._call("GET", f"{CONTROL_PREFIX}/requests?{urlencode(query)}"))

    def set_price(self, symbol: str, price: Decimal | str) -> dict[str, Any]:
        return self.call("set_price", symbol, str(price))

    def rate_limit(self, seconds: float) -> dict[str, Any]:
        return self.call("rate_limit", seconds)

    def not_found_for(self, seconds: float) -> dict[str, Any]:
        return self.call("not_found_for", seconds)

    def release_hung(self) -> dict[str, Any]:
        return self.call("release_hung")


def fake_venue_broker(venue: FakeVenue | FakeVenueClient, **kwargs: Any) -> Any:
    """A CcxtBroker ("binance", spot) pointed at ``venue`` with its keys. ``kwargs`` go to
    CcxtBroker (timeout_ms, market_type...)."""
    from apps.accounts.brokers.ccxt import CcxtBroker

    api_key = getattr(venue, "api_key", DEFAULT_API_KEY)
    api_secret = getattr(venue, "api_secret", DEFAULT_API_SECRET)
    kwargs.setdefault("timeout_ms", 3000)
    return CcxtBroker("binance", {"api_key": api_key, "secret": api_secret}, api_url=venue.url, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="FakeVenue: Binance spot REST API for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    parser.add_argument("--ready-file", help="write {url, port, pid} here once listening")
    parser.add_argument("--state-file", help="write a JSON snapshot here after every request")
    parser.add_argument("--price", action="append", default=[], help="SYMBOL=PRICE")
    parser.add_argument("--balance", action="append", default=[], help="ASSET=AMOUNT")
    args = parser.parse_args(argv)
    venue = FakeVenue(
        api_key=args.api_key,
        api_secret=args.api_secret,
        port=args.port,
        host=args.host,
        state_file=args.state_file,
    )
    for item in args.price:
        symbol, value = item.split("=", 1)
        venue.set_price(symbol, value)
    for item in args.balance:
        asset, value = item.split("=", 1)
        venue.set_balance(asset, value)
    venue.start()
    with venue.lock:
        venue._save()
    if args.ready_file:
        ready = Path(args.ready_file)
        tmp = ready.with_suffix(ready.suffix + ".tmp")
        tmp.write_text(json.dumps({"url": venue.url, "port": venue.port, "pid": os.getpid()}))
        os.replace(tmp, ready)
    stopped = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"FakeVenue listening on {venue.url}", flush=True)
    stopped.wait()
    venue.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
