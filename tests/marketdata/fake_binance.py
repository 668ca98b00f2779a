"""A local HTTP server that answers like Binance's public spot REST API, for testing the ccxt
feed through ccxt itself.

It serves `GET /api/v3/klines` with Binance's semantics (symbol, interval, startTime, endTime
inclusive on open time, limit default 500 and at most 1000; rows
[openTime, "o", "h", "l", "c", "v", closeTime, "qv", n, "tbv", "tqv", "0"]), `/api/v3/exchangeInfo`
with one market (BTCUSDT), `/api/v3/time`, and the margin lists ccxt reads while loading
markets. Bars exist up to the server's `now_ms`; the last one is still open (its close moves).

`script` queues replies for the next klines requests (status, headers, body), or None for the
normal answer, to play a 429 with Retry-After or a 5xx in the middle of a backfill. Every request is logged with its
monotonic arrival time.
"""

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apps.marketdata import timeframes
from tests.conftest import free_port

SYMBOL = "BTCUSDT"
# How often the server loop checks for shutdown() (socketserver's default, 0.5 s, is what every
# test would wait at its end).
SHUTDOWN_POLL_SECONDS = 0.02
# 2024-01-01T00:00:00Z
EPOCH_2024_MS = 1_704_067_200_000


def bar_values(open_ms: int, step_ms: int) -> tuple[float, float, float, float, float]:
    """Deterministic OHLCV for the bar opening at `open_ms` (prices on a 0.01 tick)."""
    k = open_ms // step_ms
    base = 40_000 + (k * 37) % 2_000
    o = base + 0.25
    c = base + ((k * 13) % 40) - 20 + 0.5
    h = max(o, c) + 5 + (k % 7)
    low = min(o, c) - 5 - (k % 5)
    v = 1 + (k % 11) * 0.125
    return o, h, low, c, v


@dataclass
class Request:
    at: float
    path: str
    query: dict[str, str]
    status: int


@dataclass
class FakeBinance:
    now_ms: int
    first_ms: int = EPOCH_2024_MS
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    script: list[tuple[int, dict[str, str], Any] | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def klines(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/api/v3/klines"]

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if path == "/api/v3/time":
            return 200, {}, {"serverTime": self.now_ms}
        if path == "/api/v3/exchangeInfo":
            return 200, {}, exchange_info(self.now_ms)
        if path in {"/sapi/v1/margin/allPairs", "/sapi/v1/margin/isolated/allPairs"}:
            return 200, {}, []
        if path == "/api/v3/klines":
            with self.lock:
                scripted = self.script.pop(0) if self.script else None
            return scripted or self.klines_answer(query)
        return 404, {}, {"code": -1, "msg": f"no route {path}"}

    def klines_answer(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if query.get("symbol") != SYMBOL:
            return 400, {}, {"code": -1121, "msg": "Invalid symbol."}
        interval = query.get("interval", "")
        if interval not in timeframes.TIMEFRAMES:
            return 400, {}, {"code": -1120, "msg": "Invalid interval."}
        step = timeframes.seconds(interval) * 1000
        limit = min(int(query.get("limit", 500)), 1000)
        origin = timeframes._WEEK_ORIGIN * 1000 if interval == "1w" else 0
        first = self.first_ms - (self.first_ms - origin) % step
        last_open = self.now_ms - (self.now_ms - origin) % step
        end = min(int(query["endTime"]), last_open) if "endTime" in query else last_open
        if "startTime" in query:
            start = max(int(query["startTime"]), first)
            start += (origin - start) % step
        else:
            start = max(first, end - (limit - 1) * step)
        rows = []
        t = start
        while t <= end and len(rows) < limit:
            o, h, low, c, v = bar_values(t, step)
            if t == last_open:  # still open: its close so far
                c = o
                h, low = max(h, o), min(low, o)
            rows.append(
                [
                    t,
                    f"{o:.8f}",
                    f"{h:.8f}",
                    f"{low:.8f}",
                    f"{c:.8f}",
                    f"{v:.8f}",
                    t + step - 1,
                    f"{v * c:.8f}",
                    10,
                    "0.5",
                    f"{0.5 * c:.8f}",
                    "0",
                ]
            )
            t += step
        return 200, {}, rows


def exchange_info(now_ms: int) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [],
        "exchangeFilters": [],
        "symbols": [
            {
                "symbol": SYMBOL,
                "status": "TRADING",
                "baseAsset": "BTC",
                "baseAssetPrecision": 8,
                "quoteAsset": "USDT",
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.0", "stepSize": "0.00001"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00", "maxNotional": "9000000.00"},
                ],
                "permissions": ["SPOT"],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
            }
        ],
    }


def _handler(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            arrived = time.monotonic()
            status, headers, body = fake.answer(parts.path, query)
            with fake.lock:
                fake.requests.append(Request(at=arrived, path=parts.path, query=query, status=status))
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def fake_binance(*, now_ms: int, first_ms: int = EPOCH_2024_MS) -> Iterator[FakeBinance]:
    fake = FakeBinance(now_ms=now_ms, first_ms=first_ms, port=free_port())
    server = ThreadingHTTPServer(("127.0.0.1", fake.port), _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL_SECONDS,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def ccxt_config(fake_url: str) -> dict[str, Any]:
    """What `settings.MARKETDATA_CCXT_CONFIG["binance"]` holds to send ccxt to the fake."""
    return {
        "api_url": fake_url,
        "options": {"fetchMarkets": ["spot"], "fetchCurrencies": False},
        "rateLimit": 1,
    }
