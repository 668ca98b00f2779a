"""CcxtBroker: the Broker contract (apps.accounts.brokers.base) for any exchange ccxt supports,
through ccxt's synchronous client. No Django here: the caller (apps.accounts.broker_factory /
services.exchange_broker) passes decrypted credentials and the API host override from settings.

Construction: ``CcxtBroker(exchange_id, credentials, *, market_type="spot", sandbox=False,
api_url=None, timeout_ms=10000)``. ``credentials`` holds ccxt's names (``apiKey``, ``secret``,
optional ``password``, ``uid``; ``api_key`` / ``api_secret`` / ``passphrase`` are accepted too).
The rate limiter is on; ``sandbox`` switches to the venue's testnet (a venue without one refuses
with PermanentBrokerError); ``api_url`` sends every API URL on the venue's main host to that base
URL, keeping the path (tests point Binance at tests.fakes.fake_venue this way). For Binance-style
venues only the ``market_type`` markets are loaded (``fetchMarkets``) and currencies are not
fetched.

Money: ccxt speaks floats. Every number crossing this boundary goes through ``str()`` into a
Decimal; quantities and prices go out as floats only when that float reads back as the same
Decimal (at most 15 significant digits), else the order is refused before anything is sent.

Errors (what the execution service may do next, see base.py):

=====================================================  ===============================================
ccxt raises                                            we raise
=====================================================  ===============================================
InsufficientFunds                                      InsufficientFundsError (permanent)
AuthenticationError / PermissionDenied / AccountSus.,  AuthenticationBrokerError (Binance -2015 included,
                                                       even when ccxt calls it DDoSProtection)
DDoSProtection / RateLimitExceeded (418, 429)          NotSentError(retry_after = Retry-After header,
                                                       else RATE_LIMIT_RETRY_SECONDS)
InvalidNonce (-1021 timestamp outside recvWindow)      NotSentError (the venue looked at nothing)
DuplicateOrderId, Binance "Duplicate order sent."      AmbiguousBrokerError(code="duplicate"): an order
                                                       with this client id is open there: ask fetch_order
OrderNotFound                                          OrderNotFoundError
InvalidOrder / BadSymbol / BadRequest / NotSupported   InvalidOrderError (permanent)
/ ArgumentsRequired / OperationRejected
RequestTimeout / NetworkError / ExchangeNotAvailable   submit / cancel: AmbiguousBrokerError (the body may
/ any HTTP 5xx                                         have gone out) unless the connection was never made
                                                       (refused, DNS, connect timeout): NotSentError.
                                                       Reads: TemporaryBrokerError.
anything else                                          submit: a 4xx -> PermanentBrokerError, otherwise
                                                       AmbiguousBrokerError; reads: TemporaryBrokerError
=====================================================  ===============================================

Client order ids: ``submit`` passes the caller's id (Binance ``newClientOrderId``, elsewhere
ccxt's ``clientOrderId``); ``fetch_order`` / ``cancel`` find the order by it (Binance
``origClientOrderId``; other venues: a search of open, then closed orders, so an order older
than the venue's history window reads as not found).

Positions: on spot, ``fetch_positions`` reports every non-zero asset balance (free + locked) that
is not a quote currency (``QUOTE_ASSETS``) as ``PositionReport(symbol=<asset code, e.g. "BTC">,
quantity=total)``; on derivatives, ccxt's positions (signed contracts x contract size, per
unified symbol). A failing endpoint raises TemporaryBrokerError, never an empty list.

Permissions: Binance reads ``GET /sapi/v1/account/apiRestrictions`` (enableWithdrawals,
enableSpotAndMarginTrading, enableMargin, enableFutures); where the sapi host is absent (the spot
testnet) it falls back to the account endpoint's canTrade / canWithdraw. Other venues do not
report key permissions through ccxt: ``Permissions()`` with every field None (unknown).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import ccxt

from apps.accounts.brokers.base import (
    ORDER_TYPES,
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

logger = logging.getLogger(__name__)

RATE_LIMIT_RETRY_SECONDS = 10.0
NONCE_RETRY_SECONDS = 1.0
BINANCE_IDS = frozenset({"binance", "binanceus", "binancecoinm", "binanceusdm"})
QUOTE_ASSETS = frozenset(
    {"USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD", "EUR", "GBP", "TRY", "BRL", "JPY", "AUD", "UAH"}
)
FETCH_MARKET_TYPES = {
    "spot": ["spot"],
    "margin": ["spot"],
    "future": ["linear"],
    "swap": ["linear"],
    "linear": ["linear"],
    "inverse": ["inverse"],
    "delivery": ["inverse"],
}
_STATUS = {"open": "open", "closed": "filled", "canceled": "cancelled", "expired": "expired", "rejected": "rejected"}
Kind = Literal["submit", "cancel", "read"]
T = TypeVar("T")


def to_decimal(value: Any) -> Decimal | None:
    """A ccxt number (float, int, str or None) as a Decimal, through ``str`` (never the binary
    float's exact expansion)."""
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return _plain(result) if result.is_finite() else None


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros and without an exponent (40000.0 -> 40000, 4.000E+4 -> 40000)."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value  # type: ignore[operator]


def round_stop(rules: MarketRules, stop: Decimal, side: str) -> Decimal:
    """A stop trigger on the tick, on the protective side: a sell stop (guarding a long) up, a
    buy stop (guarding a short) down, so it triggers no later than asked."""
    if rules.tick_size is None or rules.tick_size <= 0:
        return stop
    rounding = ROUND_CEILING if side == "sell" else ROUND_FLOOR
    return _plain((stop / rules.tick_size).to_integral_value(rounding=rounding) * rules.tick_size)


def _dec(value: Any) -> Decimal:
    return to_decimal(value) or Decimal(0)


def _to_float(value: Decimal, what: str) -> float:
    number = float(value)
    if to_decimal(number) != value:
        raise InvalidOrderError(
            f"The {what} {value} has more digits than the exchange library can carry.", code="precision"
        )
    return number


def _ms_to_datetime(ms: Any) -> datetime | None:
    if ms in (None, ""):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def redirect_api(exchange: ccxt.Exchange, base_url: str) -> None:
    """Send every API URL on the venue's main host (that of its public API) to ``base_url``,
    keeping the path: https://api.binance.com/api/v3 -> http://127.0.0.1:8000/api/v3."""
    urls = exchange.urls["api"]
    first = urls if isinstance(urls, str) else urls.get("public") or next(iter(_strings(urls)))
    parts = urlsplit(first)
    host = f"{parts.scheme}://{parts.netloc}"
    base = base_url.rstrip("/")

    def swap(value: Any) -> Any:
        if isinstance(value, str):
            return base + value[len(host) :] if value.startswith(host) else value
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items()}
        return value

    exchange.urls["api"] = swap(urls)


def _causes(exc: BaseException) -> Iterator[Any]:
    """The exception, its causes and contexts, and the errors requests / urllib3 wrap in args."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, BaseException):
            stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None)])
            stack.extend(arg for arg in item.args if isinstance(arg, BaseException))


def nothing_sent(exc: BaseException) -> bool:
    """Whether a network error happened before any byte of the request left: the connection
    was refused, the name did not resolve, or the connect itself timed out."""
    try:
        from requests.exceptions import ConnectTimeout
        from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
    except ImportError:  # pragma: no cover - requests ships with ccxt
        return False
    for item in _causes(exc):
        if isinstance(
            item,
            ConnectionRefusedError | ConnectTimeout | ConnectTimeoutError | NewConnectionError | NameResolutionError,
        ):
            return True
    return False


class CcxtBroker(Broker):
    """A ccxt exchange behind the Broker contract. One instance per worker task; not
    thread-safe (neither is ccxt's sync client)."""

    name = "ccxt"

    def __init__(
        self,
        exchange_id: str,
        credentials: dict[str, str],
        *,
        market_type: str = "spot",
        sandbox: bool = False,
        api_url: str | None = None,
        timeout_ms: int = 10000,
    ):
        exchange_id = (exchange_id or "").strip().lower()
        if exchange_id not in ccxt.exchanges:
            raise PermanentBrokerError(
                f"Unknown exchange {exchange_id!r}: not a ccxt exchange id.", code="unknown_exchange"
            )
        self.exchange_id = exchange_id
        self.market_type = market_type or "spot"
        self.is_binance = exchange_id in BINANCE_IDS
        options: dict[str, Any] = {
            "defaultType": self.market_type,
            "fetchCurrencies": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        }
        if self.is_binance:
            options["fetchMarkets"] = FETCH_MARKET_TYPES.get(self.market_type, [self.market_type])
        config: dict[str, Any] = {
            "apiKey": credentials.get("apiKey") or credentials.get("api_key") or "",
            "secret": credentials.get("secret") or credentials.get("api_secret") or "",
            "enableRateLimit": True,
            "timeout": int(timeout_ms),
            "options": options,
        }
        password = credentials.get("password") or credentials.get("passphrase")
        if password:
            config["password"] = password
        if credentials.get("uid"):
            config["uid"] = credentials["uid"]
        self.exchange: ccxt.Exchange = getattr(ccxt, exchange_id)(config)
        if sandbox:
            try:
                self.exchange.set_sandbox_mode(True)
            except ccxt.BaseError as exc:
                raise PermanentBrokerError(
                    f"{exchange_id} has no testnet / sandbox in ccxt ({type(exc).__name__}).", code="no_sandbox"
                ) from None
        if api_url:
            redirect_api(self.exchange, api_url)
        self._last_status: int | None = None
        respond = self.exchange.on_rest_response

        def on_rest_response(code: int, *args: Any) -> Any:
            self._last_status = int(code)
            return respond(code, *args)

        self.exchange.on_rest_response = on_rest_response
        self._markets_loaded = False
        self.capabilities = self._capabilities()

    # --- plumbing ---------------------------------------------------------------------------

    def _capabilities(self) -> Capabilities:
        has = self.exchange.has
        types = {"market", "limit"}
        if has.get("createStopMarketOrder") or has.get("createTriggerOrder") or has.get("createStopOrder"):
            types.add("stop")
        if has.get("createStopLimitOrder") or has.get("createTriggerOrder"):
            types.add("stop_limit")
        return Capabilities(
            order_types=frozenset(t for t in ORDER_TYPES if t in types),
            shorting=self.market_type != "spot",
            fractional=True,
            native_oco=False,
            quote_quantity_market_buy=bool(has.get("createMarketBuyOrderWithCost")) and self.market_type == "spot",
            reports_withdraw_permission=self.is_binance,
            market_types=frozenset({self.market_type}),
        )

    def _retry_after(self) -> float:
        headers = self.exchange.last_response_headers or {}
        value = headers.get("Retry-After") or headers.get("retry-after")
        try:
            seconds = float(value) if value else RATE_LIMIT_RETRY_SECONDS
        except (TypeError, ValueError):
            seconds = RATE_LIMIT_RETRY_SECONDS
        return seconds if seconds > 0 and math.isfinite(seconds) else RATE_LIMIT_RETRY_SECONDS

    def _message(self, exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        # ccxt prefixes the exchange id; keep it short and free of request details.
        return f"{self.exchange_id}: {text[:300]}"

    def _classify(self, exc: ccxt.BaseError, kind: Kind) -> BrokerError:
        """The contract's error for a ccxt error raised by a ``kind`` call."""
        message = self._message(exc)
        text = str(exc)
        if isinstance(exc, ccxt.InsufficientFunds):
            return InsufficientFundsError(message)
        if isinstance(exc, ccxt.AuthenticationError | ccxt.AccountSuspended) or '"code":-2015' in text.replace(" ", ""):
            return AuthenticationBrokerError(message)
        if isinstance(exc, ccxt.DDoSProtection):
            return NotSentError(message, code="rate_limited", retry_after=self._retry_after())
        if isinstance(exc, ccxt.InvalidNonce):
            return NotSentError(message, code="clock", retry_after=NONCE_RETRY_SECONDS)
        if isinstance(exc, ccxt.DuplicateOrderId) or "Duplicate order sent" in text:
            return AmbiguousBrokerError(
                f"{message} (an order with this client id is open at the venue)", code="duplicate"
            )
        if isinstance(exc, ccxt.OrderNotFound):
            return OrderNotFoundError(message)
        if isinstance(
            exc,
            ccxt.InvalidOrder | ccxt.BadRequest | ccxt.NotSupported | ccxt.ArgumentsRequired | ccxt.OperationRejected,
        ):
            return InvalidOrderError(message)
        status = self._last_status
        if isinstance(exc, ccxt.NetworkError) or (status is not None and status >= 500):
            if kind == "read":
                return TemporaryBrokerError(message, code="unavailable")
            if isinstance(exc, ccxt.NetworkError) and nothing_sent(exc):
                return NotSentError(message, code="unreachable")
            return AmbiguousBrokerError(message)
        if kind == "read":
            return TemporaryBrokerError(message)
        if status is not None and 400 <= status < 500:
            return PermanentBrokerError(message)
        return AmbiguousBrokerError(message)

    def _call(self, kind: Kind, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._last_status = None
        try:
            return fn(*args, **kwargs)
        except ccxt.BaseError as exc:
            raise self._classify(exc, kind) from exc

    def _load_markets(self) -> dict[str, Any]:
        if not self._markets_loaded:
            try:
                self._call("read", self.exchange.load_markets)
            except TemporaryBrokerError as exc:
                # nothing of an order has gone out yet: sending later is safe
                raise NotSentError(exc.message, code=exc.code, retry_after=exc.retry_after) from exc
            self._markets_loaded = True
        return dict(self.exchange.markets or {})

    def reload_markets(self) -> None:
        """Forget the loaded markets (the venue's rules changed)."""
        self._markets_loaded = False
        self.exchange.markets = None
        self._call("read", self.exchange.load_markets, True)
        self._markets_loaded = True

    def _market(self, symbol: str) -> dict[str, Any]:
        markets = self._load_markets()
        if symbol in markets:
            return dict(markets[symbol])
        by_id = self.exchange.markets_by_id or {}
        if by_id.get(symbol):
            return dict(by_id[symbol][0])
        raise InvalidOrderError(f"{self.exchange_id} does not list the symbol {symbol!r}.", code="unknown_symbol")

    def _unified(self, symbol: str) -> str:
        return str(self._market(symbol)["symbol"])

    # --- reads ------------------------------------------------------------------------------

    def market_rules(self, symbol: str) -> MarketRules:
        """The symbol's step / tick / minimums from ccxt's market (Binance: the exact filter
        strings of exchangeInfo)."""
        market = self._market(symbol)
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        step = self._precision_step(precision.get("amount"))
        tick = self._precision_step(precision.get("price"))
        min_qty = to_decimal((limits.get("amount") or {}).get("min"))
        max_qty = to_decimal((limits.get("amount") or {}).get("max"))
        min_notional = to_decimal((limits.get("cost") or {}).get("min"))
        for item in (market.get("info") or {}).get("filters") or []:
            kind = item.get("filterType")
            if kind == "LOT_SIZE":
                step = to_decimal(item.get("stepSize")) or step
                min_qty = to_decimal(item.get("minQty")) or min_qty
                max_qty = to_decimal(item.get("maxQty")) or max_qty
            elif kind == "PRICE_FILTER":
                tick = to_decimal(item.get("tickSize")) or tick
            elif kind in {"NOTIONAL", "MIN_NOTIONAL"}:
                min_notional = to_decimal(item.get("minNotional")) or min_notional
        return MarketRules(
            symbol=str(market["symbol"]),
            base=str(market.get("base") or ""),
            quote=str(market.get("quote") or ""),
            step_size=_plain(step) if step else None,
            tick_size=_plain(tick) if tick else None,
            min_quantity=_plain(min_qty) if min_qty else None,
            max_quantity=_plain(max_qty) if max_qty else None,
            min_notional=_plain(min_notional) if min_notional else None,
        )

    def _precision_step(self, value: Any) -> Decimal | None:
        number = to_decimal(value)
        if number is None:
            return None
        if self.exchange.precisionMode == ccxt.TICK_SIZE:
            return number
        if self.exchange.precisionMode == ccxt.DECIMAL_PLACES:
            return Decimal(1).scaleb(-int(number))
        return None  # significant digits: no fixed step

    def fetch_balances(self) -> list[Balance]:
        raw = self._call("read", self.exchange.fetch_balance)
        return self._balances(raw)

    def _balances(self, raw: dict[str, Any]) -> list[Balance]:
        result = []
        free = raw.get("free") or {}
        used = raw.get("used") or {}
        total = raw.get("total") or {}
        for asset in sorted(set(free) | set(used) | set(total)):
            f, u = _dec(free.get(asset)), _dec(used.get(asset))
            if f == 0 and u == 0 and _dec(total.get(asset)) == 0:
                continue
            result.append(Balance(asset=asset, free=f, locked=u))
        return result

    def fetch_positions(self) -> list[PositionReport]:
        """Spot: non-zero non-quote asset balances (symbol = asset code). Derivatives: ccxt
        positions. Raises TemporaryBrokerError when the venue does not answer."""
        if self.market_type in {"spot", "margin"}:
            return [
                PositionReport(symbol=b.asset, quantity=b.total)
                for b in self.fetch_balances()
                if b.asset not in QUOTE_ASSETS and b.total != 0
            ]
        if not self.exchange.has.get("fetchPositions"):
            raise PermanentBrokerError(f"{self.exchange_id} does not report positions.", code="not_supported")
        raw = self._call("read", self.exchange.fetch_positions)
        if raw is None:
            raise TemporaryBrokerError(f"{self.exchange_id} answered no positions list.")
        reports = []
        for item in raw:
            contracts = _dec(item.get("contracts"))
            size = to_decimal(item.get("contractSize")) or Decimal(1)
            quantity = contracts * size
            if item.get("side") == "short":
                quantity = -abs(quantity)
            if quantity != 0:
                reports.append(
                    PositionReport(
                        symbol=str(item.get("symbol")),
                        quantity=quantity,
                        average_price=to_decimal(item.get("entryPrice")),
                    )
                )
        return reports

    def fetch_permissions(self) -> Permissions:
        """Binance: the key's API restrictions; other venues: unknown (None)."""
        if not self.is_binance:
            return Permissions(detail=f"{self.exchange_id} does not report key permissions through ccxt.")
        try:
            raw = self._call("read", self.exchange.sapi_get_account_apirestrictions)
        except InvalidOrderError:  # NotSupported: no sapi host (the spot testnet)
            account = self._call("read", self.exchange.private_get_account)
            return Permissions(
                can_trade=bool(account.get("canTrade")),
                can_withdraw=bool(account.get("canWithdraw")),
                detail="binance account endpoint (canTrade, canWithdraw)",
            )

        def flag(name: str) -> bool | None:
            value = raw.get(name)
            return None if value is None else bool(value)

        return Permissions(
            can_trade=flag("enableSpotAndMarginTrading"),
            can_withdraw=flag("enableWithdrawals"),
            can_margin=flag("enableMargin"),
            can_futures=flag("enableFutures"),
            detail="binance GET /sapi/v1/account/apiRestrictions",
        )

    def test_connection(self) -> ConnectionReport:
        """Balances and permissions; never raises for a bad key (ok=False with the reason)."""
        try:
            balances = self.fetch_balances()
            permissions = self.fetch_permissions()
        except BrokerError as exc:
            return ConnectionReport(ok=False, message=exc.message)
        return ConnectionReport(ok=True, balances=tuple(balances), permissions=permissions, message="Connected.")

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, since: datetime | None = None, limit: int | None = None
    ) -> list[tuple[datetime, Decimal, Decimal, Decimal, Decimal, Decimal]]:
        unified = self._unified(symbol)
        since_ms = int(since.timestamp() * 1000) if since else None
        rows = self._call("read", self.exchange.fetch_ohlcv, unified, timeframe, since_ms, limit)
        return [
            (
                datetime.fromtimestamp(row[0] / 1000, tz=UTC),
                _dec(row[1]),
                _dec(row[2]),
                _dec(row[3]),
                _dec(row[4]),
                _dec(row[5]),
            )
            for row in rows
        ]

    # --- orders -----------------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> OrderState:
        """Place ``request`` with its client order id. Rounds quantity down to the step and the
        price to the tick on the safe side, refuses (InvalidOrderError, nothing sent) what the
        rules forbid; otherwise one POST, classified as the module docstring says."""
        if request.type not in self.capabilities.order_types:
            raise InvalidOrderError(
                f"{self.exchange_id} does not take {request.type.replace('_', '-')} orders here.", code="not_supported"
            )
        rules = self.market_rules(request.symbol)
        symbol = rules.symbol
        price = rules.round_price(request.price, request.side) if request.price is not None else None
        stop = round_stop(rules, request.stop_price, request.side) if request.stop_price is not None else None
        if (price is not None and price <= 0) or (stop is not None and stop <= 0):
            raise InvalidOrderError("The price rounds to zero at this symbol's tick size.", code="below_minimum")
        if request.type in {"limit", "stop_limit"} and price is None:
            raise InvalidOrderError("A limit order needs a price.", code="missing_price")
        if request.type in {"stop", "stop_limit"} and stop is None:
            raise InvalidOrderError("A stop order needs a stop price.", code="missing_stop_price")
        use_cost = (
            request.type == "market"
            and request.side == "buy"
            and request.quote_quantity is not None
            and self.capabilities.quote_quantity_market_buy
        )
        quantity = rules.round_quantity(request.quantity)
        if use_cost:
            assert request.quote_quantity is not None
            if rules.min_notional is not None and request.quote_quantity < rules.min_notional:
                raise InvalidOrderError(
                    f"The order's value {request.quote_quantity} is below the minimum {rules.min_notional}.",
                    code="below_minimum",
                )
        else:
            problem = rules.check(quantity, price if price is not None else stop)
            if problem:
                raise InvalidOrderError(problem, code="below_minimum")
        params: dict[str, Any] = {}
        if self.is_binance:
            params["newClientOrderId"] = request.client_order_id
        else:
            params["clientOrderId"] = request.client_order_id
        if stop is not None:
            params["triggerPrice"] = _to_float(stop, "stop price")
        if request.reduce_only and self.market_type not in {"spot", "margin"}:
            params["reduceOnly"] = True
        if request.type in {"limit", "stop_limit"} and request.time_in_force and request.time_in_force != "GTC":
            params["timeInForce"] = request.time_in_force
        ccxt_type = "limit" if request.type in {"limit", "stop_limit"} else "market"
        if use_cost:
            assert request.quote_quantity is not None
            raw = self._call(
                "submit",
                self.exchange.create_market_buy_order_with_cost,
                symbol,
                _to_float(request.quote_quantity, "quote quantity"),
                params,
            )
        else:
            raw = self._call(
                "submit",
                self.exchange.create_order,
                symbol,
                ccxt_type,
                request.side,
                _to_float(quantity, "quantity"),
                _to_float(price, "price") if price is not None else None,
                params,
            )
        state = self._state(raw, request.client_order_id, default_type=request.type)
        if state.status == "open" and not raw.get("status"):  # an acknowledgement only
            state = OrderState(
                client_order_id=request.client_order_id,
                status="open",
                exchange_order_id=state.exchange_order_id,
                symbol=symbol,
                side=request.side,
                type=request.type,
                quantity=quantity,
                price=price,
                stop_price=stop,
                updated_at=state.updated_at,
            )
        return self._with_fills(state, quiet=True)

    def cancel(self, client_order_id: str, symbol: str) -> OrderState:
        """Cancel by client id. An order already done comes back in its final state;
        OrderNotFoundError if the venue does not know it."""
        unified = self._unified(symbol)
        try:
            if self.is_binance:
                raw = self._call(
                    "cancel", self.exchange.cancel_order, "", unified, {"origClientOrderId": client_order_id}
                )
            else:
                current = self._find_by_client_id(client_order_id, unified)
                if current.get("status") != "open":
                    return self._with_fills(self._state(current, client_order_id))
                raw = self._call("cancel", self.exchange.cancel_order, str(current["id"]), unified)
        except OrderNotFoundError:
            state = self.fetch_order(client_order_id, symbol)  # raises OrderNotFoundError if unknown
            if not state.is_terminal:
                raise
            return state
        state = self._state(raw, client_order_id)
        if not raw.get("status"):
            return self.fetch_order(client_order_id, symbol)
        return self._with_fills(state, quiet=True)

    def fetch_order(self, client_order_id: str, symbol: str) -> OrderState:
        """The venue's view of the order with this client id, with its fills."""
        unified = self._unified(symbol)
        if self.is_binance:
            raw = self._call("read", self.exchange.fetch_order, "", unified, {"origClientOrderId": client_order_id})
        else:
            raw = self._find_by_client_id(client_order_id, unified)
        return self._with_fills(self._state(raw, client_order_id))

    def _find_by_client_id(self, client_order_id: str, symbol: str) -> dict[str, Any]:
        has = self.exchange.has
        for method, attribute in (
            ("fetchOpenOrders", "fetch_open_orders"),
            ("fetchClosedOrders", "fetch_closed_orders"),
            ("fetchOrders", "fetch_orders"),
            ("fetchCanceledOrders", "fetch_canceled_orders"),
        ):
            if not has.get(method):
                continue
            fn = getattr(self.exchange, attribute)
            for order in self._call("read", fn, symbol):
                if order.get("clientOrderId") == client_order_id:
                    return dict(order)
        raise OrderNotFoundError(f"{self.exchange_id} does not know the order {client_order_id}.")

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        unified = self._unified(symbol) if symbol else None
        if unified is None:
            self._load_markets()
        raw = self._call("read", self.exchange.fetch_open_orders, unified)
        return [self._state(order, str(order.get("clientOrderId") or "")) for order in raw]

    def fetch_fills(self, symbol: str, since: datetime | None = None) -> list[FillReport]:
        unified = self._unified(symbol)
        since_ms = int(since.timestamp() * 1000) if since else None
        raw = self._call("read", self.exchange.fetch_my_trades, unified, since_ms)
        return [self._fill(trade) for trade in raw]

    def _with_fills(self, state: OrderState, *, quiet: bool = False) -> OrderState:
        """Attach the order's fills when it traded and the answer did not carry them. ``quiet``:
        a failure to read them leaves the state without (the caller syncs later)."""
        if state.filled_quantity <= 0 or state.fills or not state.exchange_order_id:
            return state
        try:
            if self.exchange.has.get("fetchOrderTrades"):
                trades = self._call("read", self.exchange.fetch_order_trades, state.exchange_order_id, state.symbol)
            else:
                since = int(state.updated_at.timestamp() * 1000) - 86_400_000 if state.updated_at else None
                trades = [
                    t
                    for t in self._call("read", self.exchange.fetch_my_trades, state.symbol, since)
                    if str(t.get("order")) == state.exchange_order_id
                ]
        except BrokerError:
            if quiet:
                return state
            raise
        fills = tuple(self._fill(t) for t in trades)
        return _replace_fills(state, fills)

    # --- parsing ----------------------------------------------------------------------------

    def _fill(self, trade: dict[str, Any], fallback_at: datetime | None = None) -> FillReport:
        fee = trade.get("fee") or {}
        at = _ms_to_datetime(trade.get("timestamp")) or fallback_at or datetime.now(tz=UTC)
        return FillReport(
            trade_id=str(trade.get("id")),
            quantity=_dec(trade.get("amount")),
            price=_dec(trade.get("price")),
            fee=_dec(fee.get("cost")),
            fee_currency=str(fee.get("currency") or ""),
            at=at,
            is_maker=trade.get("takerOrMaker") == "maker",
        )

    def _state(self, order: dict[str, Any], client_order_id: str, *, default_type: str = "") -> OrderState:
        filled = _dec(order.get("filled"))
        status = _STATUS.get(str(order.get("status") or "open"), "open")
        if status == "open" and filled > 0:
            status = "partially_filled"
        trigger = to_decimal(order.get("triggerPrice") or order.get("stopPrice"))
        if trigger == 0:
            trigger = None
        kind = str(order.get("type") or "")
        if trigger is not None:
            kind = "stop" if kind == "market" else "stop_limit"
        elif kind not in ORDER_TYPES:
            kind = default_type or kind
        price = to_decimal(order.get("price"))
        if price == 0 or kind in {"market", "stop"}:
            price = None
        cost = to_decimal(order.get("cost"))
        average = to_decimal(order.get("average"))
        if filled > 0 and cost:
            average = _plain(cost / filled)
        if filled <= 0:
            average = None
        updated = _ms_to_datetime(
            order.get("lastUpdateTimestamp") or order.get("lastTradeTimestamp") or order.get("timestamp")
        )
        fills = tuple(self._fill(t, updated) for t in order.get("trades") or [] if t.get("id") is not None)
        info = order.get("info") or {}
        reason = str(info.get("status") or "") if status in {"rejected", "expired"} else ""
        return OrderState(
            client_order_id=client_order_id or str(order.get("clientOrderId") or ""),
            status=status,
            exchange_order_id=str(order.get("id") or ""),
            symbol=str(order.get("symbol") or ""),
            side=str(order.get("side") or ""),
            type=kind,
            quantity=_dec(order.get("amount")),
            price=price,
            stop_price=trigger,
            filled_quantity=filled,
            average_price=average,
            fills=fills,
            reason=reason,
            updated_at=updated,
        )

    def close(self) -> None:
        session = getattr(self.exchange, "session", None)
        if session is not None:
            try:
                session.close()
            except Exception:
                logger.debug("closing the ccxt session failed", exc_info=True)


def _replace_fills(state: OrderState, fills: tuple[FillReport, ...]) -> OrderState:
    from dataclasses import replace

    return replace(state, fills=fills)
