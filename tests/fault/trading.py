"""What the trading fault tests share: placing an order, a live deployment whose strategy enters
on a chosen bar, publishing ticks as the feed (or a beat) would, and the check that our records
match the venue's, where "the venue" is FakeVenue's own book and request log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from celery import current_app
from kombu import Connection

from tests.fault.processes import wait_until

ORDER_PATH = "/api/v3/order"
# Binance's order statuses -> ours.
VENUE_STATUS = {
    "NEW": "open",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "cancelled",
    "EXPIRED": "expired",
    "REJECTED": "rejected",
}
TIMEFRAME = "1m"
BARS = 240
PRICE = 40000.0


# --- orders -----------------------------------------------------------------------------------


def submit_market(account: Any, instrument: Any, *, side: str = "buy", quantity: str = "0.01", **extra: Any) -> Any:
    """A manual market order through the execution service (the Order is committed, then its
    send is queued for a worker)."""
    from apps.trades.intents import OrderIntent
    from apps.trades.services.orders import order_submit

    intent = OrderIntent(
        account_id=account.pk,
        instrument_id=instrument.pk,
        side=side,
        type="market",
        source="manual",
        quantity=Decimal(quantity),
        expected_price=Decimal(str(PRICE)),
        created_by_id=account.owner_id,
        **extra,
    )
    return order_submit(intent=intent)


def order_row(order_id: int) -> Any:
    from apps.trades.models import Order

    return Order.objects.get(pk=order_id)


def wait_order(
    order_id: int,
    condition: Callable[[Any], bool],
    *,
    timeout: float,
    what: str,
    tick: Callable[[], None] | None = None,
) -> Any:
    """Poll the Order row until ``condition(order)``; ``tick`` runs between polls (a beat)."""

    def check() -> Any:
        order = order_row(order_id)
        if condition(order):
            return order
        if tick is not None:
            tick()
        return None

    try:
        return wait_until(check, timeout=timeout, interval=0.5, what=what)
    except TimeoutError as error:
        order = order_row(order_id)
        raise AssertionError(
            f"{error}; the order is {order.status} ({order.status_reason!r}), exchange id {order.exchange_order_id!r}"
        ) from None


def is_settled(order: Any) -> bool:
    """Resolved against the venue: an exchange id and a venue status (not new/sending/unknown)."""
    return bool(order.exchange_order_id) and order.status not in ("new", "sending", "unknown")


def order_posts(venue: Any, client_order_id: str) -> list[Any]:
    return [
        r
        for r in venue.requests_for(method="POST", path=ORDER_PATH)
        if r.params.get("newClientOrderId") == client_order_id
    ]


def assert_records_match_venue(venue: Any, order_id: int) -> Any:
    """Exactly one venue order and one POST with this order's client id; every later request
    about it is a GET; our Order and Fill rows equal the venue's, as Decimals."""
    from apps.trades.models import Fill

    order = order_row(order_id)
    coid = order.client_order_id
    posts = order_posts(venue, coid)
    assert len(posts) == 1, f"{len(posts)} POSTs with {coid}: {[(p.status, p.outcome) for p in posts]}"
    later = [r for r in venue.requests_for(client_order_id=coid) if r.at > posts[0].at]
    assert {r.method for r in later} <= {"GET"}, [(r.method, r.path) for r in later]
    [venue_order] = venue.orders_for(coid)
    assert order.exchange_order_id == str(venue_order.order_id)
    assert order.status == VENUE_STATUS[venue_order.status]
    assert order.filled_quantity == venue_order.executed_qty
    venue_fills = {
        (str(t["id"]), Decimal(t["qty"]), Decimal(t["price"]))
        for t in venue.trades
        if t["orderId"] == venue_order.order_id
    }
    ours = {(f.trade_id, f.quantity, f.price) for f in Fill.objects.filter(order_id=order_id)}
    assert ours == venue_fills
    return order


def venue_order_count(venue: Any) -> int:
    return len(venue.orders)


# --- beats and ticks --------------------------------------------------------------------------


def send_task(name: str, *args: Any, broker: str | None = None, **kwargs: Any) -> None:
    """Publish a task by name, as beat does (to the test's broker, or ``broker``)."""
    if broker is None:
        current_app.send_task(name, args=args, kwargs=kwargs)
        return
    with Connection(broker) as connection:
        current_app.send_task(name, args=args, kwargs=kwargs, connection=connection)


class Beat:
    """A stand-in for celery beat inside the test: ``beat()`` publishes the task at most once per
    ``every`` seconds (call it from a wait loop)."""

    def __init__(self, name: str, *, every: float = 1.0, broker: str | None = None):
        self.name = name
        self.every = every
        self.broker = broker
        self.last = 0.0
        self.sent = 0

    def __call__(self) -> None:
        if time.monotonic() - self.last >= self.every:
            send_task(self.name, broker=self.broker)
            self.last = time.monotonic()
            self.sent += 1


def publish_tick(deployment: Any, instrument: Any, bar_ts: datetime, *, broker: str | None = None) -> None:
    """One deployment_tick message, as the feed's candle_closed receiver sends it."""
    send_task(
        "apps.strategies.tasks.deployment_tick",
        deployment.pk,
        instrument.pk,
        bar_ts.astimezone(UTC).isoformat(),
        datetime.now(UTC).isoformat(),
        broker=broker,
    )


# --- a live deployment on the venue -------------------------------------------------------------


def bar_times(count: int, *, end: datetime | None = None) -> pd.DatetimeIndex:
    end = end or datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    return pd.date_range(end=end, periods=count, freq="1min", tz="UTC", name="ts")


def write_candles(instrument: Any, closes: list[float], index: pd.DatetimeIndex) -> None:
    from apps.marketdata.storage import candles_write

    close = np.asarray(closes, dtype=float)
    frame = pd.DataFrame(
        {
            "open": close,
            "high": close * 1.0005,
            "low": close * 0.9995,
            "close": close,
            "volume": np.full(len(close), 10.0),
        },
        index=index,
    )
    candles_write(instrument=instrument, timeframe=TIMEFRAME, frame=frame, source="import")


def flat_history(instrument: Any, bars: int = BARS) -> pd.DatetimeIndex:
    """``bars`` flat candles ending a few minutes ago: an SMA(2)/SMA(3) cross strategy says
    nothing on them. Returns their open times."""
    index = bar_times(bars, end=datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10))
    write_candles(instrument, [PRICE] * bars, index)
    return index


def next_bar(instrument: Any, after: datetime, close: float) -> datetime:
    """Store the bar after ``after`` closing at ``close``; returns its open time."""
    ts = after + timedelta(minutes=1)
    write_candles(instrument, [close], pd.DatetimeIndex([ts], tz="UTC", name="ts"))
    return ts


def live_deployment(account: Any, instrument: Any, *, capital: str = "1000", **settings: Any) -> Any:
    """A running (live) SMA(2)/SMA(3) cross deployment on ``account``: a bar closing above the
    flat history is an entry signal. Created by the service, switched to live directly (the
    second-factor check of deployment_start is not what these tests are about)."""
    from apps.strategies.models import Deployment
    from apps.strategies.services.deployments import deployment_create

    deployment = deployment_create(
        owner=account.owner,
        account_id=account.pk,
        instrument_ids=[instrument.pk],
        timeframe=TIMEFRAME,
        capital=capital,
        strategy_key="sma_cross",
        params={"fast": 2, "slow": 3},
        settings=settings or None,
    )
    newest = instrument.series.filter(timeframe=TIMEFRAME).values_list("last_ts", flat=True).first()
    Deployment.objects.filter(pk=deployment.pk).update(
        status=Deployment.Status.LIVE, last_bar_ts=newest, peak_equity=deployment.capital, started_at=newest
    )
    deployment.refresh_from_db()
    return deployment
