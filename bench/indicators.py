"""Our indicators against TA-Lib on 1,000,000 one-minute candles (issue 3).

Run: `.venv/bin/python bench/indicators.py` from the repository root. Builds the candles by
chaining real 1m candles (BTC-USDT, ETH-USDT from ../shared/data/ohlcv), each copy rescaled to
continue from the previous close, times each indicator (numba warmed up first; best of 5), prints
one JSON line per indicator and appends a section to bench/RESULTS.md.
"""

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import talib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.marketdata import indicators as ta  # noqa: E402

OHLCV_DIR = ROOT.parent / "shared" / "data" / "ohlcv"
RESULTS = ROOT / "bench" / "RESULTS.md"
ROWS = 1_000_000
REPEATS = 5


def million_candles() -> pd.DataFrame:
    blocks = [
        pd.read_csv(OHLCV_DIR / f"{name}.csv.gz", usecols=["open", "high", "low", "close", "volume"])
        for name in ("BTC-USDT_1m", "ETH-USDT_1m")
    ]
    pieces: list[pd.DataFrame] = []
    rows = 0
    last_close = None
    while rows < ROWS:
        block = blocks[len(pieces) % 2].astype("float64")
        if last_close is not None:
            block[["open", "high", "low", "close"]] *= last_close / block["open"].iloc[0]
        pieces.append(block)
        rows += len(block)
        last_close = float(block["close"].iloc[-1])
    frame = pd.concat(pieces, ignore_index=True).iloc[:ROWS]
    frame.index = pd.date_range("2020-01-01", periods=ROWS, freq="min", tz="UTC")
    return frame


def best_ms(ours: Callable[[], object], reference: Callable[[], object]) -> tuple[float, float]:
    """Best of REPEATS for each, the two alternating so that load from other processes on a
    shared machine falls on both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS):
        for call, sink in ((ours, times[0]), (reference, times[1])):
            start = time.perf_counter()
            call()
            sink.append(time.perf_counter() - start)
    return min(times[0]) * 1000.0, min(times[1]) * 1000.0


def cases(c: pd.DataFrame) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    h, lo, cl = c["high"], c["low"], c["close"]
    hn, ln, cn = h.to_numpy(), lo.to_numpy(), cl.to_numpy()
    return {
        "sma": (lambda: ta.sma(cl, 20), lambda: talib.SMA(cn, 20)),
        "ema": (lambda: ta.ema(cl, 20), lambda: talib.EMA(cn, 20)),
        "rsi": (lambda: ta.rsi(cl, 14), lambda: talib.RSI(cn, 14)),
        "macd": (lambda: ta.macd(cl, 12, 26, 9), lambda: talib.MACD(cn, 12, 26, 9)),
        "bbands": (lambda: ta.bbands(cl, 20, 2.0), lambda: talib.BBANDS(cn, 20, 2.0, 2.0, talib.MA_Type.SMA)),
        "atr": (lambda: ta.atr(h, lo, cl, 14), lambda: talib.ATR(hn, ln, cn, 14)),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    candles = million_candles()
    results = {}
    for name, (ours, reference) in cases(candles).items():
        ours()  # compile (or load the numba cache) outside the timing
        reference()
        ours_ms, talib_ms = best_ms(ours, reference)
        results[name] = {
            "ours_ms": round(ours_ms, 3),
            "talib_ms": round(talib_ms, 3),
            "ratio": round(ours_ms / talib_ms, 2),
        }
        print(json.dumps({"indicator": name, **results[name]}))
    append_results(results)


def append_results(results: dict[str, dict[str, float]]) -> None:
    lines = [
        "",
        "## Indicators (issue 3)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{cpu_model()}; Python {platform.python_version()}, TA-Lib {talib.__version__}. "
        f"{ROWS:,} one-minute candles (real BTC/ETH-USDT 1m chained), best of {REPEATS} alternating with TA-Lib, "
        "numba warmed up; ours returns pandas objects, TA-Lib is called on NumPy arrays. "
        "`python bench/indicators.py`.",
        "",
        "| indicator | ours ms | TA-Lib ms | ratio |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {r['ours_ms']:.2f} | {r['talib_ms']:.2f} | {r['ratio']:.2f} |" for name, r in results.items()),
        "",
    ]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
