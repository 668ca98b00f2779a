"""Candles from an exchange's public OHLCV endpoint through ccxt.

The only module that imports ccxt for market data. No database here: `services` stores what
this returns.

- `exchange_create(id)`: a ccxt exchange with its rate limiter on (`enableRateLimit`), plus
  what `settings.MARKETDATA_CCXT_CONFIG[id]` adds (ccxt options, and `api_url` to send every
  request for the venue's own host elsewhere: a proxy, a testnet, or a test's local server).
- `iter_ohlcv_pages(...)` / `fetch_ohlcv_range(...)`: every CLOSED bar with open time in
  [since, until), page by page, each page starting after the last bar of the one before. The
  bar still open at the time of the call is dropped: only closed bars are ever stored.
- Temporary failures (HTTP 429/418, 5xx, timeouts, connection errors) are retried a bounded
  number of times with exponential backoff; a `Retry-After` header, when present, sets the
  wait. Then, and for permanent failures at once, a `FeedError` with a clear message.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import ccxt
import numpy as np
import pandas as pd
from django.conf import settings

from apps.marketdata import timeframes
from apps.marketdata.feeds.errors import (
    ExchangeFailed,
    ExchangeUnreachable,
    FeedError,
    RateLimited,
    TimeframeNotOffered,
    UnknownExchange,
    UnknownSymbol,
)
from apps.marketdata.storage import COLUMNS, empty_frame

logger = logging.getLogger(__name__)

Sleep = Callable[[float], None]
Clock = Callable[[], float]

MAX_RETRIES = 5
BACKOFF_SECONDS = 1.0
MAX_WAIT_SECONDS = 60.0
MARKETS_MAX_AGE_SECONDS = 24 * 3600


def configured(exchange_id: str) -> dict[str, Any]:
    config: dict[str, dict[str, Any]] = getattr(settings, "MARKETDATA_CCXT_CONFIG", None) or {}
    return dict(config.get(exchange_id, {}))


def exchange_create(exchange_id: str, *, config: dict[str, Any] | None = None) -> ccxt.Exchange:
    """A new ccxt exchange for public market data. Raises UnknownExchange."""
    exchange_id = exchange_id.strip().lower()
    if exchange_id not in ccxt.exchanges:
        raise UnknownExchange(
            f"Unknown exchange {exchange_id!r}: not a ccxt exchange id (for example binance, kraken, coinbase)."
        )
    merged = {**configured(exchange_id), **(config or {})}
    api_url = merged.pop("api_url", None)
    exchange: ccxt.Exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True, "timeout": 20_000, **merged})
    if api_url:
        redirect_api(exchange, str(api_url))
    _record_status(exchange)
    return exchange


def _record_status(exchange: ccxt.Exchange) -> None:
    """Keep the HTTP status of the last response on the exchange (ccxt keeps only headers)."""
    respond = exchange.on_rest_response

    def on_rest_response(code: int, *args: Any) -> Any:
        exchange._platform_status = code
        return respond(code, *args)

    exchange.on_rest_response = on_rest_response


def redirect_api(exchange: ccxt.Exchange, base_url: str) -> None:
    """Send every API URL on the venue's main host (that of its public API) to `base_url`,
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


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


_cache = threading.local()


def exchange_get(exchange_id: str) -> ccxt.Exchange:
    """This thread's shared instance for `exchange_id` (markets and rate limiter kept between
    calls). ccxt's sync exchanges are not thread-safe, hence one per thread."""
    key = (exchange_id.strip().lower(), repr(sorted(configured(exchange_id.strip().lower()).items())))
    instances: dict[tuple[str, str], ccxt.Exchange] = getattr(_cache, "instances", None) or {}
    _cache.instances = instances
    if key not in instances:
        instances[key] = exchange_create(key[0])
    return instances[key]


def exchange_cache_clear() -> None:
    """Forget this thread's shared exchanges (after a configuration change)."""
    _cache.instances = {}


def _retry_after(exchange: ccxt.Exchange) -> float | None:
    headers = exchange.last_response_headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def call_with_retries[T](
    exchange: ccxt.Exchange,
    what: str,
    fn: Callable[[], T],
    *,
    retries: int = MAX_RETRIES,
    backoff: float = BACKOFF_SECONDS,
    sleep: Sleep = time.sleep,
) -> T:
    """Run `fn` (one ccxt call), retrying temporary failures up to `retries` times.

    Waits backoff, 2*backoff, 4*backoff ... (at most MAX_WAIT_SECONDS), or what the venue's
    Retry-After header asks for. Maps ccxt's errors to FeedError subclasses.
    """
    name = exchange.id
    attempt = 0
    while True:
        exchange.last_response_headers = None
        exchange._platform_status = None
        error: FeedError
        try:
            return fn()
        except ccxt.BadSymbol as exc:
            raise UnknownSymbol(f"{name} does not list that symbol: {_short(exc)}") from exc
        except ccxt.BaseError as exc:
            # Venues put their own error codes in the body, which ccxt maps before it looks at
            # the HTTP status: a 5xx carrying {"code": -1001} arrives as an ExchangeError. The
            # status decides first, then ccxt's temporary classes (OperationFailed).
            status = getattr(exchange, "_platform_status", None)
            if status in (418, 429) or isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
                error = RateLimited(f"{name} keeps rate-limiting {what} (tried {attempt + 1} times): {_short(exc)}")
            elif (status is not None and status >= 500) or isinstance(exc, ccxt.OperationFailed):
                error = ExchangeUnreachable(
                    f"{name} is unreachable for {what} (tried {attempt + 1} times): {_short(exc)}"
                )
            else:
                raise ExchangeFailed(f"{name} refused {what}: {_short(exc)}") from exc
        if attempt >= retries:
            raise error
        wait = _retry_after(exchange)
        wait = min(MAX_WAIT_SECONDS, wait if wait is not None else backoff * 2**attempt)
        logger.warning("%s; retrying in %.2f s", error.message, wait)
        sleep(wait)
        attempt += 1


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _markets_load(exchange: ccxt.Exchange, *, retries: int, backoff: float, sleep: Sleep) -> None:
    loaded_at = getattr(exchange, "_platform_markets_at", 0.0)
    if exchange.markets and time.monotonic() - loaded_at < MARKETS_MAX_AGE_SECONDS:
        return
    reload = lambda: exchange.load_markets(reload=True)  # noqa: E731
    call_with_retries(exchange, "its market list", reload, retries=retries, backoff=backoff, sleep=sleep)
    exchange._platform_markets_at = time.monotonic()


def check_timeframe(exchange: ccxt.Exchange, timeframe: str) -> None:
    if not exchange.has.get("fetchOHLCV"):
        raise TimeframeNotOffered(f"{exchange.id} offers no OHLCV candles.")
    offered = exchange.timeframes or {}
    if timeframe not in offered or timeframe not in timeframes.TIMEFRAMES:
        both = [tf for tf in timeframes.TIMEFRAMES if tf in offered]
        raise TimeframeNotOffered(
            f"{exchange.id} does not offer {timeframe!r} candles; timeframes it offers: {', '.join(both) or 'none'}."
        )


def check_symbol(exchange: ccxt.Exchange, symbol: str) -> dict[str, Any]:
    market = (exchange.markets or {}).get(symbol)
    if market is None:
        raise UnknownSymbol(f"{exchange.id} does not list {symbol!r} (use its unified symbol, e.g. BTC/USDT).")
    return dict(market)


@dataclass(frozen=True)
class MarketInfo:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal | None
    lot_size: Decimal | None
    min_notional: Decimal | None


def market_info(
    exchange_id: str,
    symbol: str,
    *,
    exchange: ccxt.Exchange | None = None,
    retries: int = MAX_RETRIES,
    backoff: float = BACKOFF_SECONDS,
    sleep: Sleep = time.sleep,
) -> MarketInfo:
    """What the venue says about `symbol`; raises UnknownExchange/UnknownSymbol/temporary errors."""
    ex = exchange or exchange_get(exchange_id)
    _markets_load(ex, retries=retries, backoff=backoff, sleep=sleep)
    market = check_symbol(ex, symbol)
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    return MarketInfo(
        symbol=symbol,
        base=str(market.get("base") or ""),
        quote=str(market.get("quote") or ""),
        tick_size=_step(ex, precision.get("price")),
        lot_size=_step(ex, precision.get("amount")),
        min_notional=_decimal((limits.get("cost") or {}).get("min")),
    )


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _step(exchange: ccxt.Exchange, value: Any) -> Decimal | None:
    # ccxt reports precision either as a step (TICK_SIZE mode) or as a number of decimals.
    number = _decimal(value)
    if number is None or exchange.precisionMode == ccxt.TICK_SIZE:
        return number
    return Decimal(1).scaleb(-int(number))


def _to_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return int(ts.timestamp() * 1000)


def _first_open_ms(since: datetime, timeframe: str) -> int:
    """The first bar open time at or after `since`."""
    start = timeframes.floor(since, timeframe)
    if start < since:
        start += timeframes.delta(timeframe)
    return _to_ms(start)


def rows_frame(rows: list[list[Any]], timeframe: str) -> pd.DataFrame:
    """ccxt's [[ms, open, high, low, close, volume], ...] as a candle frame: sorted, unique,
    on the timeframe's grid, rows without a price dropped, a missing volume read as 0."""
    if not rows:
        return empty_frame()
    arr = np.array([row[:6] for row in rows], dtype=np.float64)
    arr[:, 5] = np.nan_to_num(arr[:, 5], nan=0.0)
    arr = arr[~np.isnan(arr).any(axis=1)]
    index = pd.DatetimeIndex(pd.to_datetime(arr[:, 0].astype(np.int64), unit="ms", utc=True), name="ts")
    frame = pd.DataFrame(arr[:, 1:], columns=COLUMNS, index=index)
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    on_grid = timeframes.on_grid(frame.index, timeframe)
    if not on_grid.all():
        # Stored next to grid-aligned bars, an off-grid bar would be a second, overlapping bar.
        logger.warning("dropping %d %s bar(s) off the UTC grid", int((~on_grid).sum()), timeframe)
        frame = frame[on_grid]
    return frame


def iter_ohlcv_pages(
    exchange_id: str,
    symbol: str,
    timeframe: str,
    since: datetime,
    until: datetime | None = None,
    *,
    exchange: ccxt.Exchange | None = None,
    limit: int = 1000,
    retries: int = MAX_RETRIES,
    backoff: float = BACKOFF_SECONDS,
    sleep: Sleep = time.sleep,
    clock: Clock = time.time,
) -> Iterator[pd.DataFrame]:
    """Yield pages of closed bars with open time in [since, until), oldest first.

    Each request asks for `limit` bars from just after the last bar received. Stops at an
    empty page, at `until`, or at the bar still open now (`clock()`, epoch seconds), which is
    dropped. Raises FeedError subclasses (see module docstring).
    """
    ex = exchange or exchange_get(exchange_id)
    check_timeframe(ex, timeframe)
    _markets_load(ex, retries=retries, backoff=backoff, sleep=sleep)
    check_symbol(ex, symbol)
    step_ms = timeframes.seconds(timeframe) * 1000
    cursor = _first_open_ms(since, timeframe)
    until_ms = _to_ms(until) if until is not None else None
    params: dict[str, Any] = {"until": until_ms - 1} if until_ms is not None else {}
    what = f"{symbol} {timeframe} candles"
    while until_ms is None or cursor < until_ms:
        rows = call_with_retries(
            ex,
            what,
            partial(ex.fetch_ohlcv, symbol, timeframe, since=cursor, limit=limit, params=dict(params)),
            retries=retries,
            backoff=backoff,
            sleep=sleep,
        )
        if not rows:
            return
        frame = rows_frame(rows, timeframe)
        now_ms = clock() * 1000
        ms = frame.index.as_unit("ms").asi8
        keep = (ms >= cursor) & (ms + step_ms <= now_ms)
        if until_ms is not None:
            keep &= ms < until_ms
        page = frame[keep]
        if not page.empty:
            yield page
        last = int(ms.max()) if len(ms) else cursor - step_ms
        if last + step_ms > now_ms or last + step_ms <= cursor:
            return  # reached the bar still open, or the venue made no progress
        cursor = last + step_ms


def fetch_ohlcv_range(
    exchange_id: str,
    symbol: str,
    timeframe: str,
    since: datetime,
    until: datetime | None = None,
    *,
    exchange: ccxt.Exchange | None = None,
    limit: int = 1000,
    on_page: Callable[[pd.DataFrame], None] | None = None,
    retries: int = MAX_RETRIES,
    backoff: float = BACKOFF_SECONDS,
    sleep: Sleep = time.sleep,
    clock: Clock = time.time,
) -> pd.DataFrame:
    """Every closed bar in [since, until) as one frame; `on_page(frame)` sees each page as it
    arrives (to store or report progress as you go). See `iter_ohlcv_pages`."""
    pages = []
    for page in iter_ohlcv_pages(
        exchange_id,
        symbol,
        timeframe,
        since,
        until,
        exchange=exchange,
        limit=limit,
        retries=retries,
        backoff=backoff,
        sleep=sleep,
        clock=clock,
    ):
        if on_page is not None:
            on_page(page)
        pages.append(page)
    if not pages:
        return empty_frame()
    frame = pd.concat(pages)
    return frame[~frame.index.duplicated(keep="last")]
