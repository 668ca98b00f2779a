"""Strategy signals and the look-ahead check on 1,000,000 one-minute candles (issue 4).

Run: `.venv/bin/python bench/strategies.py` from the repository root. Uses the same candles as
bench/indicators.py (real BTC/ETH-USDT 1m chained). For each strategy: `signals()` on the whole
series (compute + normalisation, what the engine calls) and `lookahead_check` with its defaults;
numba warmed up first, best of 5. Prints one JSON line per strategy and appends a section to
bench/RESULTS.md.

Targets: sma_cross's signals are a small part of the engine's 0.25 s budget for a whole backtest;
the look-ahead check of sma_cross stays under 0.5 s.
"""

import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from indicators import ROWS, cpu_model, million_candles  # noqa: E402

from apps.strategies.base import Strategy, signals  # noqa: E402
from apps.strategies.lookahead import lookahead_check  # noqa: E402
from apps.strategies.registry import get_strategy  # noqa: E402
from apps.strategies.rules import compile_rules, parse_condition_text  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
REPEATS = 5


def best_ms(call: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times) * 1000.0


def strategies() -> dict[str, Strategy]:
    rules = compile_rules(
        {
            "enter_long": parse_condition_text("rsi(14) < 30 and close > sma(200)"),
            "exit_long": parse_condition_text("rsi(14) > 70"),
        }
    )
    htf = get_strategy("htf_trend_filter", member="sma_cross", higher_timeframe="1h", ma_period=50)
    htf.timeframe = "1m"
    return {
        "sma_cross": get_strategy("sma_cross", fast=10, slow=30),
        "ema_cross": get_strategy("ema_cross"),
        "rsi_mean_reversion": get_strategy("rsi_mean_reversion"),
        "macd_momentum": get_strategy("macd_momentum"),
        "rules (rsi + sma)": rules,
        "htf_trend_filter (sma_cross, 1h)": htf,
    }


def main() -> None:
    candles = million_candles()
    results: dict[str, dict[str, float]] = {}
    for name, strategy in strategies().items():
        signals(strategy, candles.iloc[:5000])  # numba compile / cache load outside the timing
        signals_ms = best_ms(functools.partial(signals, strategy, candles))
        check_ms = best_ms(functools.partial(lookahead_check, strategy, candles))
        report = lookahead_check(strategy, candles)
        results[name] = {"signals_ms": round(signals_ms, 2), "lookahead_ms": round(check_ms, 2)}
        print(json.dumps({"strategy": name, **results[name], "checked": report.checked, "biased": report.is_biased}))
    append_results(results)


def append_results(results: dict[str, dict[str, float]]) -> None:
    load = os.getloadavg()[0]
    lines = [
        "",
        "## Strategy signals and the look-ahead check (issue 4)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs, {cpu_model()}; Python "
        f"{platform.python_version()}; load average {load:.1f} when it ran. {ROWS:,} one-minute candles (real "
        f"BTC/ETH-USDT 1m chained), best of {REPEATS}, numba warmed up. `python bench/strategies.py`.",
        "",
        "| strategy | signals() ms | lookahead_check ms |",
        "|---|---:|---:|",
        *(f"| {name} | {r['signals_ms']:.1f} | {r['lookahead_ms']:.1f} |" for name, r in results.items()),
        "",
    ]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
