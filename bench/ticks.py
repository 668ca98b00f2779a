"""1,000 paper deployments on one instrument ticked for one closed candle by 2 Celery worker
processes on PostgreSQL + Redis (issue 5: >= 200 ticks/s; p95 from candle announced to order
submitted <= 50 ms per deployment once a worker picks it up).

Run from the repository root: `.venv/bin/python bench/ticks.py --deployments 1000 --json`.
DATABASE_URL names the PostgreSQL database (default
postgres://postgres@127.0.0.1:5432/tp_bench_ticks, created and migrated if needed; the bench's
tables are emptied first), REDIS_URL the Redis database used as broker and channel layer
(default redis://127.0.0.1:6379/6, flushed first: use a database of its own).

Setup (not timed): one user, N paper accounts (one per deployment, as N users would have) with
their balances, the instrument bench / TCK/USDT with 300 1m candles, a rule strategy whose
condition (``close > 0``) signals on every bar, and N deployments of it (fixed fraction sizing,
a 2 % stop loss) started in paper mode. Then `celery -A tradingplatform worker -Q ticks,orders
-c 2 -P prefork` is started (2 worker processes), its start-up reconciliation of every account
(queued by ``worker_ready``) is left to finish, and it is warmed up: W extra deployments are
ticked for one bar first (imports, numba, connections, the per-process candle and signal
caches), then stopped.

``--warm-bars N`` (steady state): the timed deployments first tick for N earlier bars, untimed,
their trading undone after each (orders, fills, positions, the paper book, balances), so the
worker processes hold their per-deployment plans as they do once a deployment has been running
for a few bars; 0 measures the first bar after the workers start. ``--signalling S``: only the
first share S of the deployments signal (the others run a strategy that never does).

Timed: the next closed bar is stored with `candles_store_closed`, which announces it after
commit; the receiver lets the paper venue match the bar and queues one tick per running
deployment (N tasks on the ``ticks`` queue). The bench waits until every deployment's TickRun
for that bar is finished. From the rows:

- ``ticks_per_s``: N / (last TickRun finished - candle announced): end to end, queueing included.
- ``worker_ticks_per_s``: N / (last finished - first started): the workers' throughput.
- ``p50_ms`` / ``p95_ms``: per deployment, order submitted (its entry Order sent to the paper
  venue: ``sent_at``, else written: ``created_at``) - the tick picked up by a worker (TickRun
  ``started_at``).
- ``p95_from_announce_ms``: the same from the candle's announcement (includes the queue wait).
- ``orders``: entry orders for the bar; ``duplicates``: orders beyond one per deployment (0).
"""

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/tp_bench_ticks"
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
WORKER_LOG = "bench-ticks-worker.log"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HISTORY = 300
WARMUP_DEPLOYMENTS = 8
MAX_WARM_BARS = 10
# What a tick's trading writes (undone between --warm-bars bars), and everything the bench makes.
TRADING_TABLES = (
    "trades_ledgerentry",
    "trades_riskevent",
    "trades_fill",
    "trades_position",
    "trades_order",
    "strategies_signal",
    "accounts_paperfill",
    "accounts_paperorder",
)
TABLES = (
    *TRADING_TABLES,
    "strategies_tickrun",
    "strategies_deployment_instruments",
    "strategies_deployment",
    "strategies_ruleset",
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

    rng = np.random.default_rng(5)
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


def prepare(count: int, signalling: float = 1.0) -> tuple[Any, list[int], list[int], Any]:
    """Empty the bench tables; create the instrument, accounts and deployments (started)."""
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from apps.accounts.models import PaperBalance, TradingAccount
    from apps.marketdata import services as market_services
    from apps.marketdata.models import Candle, CandleSeries
    from apps.marketdata.storage import candles_write
    from apps.strategies import services as strategy_services
    from apps.strategies.models import Deployment
    from apps.strategies.services import deployments
    from apps.users.models import User

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + ", ".join(TABLES) + " CASCADE")
    instrument = market_services.instrument_get_or_create(
        venue="bench", symbol="TCK/USDT", tick_size="0.01", lot_size="0.0001", min_notional="1"
    )
    Candle.objects.filter(instrument=instrument).delete()
    CandleSeries.objects.filter(instrument=instrument).delete()
    frame = candles(HISTORY + 2 + MAX_WARM_BARS)
    candles_write(instrument=instrument, timeframe="1m", frame=frame.iloc[:HISTORY], source="bench")
    user, _ = User.objects.get_or_create(email="bench-ticks@example.com", defaults={"display_name": "Bench"})
    rules = strategy_services.rules_normalise(conditions={"enter_long": "close > 0"})
    rule_set = strategy_services.rule_set_create(owner=user, name="always", rules=rules)
    quiet_rules = strategy_services.rules_normalise(conditions={"enter_long": "close < 0"})
    quiet = strategy_services.rule_set_create(owner=user, name="never", rules=quiet_rules)
    total = count + WARMUP_DEPLOYMENTS
    costs = {"fee": 0.001, "maker_fee": None, "fee_fixed": 0.0, "slippage": "none", "slippage_bps": 0.0, "impact": 0.1}
    accounts = TradingAccount.objects.bulk_create(
        TradingAccount(
            owner=user,
            name=f"paper {i}",
            kind=TradingAccount.Kind.PAPER,
            exchange_id="paper",
            connection={"costs": costs, "allow_short": True},
        )
        for i in range(total)
    )
    PaperBalance.objects.bulk_create(
        PaperBalance(account=a, asset=asset, free=Decimal(amount))
        for a in accounts
        for asset, amount in (("USDT", "100000"), ("TCK", "0"))
    )
    template = deployments.deployment_create(
        owner=user,
        account_id=accounts[0].pk,
        instrument_ids=[instrument.pk],
        timeframe="1m",
        capital=Decimal("10000"),
        rule_set_id=rule_set.pk,
        settings={"sizing": {"mode": "fixed_fraction", "fraction": 0.5}, "exits": {"stop_loss": 0.02}},
    )
    now = timezone.now()
    last = frame.index[HISTORY - 1].to_pydatetime()
    # The first ``signalling`` share of the timed deployments signal on every bar, the others
    # never (a strategy whose condition is never true: a tick that decides and orders nothing).
    orders_until = WARMUP_DEPLOYMENTS + round(signalling * count)
    copies = Deployment.objects.bulk_create(
        Deployment(
            owner=user,
            account=account,
            name=f"bench {i}",
            strategy_key=template.strategy_key,
            params=template.params,
            rule_set=rule_set if i < orders_until else quiet,
            rules=template.rules if i < orders_until else quiet.rules,
            timeframe="1m",
            capital=template.capital,
            settings=template.settings,
            risk=template.risk,
            status=Deployment.Status.DRAFT,
        )
        for i, account in enumerate(accounts[1:], start=1)
    )
    everyone = [template, *copies]
    through = Deployment.instruments.through
    through.objects.bulk_create(through(deployment_id=d.pk, instrument_id=instrument.pk) for d in copies)
    ids = [d.pk for d in everyone]
    warm, timed = ids[:WARMUP_DEPLOYMENTS], ids[WARMUP_DEPLOYMENTS:]
    Deployment.objects.filter(pk__in=warm).update(
        status=Deployment.Status.PAPER, fence=1, started_at=now, last_bar_ts=last, peak_equity=Decimal("10000")
    )
    return instrument, warm, timed, frame


def trading_reset() -> None:
    """Undo the timed deployments' trading (orders, fills, positions, the paper book, balances)
    between steady-state warm-up bars; their TickRuns and the workers' caches stay."""
    from django.db import connection

    from apps.accounts.models import PaperBalance

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + ", ".join(TRADING_TABLES) + " CASCADE")
    PaperBalance.objects.filter(asset="USDT").update(free=Decimal("100000"), locked=0)
    PaperBalance.objects.exclude(asset="USDT").update(free=0, locked=0)


def wait_reconciled(timeout: float = 300.0) -> None:
    """The worker's start-up reconciliation (one task per account, queued by ``worker_ready``)
    runs on the same processes: wait for it, so it is not timed as part of the ticks."""
    from apps.accounts.models import TradingAccount

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not TradingAccount.objects.filter(last_reconciled_at__isnull=True).exists():
            return
        time.sleep(0.2)
    raise RuntimeError("the start-up reconciliation did not finish; see var/bench-ticks-worker.log")


def announce(instrument: Any, frame: Any) -> None:
    from apps.marketdata import services as market_services

    market_services.candles_store_closed(instrument=instrument, timeframe="1m", frame=frame, source="bench")


def wait_ticks(ids: list[int], bar: datetime, timeout: float) -> int:
    from apps.strategies.models import TickRun

    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = TickRun.objects.filter(deployment_id__in=ids, bar_ts=bar, finished_at__isnull=False).count()
        if done >= len(ids):
            return done
        time.sleep(0.05)
    return done


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def measure(ids: list[int], bar: datetime) -> dict[str, Any]:
    from apps.strategies.models import TickRun
    from apps.trades.models import Order

    runs = {
        r["deployment_id"]: r
        for r in TickRun.objects.filter(deployment_id__in=ids, bar_ts=bar).values(
            "deployment_id", "announced_at", "started_at", "finished_at", "outcome", "duration_ms"
        )
    }
    orders = list(
        Order.objects.filter(deployment_id__in=ids, bar_ts=bar, leg="entry").values(
            "deployment_id", "created_at", "sent_at", "status"
        )
    )
    picked: list[float] = []
    announced: list[float] = []
    for order in orders:
        run = runs.get(order["deployment_id"])
        if run is None:
            continue
        submitted = order["sent_at"] or order["created_at"]
        picked.append((submitted - run["started_at"]).total_seconds() * 1000.0)
        if run["announced_at"] is not None:
            announced.append((submitted - run["announced_at"]).total_seconds() * 1000.0)
    first_announce = min(r["announced_at"] for r in runs.values() if r["announced_at"] is not None)
    first_start = min(r["started_at"] for r in runs.values())
    last_finish = max(r["finished_at"] for r in runs.values() if r["finished_at"] is not None)
    outcomes: dict[str, int] = {}
    for run in runs.values():
        outcomes[run["outcome"]] = outcomes.get(run["outcome"], 0) + 1
    per_deployment: dict[int, int] = {}
    for order in orders:
        per_deployment[order["deployment_id"]] = per_deployment.get(order["deployment_id"], 0) + 1
    return {
        "deployments": len(ids),
        "ticks": len(runs),
        "ticks_per_s": round(len(runs) / (last_finish - first_announce).total_seconds(), 1),
        "worker_ticks_per_s": round(len(runs) / (last_finish - first_start).total_seconds(), 1),
        "p50_ms": round(percentile(picked, 0.5), 2),
        "p95_ms": round(percentile(picked, 0.95), 2),
        "p95_from_announce_ms": round(percentile(announced, 0.95), 2),
        "tick_duration_p50_ms": round(
            statistics.median(r["duration_ms"] for r in runs.values() if r["duration_ms"]), 2
        ),
        "orders": len(orders),
        "orders_sent": sum(1 for o in orders if o["sent_at"] is not None),
        "duplicates": sum(n - 1 for n in per_deployment.values()),
        "outcomes": outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--signalling",
        type=float,
        default=1.0,
        help="share of the deployments whose strategy signals (and orders) on the bar; the rest decide nothing",
    )
    parser.add_argument(
        "--warm-bars",
        type=int,
        default=0,
        help="bars the timed deployments tick (untimed, trading undone) before the timed one: "
        "0 measures the first bar after the workers start, 2 or more the steady state",
    )
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if not 0 <= args.warm_bars <= MAX_WARM_BARS:
        parser.error(f"--warm-bars must be between 0 and {MAX_WARM_BARS}")
    if not 0.0 <= args.signalling <= 1.0:
        parser.error("--signalling is a share between 0 and 1")
    setup_django()
    import redis
    from django.db import connections
    from django.utils import timezone

    from apps.strategies.models import Deployment

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    (ROOT / "var").mkdir(exist_ok=True)
    instrument, warm, timed, frame = prepare(args.deployments, args.signalling)
    connections.close_all()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tradingplatform.settings.dev"}
    from bench.workers import start_workers, stop_workers, wait_ready

    worker = start_workers(env, queues="ticks,orders", log=WORKER_LOG)
    try:
        wait_ready(log=WORKER_LOG)
        wait_reconciled()
        # Warm-up: a few deployments ticked for bar HISTORY, through the same path.
        announce(instrument, frame.iloc[HISTORY : HISTORY + 1])
        warm_bar = frame.index[HISTORY].to_pydatetime()
        if wait_ticks(warm, warm_bar, 120.0) < len(warm):
            raise RuntimeError("the warm-up ticks did not finish; see var/bench-ticks-worker.log")
        Deployment.objects.filter(pk__in=warm).update(status=Deployment.Status.STOPPED, fence=2)
        Deployment.objects.filter(pk__in=timed).update(
            status=Deployment.Status.PAPER,
            fence=1,
            started_at=timezone.now(),
            last_bar_ts=warm_bar,
            peak_equity=Decimal("10000"),
        )
        # Steady state (--warm-bars): the timed deployments tick for earlier bars first, so the
        # worker processes hold their per-deployment plans as they do after a few minutes of
        # running; their trading is undone after each such bar, so that every timed tick
        # decides on a flat account again.
        for k in range(args.warm_bars):
            warm_bar = frame.index[HISTORY + 1 + k].to_pydatetime()
            announce(instrument, frame.iloc[HISTORY + 1 + k : HISTORY + 2 + k])
            if wait_ticks(timed, warm_bar, args.timeout) < len(timed):
                raise RuntimeError("the steady-state warm-up ticks did not finish")
            trading_reset()
        # Timed: the next bar closes.
        first = HISTORY + 1 + args.warm_bars
        bar = frame.index[first].to_pydatetime()
        started = time.perf_counter()
        announce(instrument, frame.iloc[first : first + 1])
        enqueued = time.perf_counter()
        done = wait_ticks(timed, bar, args.timeout)
        waited = time.perf_counter()
        if done < len(timed):
            raise RuntimeError(f"only {done} of {len(timed)} ticks finished in {args.timeout:g} s")
        result = measure(timed, bar)
        result["warm_bars"] = args.warm_bars
        result["signalling"] = args.signalling
        result["announce_and_enqueue_s"] = round(enqueued - started, 3)
        result["wall_s"] = round(waited - started, 3)
        result["cpus"] = os.cpu_count()
        result["load_average"] = round(os.getloadavg()[0], 2)
    finally:
        stop_workers(worker)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
