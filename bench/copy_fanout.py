"""One leader fill copied to N paper followers by 2 Celery worker processes on PostgreSQL +
Redis (issue 6: 10,000 follower orders created, submitted and filled within 10 s of the
leader's fill, zero duplicates).

Run from the repository root: `.venv/bin/python bench/copy_fanout.py --followers 10000 --json`.
DATABASE_URL names the PostgreSQL database (default
postgres://postgres@127.0.0.1:5432/tp_bench_copy, created and migrated if needed; the bench's
tables are emptied first), REDIS_URL the Redis database used as broker and channel layer
(default redis://127.0.0.1:6379/7, flushed first: use a database of its own).

Setup (not timed): the instrument bench / CPY/USDT with 300 1m candles; a leader with a paper
account, a running paper deployment and an approved listing; N followers, each a user with a
funded paper account subscribed to the listing (multiplier 0.01, allocation 1,000 USDT, the
copy book a deployment of kind copy), as ``subscription_create`` makes them, written in bulk;
a second listing with a few followers for the warm-up. Then
`celery -A tradingplatform worker -Q orders -c 2 -P prefork` is started (2 processes), and the
warm-up listing's leader trades once so both processes have imported and connected.

Timed: the leader's market order rests on the paper venue; the next bar is stored with
``candles_store_closed``, which announces it: the paper venue fills the leader's order, the
fill is recorded (``fill_record``), and after commit ``fill_recorded`` makes the marketplace
queue the fan-out (one task per MARKETPLACE_FANOUT_CHUNK subscriptions on the orders queue).
The bench waits until every follower has a CopyTrade for that fill. From the rows:

- ``seconds``: the last CopyTrade written (each chunk writes them last, in the transaction
  that placed and filled its orders) - the leader fill's recorded_at.
- ``orders``: copy orders for the fill; ``filled``: those FILLED; ``duplicates``: orders (ours
  or the venue's PaperOrders) beyond one per follower.
- ``first_copy_s``: the first follower fill (stamped when its chunk started) after the leader's.
- ``wall_s``: the bench's own clock from storing the bar to seeing every CopyTrade.
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/tp_bench_copy"
DEFAULT_REDIS = "redis://127.0.0.1:6379/7"
WORKER_LOG = "bench-copy-worker.log"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HISTORY = 300
WARMUP_FOLLOWERS = 20
TABLES = (
    "marketplace_copytrade",
    "marketplace_feeentry",
    "marketplace_review",
    "marketplace_subscription",
    "marketplace_listing",
    "trades_ledgerentry",
    "trades_riskevent",
    "trades_fill",
    "trades_position",
    "trades_order",
    "accounts_paperfill",
    "accounts_paperorder",
    "strategies_tickrun",
    "strategies_signal",
    "strategies_deployment_instruments",
    "strategies_deployment",
    "accounts_paperbalance",
    "accounts_tradingaccount",
)


def setup_django() -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_PG)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS)
    os.environ["DEBUG"] = "false"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tradingplatform.settings.dev"
    sys.path.insert(0, str(ROOT))
    from bench.import_candles import ensure_pg_database

    ensure_pg_database(os.environ["DATABASE_URL"])
    import django

    django.setup()


def candles(bars: int) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(11)
    close = np.round(100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, bars))), 2)
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + 0.05,
            "low": np.minimum(open_, close) - 0.05,
            "close": close,
            "volume": rng.uniform(10, 100, bars),
        },
        index=pd.date_range(T0, periods=bars, freq="1min", tz="UTC"),
    )


def _leader(instrument: Any, n: int) -> tuple[Any, Any]:
    """A leader user, paper account, running deployment and approved listing."""
    from apps.accounts.models import TradingAccount
    from apps.accounts.paper import paper_account_fund
    from apps.marketplace.models import Listing
    from apps.strategies.models import Deployment
    from apps.users.models import User

    user, _ = User.objects.get_or_create(email=f"bench-leader-{n}@example.com", defaults={"display_name": "Leader"})
    account = TradingAccount.objects.create(
        owner=user, name="leader", kind=TradingAccount.Kind.PAPER, exchange_id="paper", connection={}
    )
    paper_account_fund(account=account, balances={"USDT": Decimal("1000000")})
    deployment = Deployment.objects.create(
        owner=user,
        account=account,
        name=f"leader {n}",
        strategy_key="sma_cross",
        timeframe="1m",
        capital=Decimal("100000"),
        status=Deployment.Status.PAPER,
    )
    deployment.instruments.add(instrument)
    listing = Listing.objects.create(
        owner=user, deployment=deployment, title=f"Bench leader {n}", status=Listing.Status.APPROVED, currency="USDT"
    )
    return deployment, listing


def _followers(listing: Any, instrument: Any, count: int, prefix: str) -> list[int]:
    """``count`` followers as subscription_create makes them (a user, a funded paper account, a
    copy book, a subscription), written in bulk."""
    from django.contrib.auth.hashers import make_password
    from django.utils import timezone

    from apps.accounts.models import PaperBalance, TradingAccount
    from apps.marketplace.models import Subscription
    from apps.strategies.models import Deployment
    from apps.users.models import User

    now = timezone.now()
    password = make_password(None)
    users = User.objects.bulk_create(
        User(email=f"{prefix}-{i}@example.com", display_name=f"F{i}", password=password) for i in range(count)
    )
    accounts = TradingAccount.objects.bulk_create(
        TradingAccount(
            owner=u,
            name="copy",
            kind=TradingAccount.Kind.PAPER,
            exchange_id="paper",
            connection={},
            last_reconciled_at=now,
        )
        for u in users
    )
    PaperBalance.objects.bulk_create(
        PaperBalance(account=a, asset=asset, free=Decimal(amount))
        for a in accounts
        for asset, amount in (("USDT", "10000"), ("CPY", "0"))
    )
    books = Deployment.objects.bulk_create(
        Deployment(
            owner=u,
            account=a,
            name=f"Copy: {listing.title}",
            kind=Deployment.Kind.COPY,
            strategy_key="copy",
            timeframe="1m",
            capital=Decimal("1000"),
            status=Deployment.Status.PAPER,
            started_at=now,
        )
        for u, a in zip(users, accounts, strict=True)
    )
    through = Deployment.instruments.through
    through.objects.bulk_create(through(deployment_id=b.pk, instrument_id=instrument.pk) for b in books)
    subs = Subscription.objects.bulk_create(
        Subscription(
            listing=listing,
            follower=u,
            account=a,
            deployment=b,
            sizing_mode=Subscription.Sizing.MULTIPLIER,
            multiplier=Decimal("0.01"),
            allocation=Decimal("1000"),
            started_at=now,
            copying_since=now,
            high_water_mark=Decimal("1000"),
        )
        for u, a, b in zip(users, accounts, books, strict=True)
    )
    return [s.pk for s in subs]


def prepare(count: int) -> tuple[Any, Any, Any, Any]:
    from django.core.management import call_command
    from django.db import connection

    from apps.marketdata import services as market_services
    from apps.marketdata.models import Candle, CandleSeries
    from apps.marketdata.storage import candles_write
    from apps.users.models import User

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + ", ".join(TABLES) + " CASCADE")
    User.objects.filter(email__startswith="bench-").delete()
    User.objects.filter(email__startswith="f-").delete()
    User.objects.filter(email__startswith="w-").delete()
    instrument = market_services.instrument_get_or_create(
        venue="bench", symbol="CPY/USDT", tick_size="0.01", lot_size="0.0001", min_notional="1"
    )
    Candle.objects.filter(instrument=instrument).delete()
    CandleSeries.objects.filter(instrument=instrument).delete()
    frame = candles(HISTORY + 3)
    candles_write(instrument=instrument, timeframe="1m", frame=frame.iloc[:HISTORY], source="bench")
    leader, listing = _leader(instrument, 1)
    _followers(listing, instrument, count, "f")
    warm_leader, warm_listing = _leader(instrument, 2)
    _followers(warm_listing, instrument, WARMUP_FOLLOWERS, "w")
    return instrument, frame, leader, warm_leader


def leader_order(deployment: Any, instrument: Any, bar: int) -> Any:
    from apps.trades.intents import OrderIntent
    from apps.trades.services.orders import order_submit

    return order_submit(
        intent=OrderIntent(
            account_id=deployment.account_id,
            instrument_id=instrument.pk,
            deployment_id=deployment.pk,
            side="buy",
            quantity=Decimal("10"),
            client_order_id=f"bench-leader-{deployment.pk}-{bar}",
            timeframe="1m",
        )
    )


def close_bar(instrument: Any, frame: Any, bar: int) -> None:
    from apps.marketdata import services as market_services

    market_services.candles_store_closed(
        instrument=instrument, timeframe="1m", frame=frame.iloc[bar : bar + 1], source="bench"
    )


def wait_copies(fill_id: int, count: int, timeout: float) -> int:
    from apps.marketplace.models import CopyTrade

    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = CopyTrade.objects.filter(leader_fill_id=fill_id).count()
        if done >= count:
            return done
        time.sleep(0.05)
    return done


def measure(fill: Any, count: int) -> dict[str, Any]:
    from django.db.models import Count, Max, Min

    from apps.accounts.models import PaperOrder
    from apps.marketplace.models import CopyTrade
    from apps.trades.models import Fill, Order

    orders = Order.objects.filter(copy_trade__leader_fill=fill)
    fills = Fill.objects.filter(order__in=orders).aggregate(first=Min("recorded_at"), n=Count("pk"))
    # A chunk's rows are stamped when it starts; its CopyTrades are the last rows it writes
    # before committing, so the newest of them is when the last copy was done.
    fills["last"] = CopyTrade.objects.filter(leader_fill=fill).aggregate(last=Max("created_at"))["last"]
    per_account = Order.objects.filter(source="copy").values("account_id").annotate(n=Count("pk")).filter(n__gt=1)
    venue_dupes = (
        PaperOrder.objects.filter(client_order_id__startswith="tpc")
        .values("account_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    statuses: dict[str, int] = {}
    for row in CopyTrade.objects.filter(leader_fill=fill).values("status").annotate(n=Count("pk")):
        statuses[row["status"]] = row["n"]
    return {
        "followers": count,
        "seconds": round((fills["last"] - fill.recorded_at).total_seconds(), 3) if fills["last"] else None,
        "first_copy_s": round((fills["first"] - fill.recorded_at).total_seconds(), 3) if fills["first"] else None,
        "orders": orders.count(),
        "filled": orders.filter(status="filled").count(),
        "fills": fills["n"],
        "duplicates": sum(r["n"] - 1 for r in per_account) + sum(r["n"] - 1 for r in venue_dupes),
        "copies": statuses,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--followers", type=int, default=10000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.followers < 1:
        parser.error("--followers must be at least 1")
    setup_django()
    import redis
    from django.conf import settings
    from django.db import connections

    from apps.trades.models import Fill

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    (ROOT / "var").mkdir(exist_ok=True)
    instrument, frame, leader, warm_leader = prepare(args.followers)
    connections.close_all()
    from bench.workers import start_workers, stop_workers, wait_ready

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tradingplatform.settings.dev"}
    worker = start_workers(env, queues="orders", log=WORKER_LOG)
    try:
        wait_ready(log=WORKER_LOG)
        # Warm-up: the other listing's leader trades once (imports, connections in both processes).
        order = leader_order(warm_leader, instrument, HISTORY)
        close_bar(instrument, frame, HISTORY)
        warm_fill = Fill.objects.get(order=order)
        if wait_copies(warm_fill.pk, WARMUP_FOLLOWERS, 120.0) < WARMUP_FOLLOWERS:
            raise RuntimeError("the warm-up fan-out did not finish; see var/bench-copy-worker.log")
        # Timed: the leader's order fills when the next bar closes.
        order = leader_order(leader, instrument, HISTORY + 1)
        started = time.perf_counter()
        close_bar(instrument, frame, HISTORY + 1)
        fill = Fill.objects.get(order=order)
        done = wait_copies(fill.pk, args.followers, args.timeout)
        waited = time.perf_counter()
        if done < args.followers:
            raise RuntimeError(f"only {done} of {args.followers} copies in {args.timeout:g} s")
        result = measure(fill, args.followers)
        result["chunk"] = settings.MARKETPLACE_FANOUT_CHUNK
        result["wall_s"] = round(waited - started, 3)
        result["cpus"] = os.cpu_count()
        result["load_average"] = round(os.getloadavg()[0], 2)
    finally:
        stop_workers(worker)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
