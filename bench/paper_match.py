"""The paper venue matching one closed bar against 1,000 resting orders on PostgreSQL
(issue 5: "well under a second").

Run from the repository root: `.venv/bin/python bench/paper_match.py` (`--orders N`, `--runs N`).
DATABASE_URL names the PostgreSQL database (default
postgres://postgres@127.0.0.1:5432/tp_bench_paper, created and migrated if needed). Prints one
JSON object: seconds per bar for each scenario (median and worst of the runs).

Setup (not timed): N paper accounts of one user, each funded, on the instrument benchpaper /
BTC/USDT with one stored 1h bar. Scenarios, each timed as one `paper_bar_closed` call inside a
transaction that is then rolled back (so every run sees the same book):

- ``fill``: every account holds a sized market entry with a bracket attached (stop_loss 1 %,
  take_profit 1 %); the bar fills every entry, creates 2N children, fills every stop in the
  same bar and cancels every target: N entry fills + N stop fills, 2N inserts, 3N updates.
- ``rest``: every account holds a buy limit far below the bar: nothing fills (the common bar).

The after-commit signal (paper_orders_changed) is not part of the timing (it runs after commit,
in the caller).
"""

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/tp_bench_paper"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def setup_django() -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_PG)
    os.environ.pop("REDIS_URL", None)
    os.environ["DEBUG"] = "false"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tradingplatform.settings.dev"
    sys.path.insert(0, str(ROOT))
    from bench.import_candles import ensure_pg_database

    ensure_pg_database(os.environ["DATABASE_URL"])
    import django

    django.setup()


def prepare(scenario: str, orders: int) -> Any:
    """A fresh instrument per scenario with N funded accounts, each holding one order."""
    import pandas as pd
    from django.core.management import call_command

    from apps.accounts.brokers.base import OrderRequest
    from apps.accounts.models import PaperOrder, TradingAccount
    from apps.accounts.paper import PaperBroker, paper_account_fund
    from apps.marketdata import services
    from apps.marketdata.storage import candles_write
    from apps.users.models import User

    call_command("migrate", verbosity=0)
    instrument = services.instrument_get_or_create(venue=f"benchpaper-{scenario}", symbol="BTC/USDT")
    frame = pd.DataFrame(
        {"open": [100.0], "high": [101.0], "low": [99.0], "close": [100.0], "volume": [1000.0]},
        index=pd.DatetimeIndex([T0], name="ts"),
    )
    candles_write(instrument=instrument, timeframe="1h", frame=frame)
    user, _ = User.objects.get_or_create(email="bench-paper@example.com", defaults={"display_name": "Bench"})
    PaperOrder.objects.filter(instrument=instrument).delete()
    for i in range(orders):
        account, _ = TradingAccount.objects.get_or_create(
            owner=user, name=f"bench-paper-{i}", defaults={"kind": "paper", "connection": {}}
        )
        paper_account_fund(account=account, balances={"USDT": Decimal(10_000), "BTC": Decimal(0)})
        if scenario == "fill":
            request = OrderRequest(
                client_order_id=f"bench-{scenario}-{i}", symbol=f"BTC/USDT@benchpaper-{scenario}", side="buy",
                type="market", quantity=Decimal(0), timeframe="1h",
                sizing={"mode": "fixed_fraction", "equity": 10_000.0, "fraction": 0.5},
                attached={"stop_loss": 0.01, "take_profit": 0.01},
            )  # fmt: skip
        else:
            request = OrderRequest(
                client_order_id=f"bench-{scenario}-{i}", symbol=f"BTC/USDT@benchpaper-{scenario}", side="buy",
                type="limit", quantity=Decimal(1), price=Decimal(50), timeframe="1h",
            )  # fmt: skip
        PaperBroker(int(account.pk)).submit(request)
    return instrument


def timed_bar(instrument: Any) -> tuple[float, int]:
    from django.db import transaction

    from apps.accounts.paper import paper_bar_closed

    bar = {"open": 100.0, "high": 100.5, "low": 98.5, "close": 100.0, "volume": 1000.0}
    with transaction.atomic():
        started = time.perf_counter()
        changes = paper_bar_closed(instrument_id=instrument.pk, timeframe="1h", ts=T0 + timedelta(hours=1), bar=bar)
        elapsed = time.perf_counter() - started
        transaction.set_rollback(True)
    return elapsed, sum(len(ids) for ids in changes.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("bench/paper_match.py measures PostgreSQL: set DATABASE_URL=postgres://...")
    result: dict[str, Any] = {"orders": args.orders, "runs": args.runs}
    for scenario in ("fill", "rest"):
        instrument = prepare(scenario, args.orders)
        timed_bar(instrument)  # warm-up: connection, statement caches, numba's compiled kernels
        runs = [timed_bar(instrument) for _ in range(args.runs)]
        seconds = [s for s, _ in runs]
        result[scenario] = {
            "median_s": round(statistics.median(seconds), 4),
            "max_s": round(max(seconds), 4),
            "orders_changed": runs[0][1],
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
