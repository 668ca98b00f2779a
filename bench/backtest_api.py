"""A backtest of 1,000,000 one-minute candles stored in PostgreSQL, started from the API and
finished: stored, and the result page's data fetched (issue 4, target: at most 3 s).

Run from the repository root: `.venv/bin/python bench/backtest_api.py` (`--no-record` to skip
writing bench/RESULTS.md, `--runs N` for more timed runs). DATABASE_URL names the PostgreSQL
database (default postgres://postgres@127.0.0.1:5432/tp_bench, created and migrated if needed).

Setup (not timed): the 1,000,000-bar CSV.gz of bench/import_candles.py (real BTC/ETH-USDT 1m
candles chained) is imported once with `services.candles_import_file` into the instrument
bench / BTC/USDT; one warm-up backtest runs first (numba compiles on first use; a worker does that
once at start, see DESIGN.md).

Timed, per run, in this process: POST /api/v1/backtests/ through Django's test client with a
user's session (sma_cross 10/30, fee 0.001, next-open fills, the whole series), then the task
body `apps.backtests.tasks.backtest_run(id)` called directly (the in-process stand-in for the
Celery worker: the same code, without the broker hop), then GET /api/v1/backtests/{id}/ until
succeeded, then the result page's data: the detail, the equity curves and the first page of
trades. The breakdown comes from the backtest's own `timings` (load, look-ahead check, engine,
curves, trades COPY) plus what surrounds them (claim, progress, the final store). Redis is not
used (embedded mode; progress events go to the in-memory layer).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
DEFAULT_PG = "postgres://postgres@127.0.0.1:5432/tp_bench"
ROWS = 1_000_000
TARGET_SECONDS = 3.0


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


def prepare() -> tuple[Any, Any]:
    """The bench instrument with its million 1m candles, and a user (both created once)."""
    from django.core.management import call_command

    from apps.marketdata import services
    from apps.marketdata.models import CandleSeries
    from apps.users.models import User
    from bench.import_candles import build_file

    call_command("migrate", verbosity=0)
    instrument = services.instrument_get_or_create(venue="bench", symbol="BTC/USDT")
    series = CandleSeries.objects.filter(instrument=instrument, timeframe="1m").first()
    if series is None or series.count != ROWS:
        with tempfile.TemporaryDirectory(prefix="bench-backtest-") as folder:
            path = Path(folder) / "BTC-USDT_1m.csv.gz"
            build_file(path)
            services.candles_import_file(path=path, instrument=instrument, timeframe="1m")
    user, _ = User.objects.get_or_create(email="bench@example.com", defaults={"display_name": "Bench"})
    return instrument, user


def one_run(client: Any, instrument: Any) -> dict[str, Any]:
    from apps.backtests import tasks
    from apps.backtests.models import Backtest

    body = {
        "strategy": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "instrument": instrument.pk,
        "timeframe": "1m",
        "settings": {"cash": 10_000, "fill": "next_open", "costs": {"fee": 0.001}},
    }
    started = time.perf_counter()
    response = client.post("/api/v1/backtests/", body, format="json")
    assert response.status_code == 201, response.content
    backtest_id = response.json()["id"]
    posted = time.perf_counter()
    tasks.backtest_run(backtest_id)
    ran = time.perf_counter()
    # The task body ran in this process above, so the job is finished: one read, no polling.
    detail = client.get(f"/api/v1/backtests/{backtest_id}/").json()
    assert detail["status"] == "succeeded", detail["error"]
    equity = client.get(f"/api/v1/backtests/{backtest_id}/equity/").json()
    trades = client.get(f"/api/v1/backtests/{backtest_id}/trades/", {"limit": 50}).json()
    finished = time.perf_counter()
    assert equity["bars"] == detail["candles_count"] == ROWS
    assert trades["count"] == detail["metrics"]["trades"]
    timings = Backtest.objects.get(pk=backtest_id).timings
    phases = sum(timings.values()) / 1000.0
    return {
        "id": backtest_id,
        "total_s": finished - started,
        "post_s": posted - started,
        "task_s": ran - posted,
        "fetch_s": finished - ran,
        "load_s": timings["load_ms"] / 1000.0,
        "lookahead_s": timings["lookahead_ms"] / 1000.0,
        "engine_s": timings["engine_ms"] / 1000.0,
        "curves_s": timings["curves_ms"] / 1000.0,
        "store_trades_s": timings["store_trades_ms"] / 1000.0,
        "task_other_s": (ran - posted) - phases,
        "trades": detail["metrics"]["trades"],
        "points": equity["points"],
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def record(runs: list[dict[str, Any]], note: str) -> None:
    best = min(runs, key=lambda r: r["total_s"])
    median = statistics.median(r["total_s"] for r in runs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = "\n".join(
        f"| {name} | {best[key]:.3f} |"
        for name, key in (
            ("POST /api/v1/backtests/ (validate, store, queue)", "post_s"),
            ("task: load 1,000,000 candles (storage.candles_frame)", "load_s"),
            ("task: look-ahead check", "lookahead_s"),
            ("task: engine (signals, fills, metrics, frames)", "engine_s"),
            ("task: equity/drawdown curves downsampled", "curves_s"),
            ("task: store trades (binary COPY)", "store_trades_s"),
            ("task: claim, progress, store equity + metrics", "task_other_s"),
            ("GET detail + equity + first page of trades", "fetch_s"),
        )
    )
    total = f"{best['total_s']:.3f}** (median {median:.3f}; target <= {TARGET_SECONDS:g})"
    section = f"""
## Backtest from the API, 1,000,000 candles in PostgreSQL (issue 4)

{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs, {cpu_model()}; Python {platform.python_version()};
load average {load:.1f} at the end. `python bench/backtest_api.py`: sma_cross 10/30, fee 0.001, next-open fills
on the bench instrument's 1,000,000 1m candles (real BTC/ETH-USDT chained), {best["trades"]:,} trades, curves of
{best["points"]:,} points. Task body called in-process (no broker hop), test client with a session.

| measure (best of {len(runs)} runs) | seconds |
|---|---:|
{rows}
| **total: POST to the result page's data** | **{total} |

{note}
"""
    with RESULTS.open("a") as out:
        out.write(section)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    setup_django()
    from rest_framework.test import APIClient

    instrument, user = prepare()
    client = APIClient(SERVER_NAME="localhost")
    client.force_authenticate(user)
    one_run(client, instrument)  # warm-up: numba compiles, caches fill
    runs = [one_run(client, instrument) for _ in range(args.runs)]
    for run in runs:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in run.items()}))
    if not args.no_record:
        record(runs, args.note)


if __name__ == "__main__":
    main()
