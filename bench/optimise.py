"""Optimisation speed (issue 4): 1,000 parameter sets of SMA cross over 100,000 candles, 2 cores.

Run: `.venv/bin/python bench/optimise.py [--tpe-trials 200] [--no-record]` from the repository root.

Candles: the first 100,000 of real BTC-USDT and ETH-USDT 1m candles chained (../shared/data/ohlcv),
the ETH block rescaled to continue from the BTC close. Settings: the engine's defaults (cash 10,000,
fee 0.1 %, next-open fills, all equity).

1. grid: 1,000 explicit sets (fast 2..41 x slow 45..285 step 10, all fast < slow), split into 20
   chunks of 50 and run by 2 worker processes, as the Celery tasks split them
   (`trials_evaluate(first_number=...)` per chunk). The workers are started and warmed up first
   (numba compiled or loaded from its cache, candles loaded), as Celery workers are at start;
   the time is from the first chunk submitted to the last result back.
2. the same 1,000 sets in this one process (the per-trial cost, and so the parallel speed-up).
3. TPE: one Optuna study in an SQLite file (RDBStorage), 2 worker processes each running
   `trials_run` on it for half the trials: trials per second, and that every trial landed.
   With `--postgres URL` (a database of its own, e.g. postgres://postgres@127.0.0.1:5432/tp_bench),
   the same again with the study in PostgreSQL, the production path.

Prints one JSON line per measure and appends a section to bench/RESULTS.md.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.backtests.research import optimise  # noqa: E402

OHLCV_DIR = ROOT.parent / "shared" / "data" / "ohlcv"
RESULTS = ROOT / "bench" / "RESULTS.md"
ROWS = 100_000
WORKERS = 2
CHUNK = 50
TARGET_S = 10.0
SETTINGS: dict[str, Any] = {}

_candles: pd.DataFrame | None = None


def hundred_thousand_candles() -> pd.DataFrame:
    btc, eth = (
        pd.read_csv(OHLCV_DIR / f"{name}.csv.gz", usecols=["open", "high", "low", "close", "volume"]).astype("float64")
        for name in ("BTC-USDT_1m", "ETH-USDT_1m")
    )
    eth[["open", "high", "low", "close"]] *= float(btc["close"].iloc[-1]) / float(eth["open"].iloc[0])
    frame = pd.concat([btc, eth], ignore_index=True).iloc[:ROWS]
    frame.index = pd.date_range("2021-01-01", periods=len(frame), freq="min", tz="UTC")
    return frame


def parameter_sets() -> list[dict[str, int]]:
    return [{"fast": fast, "slow": slow} for fast in range(2, 42) for slow in range(45, 295, 10)]


def _worker_start(candles: pd.DataFrame) -> None:
    """Celery's worker_process_init in miniature: keep the candles, warm numba up."""
    global _candles
    _candles = candles
    optimise.trials_evaluate(
        strategy_key="sma_cross",
        params_list=[{"fast": 10, "slow": 30}],
        candles=candles,
        settings=SETTINGS,
        objective="sharpe",
        min_trades=1,
    )


def _grid_chunk(first_number: int, params_list: list[dict[str, int]]) -> int:
    assert _candles is not None
    results = optimise.trials_evaluate(
        strategy_key="sma_cross",
        params_list=params_list,
        candles=_candles,
        settings=SETTINGS,
        objective="sharpe",
        min_trades=1,
        first_number=first_number,
    )
    return len(results)


def _tpe_chunk(storage_url: str, study_name: str, n_trials: int, chunk: int) -> int:
    assert _candles is not None
    results = optimise.trials_run(
        storage_url=storage_url,
        study_name=study_name,
        strategy_key="sma_cross",
        candles=_candles,
        settings=SETTINGS,
        objective="sharpe",
        min_trades=1,
        space={"fast": {"low": 2, "high": 50}, "slow": {"low": 45, "high": 300}},
        n_trials=n_trials,
        chunk=chunk,
    )
    return len(results)


def _ping(barrier: Any) -> int:
    # Returns only once every worker holds a ping: all of them started (and warmed up) before timing.
    barrier.wait(timeout=120)
    return os.getpid()


def pool(candles: pd.DataFrame) -> ProcessPoolExecutor:
    executor = ProcessPoolExecutor(
        max_workers=WORKERS, mp_context=get_context("spawn"), initializer=_worker_start, initargs=(candles,)
    )
    # Start every worker (and so its warm-up) before any timing: one ping per worker, held at a
    # barrier until all of them are running.
    with get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(WORKERS)
        pids = {future.result() for future in [executor.submit(_ping, barrier) for _ in range(WORKERS)]}
    assert len(pids) == WORKERS, pids
    return executor


def bench_grid(executor: ProcessPoolExecutor, sets: list[dict[str, int]]) -> dict[str, Any]:
    started = time.perf_counter()
    futures = [executor.submit(_grid_chunk, first, sets[first : first + CHUNK]) for first in range(0, len(sets), CHUNK)]
    done = sum(future.result() for future in futures)
    seconds = time.perf_counter() - started
    return {
        "measure": "grid_2_workers",
        "trials": done,
        "seconds": round(seconds, 3),
        "trials_per_s": round(done / seconds, 1),
    }


def bench_single(candles: pd.DataFrame, sets: list[dict[str, int]]) -> dict[str, Any]:
    _worker_start(candles)
    started = time.perf_counter()
    done = _grid_chunk(0, sets)
    seconds = time.perf_counter() - started
    return {
        "measure": "grid_1_process",
        "trials": done,
        "seconds": round(seconds, 3),
        "ms_per_trial": round(seconds / done * 1000, 2),
    }


def bench_tpe(executor: ProcessPoolExecutor, trials: int, storage_url: str, label: str) -> dict[str, Any]:
    study = f"bench-{os.getpid()}-{time.time_ns()}"
    optimise.study_create(storage_url, study, seed=1)
    started = time.perf_counter()
    per_worker = trials // WORKERS
    futures = [executor.submit(_tpe_chunk, storage_url, study, per_worker, chunk) for chunk in range(WORKERS)]
    done = sum(future.result() for future in futures)
    seconds = time.perf_counter() - started
    stored = optimise.study_trials(storage_url, study)
    optimise.study_delete(storage_url, study)
    assert len(stored) == done, (len(stored), done)
    best = optimise.best_trial(stored)
    return {
        "measure": f"tpe_2_workers_{label}",
        "trials": done,
        "seconds": round(seconds, 3),
        "trials_per_s": round(done / seconds, 1),
        "best": best.params if best else None,
        "best_sharpe": round(best.value, 4) if best and best.value is not None else None,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def append_results(rows: list[dict[str, Any]], load: tuple[float, float, float]) -> None:
    by = {row["measure"]: row for row in rows}
    grid, single = by["grid_2_workers"], by["grid_1_process"]
    tpe_rows = [
        f"| TPE, {WORKERS} workers sharing one {label} study | {row['trials']:,} | {row['seconds']:.2f} | "
        f"{row['trials_per_s']:.1f} trials/s | - |"
        for label, row in (
            ("SQLite", by.get("tpe_2_workers_sqlite")),
            ("PostgreSQL", by.get("tpe_2_workers_postgresql")),
        )
        if row is not None
    ]
    import optuna

    lines = [
        "",
        "## Optimisation (issue 4)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}; Python {platform.python_version()}, Optuna {optuna.__version__}; load average before the "
        f"run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. `python bench/optimise.py`: SMA cross over {ROWS:,} "
        "real 1m candles (BTC/ETH-USDT chained), engine defaults (fee 0.1 %, next-open fills), objective Sharpe; "
        f"workers started and warmed up before timing; grid split in chunks of {CHUNK} as the Celery tasks do.",
        "",
        "| measure | trials | seconds | rate | target |",
        "|---|---:|---:|---:|---:|",
        f"| grid, {WORKERS} worker processes | {grid['trials']:,} | {grid['seconds']:.2f} | "
        f"{grid['trials_per_s']:.0f} trials/s | <= {TARGET_S:.0f} s |",
        f"| grid, 1 process | {single['trials']:,} | {single['seconds']:.2f} | "
        f"{single['ms_per_trial']:.2f} ms/trial | - |",
        *tpe_rows,
        "",
    ]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tpe-trials", type=int, default=200)
    parser.add_argument("--postgres", metavar="URL", help="also run TPE with the study in this PostgreSQL database")
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    load = os.getloadavg()
    candles = hundred_thousand_candles()
    sets = parameter_sets()
    assert len(sets) == 1_000
    rows = []
    with pool(candles) as executor:
        rows.append(bench_grid(executor, sets))
        print(json.dumps(rows[-1]), flush=True)
        with tempfile.TemporaryDirectory() as folder:
            rows.append(bench_tpe(executor, args.tpe_trials, f"sqlite:///{folder}/optuna.sqlite3", "sqlite"))
        print(json.dumps(rows[-1]), flush=True)
        if args.postgres:
            rows.append(bench_tpe(executor, args.tpe_trials, optimise.sqlalchemy_url(args.postgres), "postgresql"))
            print(json.dumps(rows[-1]), flush=True)
    rows.append(bench_single(candles, sets))
    print(json.dumps(rows[-1]), flush=True)
    if not args.no_record:
        append_results(rows, load)


if __name__ == "__main__":
    main()
