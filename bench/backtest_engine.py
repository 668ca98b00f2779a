"""The platform's backtest engine against a hand-fused numba loop, vectorbt, backtesting.py and
backtrader (issue 4): speed, and agreement of trades and final equity under the same rules.

Run from the repository root in the benchmark environment (``make bench-venv`` builds it from
requirements/bench.txt, never the product's environment):

    .venv-bench/bin/python bench/backtest_engine.py            # 1,000,000 bars (~1-3 min)
    .venv-bench/bin/python bench/backtest_engine.py --quick    # 100,000 bars (seconds)
    .venv-bench/bin/python bench/backtest_engine.py --record   # also append to bench/RESULTS.md

The case: SMA(10) / SMA(30) cross, long only (buy on the cross up, sell on the cross down), fee
0.1 % per fill, orders filled at the next bar's open, all the cash in each trade in fractional
units, on one-minute candles already in memory: the real BTC-USDT 1m file of
../shared/data/ohlcv (69,927 bars) chained end to end, each copy rescaled to continue from the
previous close, on a continuous 1-minute index.

Timed (best of REPEATS, alternating, numba warmed up): each engine computes its own SMAs and
signals, runs its fills and computes its metrics:
- platform: ``run_backtest(get_strategy("sma_cross", fast=10, slow=30), candles, fee=0.001)``,
  everything included (signals, fills, all metrics, the trades/equity/drawdown frames);
- fused: one numba loop doing the running SMAs, the crosses and the fills, returning the final
  equity and the trades (the practical speed limit, no metrics beyond those);
- vectorbt 1.2: ``vbt.MA.run`` x2, ``ma_crossed_above/below``, ``Portfolio.from_signals``, then
  final value, total return, Sharpe, max drawdown, trade count and win rate, on the same bars with
  a tz-naive index (see ``naive``: with a tz-aware one, vectorbt 1.2 under pandas 3 spends ~10 s
  per 1,000,000 bars converting the index to Python objects);
- backtesting.py 0.6 and backtrader: their own SMA and crossover indicators and event loops, once
  (they take seconds to minutes); backtrader on the first 100,000 bars only (see the output).

Agreement (same signals for all: the platform strategy's, so that rounding differences between
SMA implementations cannot flip a cross on a tie): every closed trade's entry and exit bar, entry
and exit price and size as a fraction of the starting cash, and the final equity as a fraction
of it, must agree to 1e-6 relative. Each peer is configured to the platform's rules:
- next-open fills: vectorbt ``from_signals(price=open, entries/exits shifted one bar later)``;
  backtesting.py's default (``trade_on_close=False``); backtrader ``cheat_on_open=True`` with
  the orders sent from ``next_open`` for the previous bar's signal;
- all cash with fees: vectorbt ``size=np.inf`` (it buys (cash - fixed) / (1 + fees) / price, the
  platform's formula); backtesting.py's default full-equity size, floor(cash / (price * 1.001))
  units; backtrader ``buy(size=cash / (open * 1.001) * (1 - 1e-12))`` (the margin check refuses
  a cost equal to the cash by rounding);
- fractional units: vectorbt and backtrader take float sizes; backtesting.py trades whole units,
  so it runs as ``FractionalBacktest`` (units of 1e-8) with the starting cash scaled up (see
  SCALE) so that flooring to whole units costs far less than 1e-6;
- starting cash: this strategy pays 0.2 % per round trip ~20,000 times on 1,000,000 bars and
  ends with ~1e-15 of its cash. vectorbt refuses orders under 1e-8 units and rounds cash near
  zero to zero, so the peers start with ``SCALE`` times the platform's cash and everything is
  compared as a fraction of the starting cash (the engines are linear in it);
- the position still open after the last bar: the platform closes it at the last close paying
  the fee; the peers leave it open (valued at the last close), so their final equity is taken
  as their value at the last close minus the fee of selling the position there. vectorbt's value
  is read as its cash + assets x last close: its ``value()`` adds cumulative cash flows to the
  starting cash and is float noise once equity is ~20 orders of magnitude below it.
"""

import argparse
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar

from apps.backtests.engine import run_backtest  # noqa: E402
from apps.strategies.base import signals  # noqa: E402
from apps.strategies.registry import get_strategy  # noqa: E402

OHLCV = ROOT.parent / "shared" / "data" / "ohlcv" / "BTC-USDT_1m.csv.gz"
RESULTS = ROOT / "bench" / "RESULTS.md"
CASH = 10_000.0
FEE = 0.001
FAST, SLOW = 10, 30
SCALE = 1e20  # peers' starting cash = CASH * SCALE (see the docstring)
TOLERANCE = 1e-6


def chained_candles(rows: int) -> pd.DataFrame:
    block = pd.read_csv(OHLCV, usecols=["open", "high", "low", "close", "volume"]).astype("float64")
    pieces: list[pd.DataFrame] = []
    total = 0
    last_close: float | None = None
    while total < rows:
        piece = block.copy()
        if last_close is not None:
            piece[["open", "high", "low", "close"]] *= last_close / piece["open"].iloc[0]
        pieces.append(piece)
        total += len(piece)
        last_close = float(piece["close"].iloc[-1])
    candles = pd.concat(pieces, ignore_index=True).iloc[:rows]
    candles.index = pd.date_range("2020-01-01", periods=rows, freq="min", tz="UTC", name="timestamp")
    return candles


# ---- normalised outcome -------------------------------------------------------------------------


@dataclass
class Outcome:
    """Closed trades as (entry bar, exit bar, entry price, exit price, size / starting cash),
    the position left open (entry bar, size / cash) and final equity / starting cash."""

    trades: list[tuple[int, int, float, float, float]]
    open_position: tuple[int, float] | None
    final: float


def rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def disagreement(ours: Outcome, theirs: Outcome) -> tuple[float, str]:
    """(largest relative difference, what it was) or (inf, why) when trades differ in kind."""
    if len(ours.trades) != len(theirs.trades):
        return math.inf, f"{len(theirs.trades)} closed trades vs {len(ours.trades)}"
    worst, what = 0.0, "-"
    for n, (a, b) in enumerate(zip(ours.trades, theirs.trades, strict=True)):
        if a[:2] != b[:2]:
            return math.inf, f"trade {n} on bars {b[:2]} vs {a[:2]}"
        for label, x, y in (("entry price", a[2], b[2]), ("exit price", a[3], b[3]), ("size", a[4], b[4])):
            d = rel(x, y)
            if d > worst:
                worst, what = d, f"trade {n} {label}"
    if (ours.open_position is None) != (theirs.open_position is None):
        return math.inf, "open position at the end differs"
    if ours.open_position and theirs.open_position:
        if ours.open_position[0] != theirs.open_position[0]:
            return math.inf, "open position entered on another bar"
        d = rel(ours.open_position[1], theirs.open_position[1])
        if d > worst:
            worst, what = d, "open position size"
    d = rel(ours.final, theirs.final)
    if d > worst:
        worst, what = d, "final equity"
    return worst, what


# ---- the platform ----------------------------------------------------------------------------------


def platform_timed(candles: pd.DataFrame) -> Any:
    return run_backtest(get_strategy("sma_cross", fast=FAST, slow=SLOW), candles, cash=CASH, fee=FEE)


def platform_outcome(result: Any, candles: pd.DataFrame) -> Outcome:
    position = pd.Series(np.arange(len(candles)), index=candles.index)
    trades, open_position = [], None
    for t in result.trades.itertuples():
        e, x = int(position[t.entry_at]), int(position[t.exit_at])
        if t.exit_reason == "end":
            open_position = (e, t.size / CASH)
        else:
            trades.append((e, x, t.entry_price, t.exit_price, t.size / CASH))
    return Outcome(trades, open_position, result.metrics["final_equity"] / CASH)


# ---- a hand-fused numba loop -------------------------------------------------------------------------


@njit(cache=True)
def fused(o: np.ndarray, c: np.ndarray, fast: int, slow: int, cash: float, fee: float) -> tuple[float, np.ndarray]:
    """Running SMAs, crosses and next-open fills in one pass; the trades as rows of
    (entry bar, exit bar, entry price, exit price, units); exit bar -1 = open at the end."""
    n = c.shape[0]
    out = np.empty((n // 2 + 2, 5))
    k = 0
    units = 0.0
    pending = 0
    sum_f = 0.0
    sum_s = 0.0
    prev_f = np.nan
    prev_s = np.nan
    for i in range(n):
        if pending == 1 and units == 0.0:
            units = cash / (o[i] * (1.0 + fee))
            cash = 0.0
            out[k, 0] = i
            out[k, 2] = o[i]
            out[k, 4] = units
        elif pending == -1 and units > 0.0:
            cash = units * o[i] * (1.0 - fee)
            units = 0.0
            out[k, 1] = i
            out[k, 3] = o[i]
            k += 1
        pending = 0
        sum_f += c[i]
        sum_s += c[i]
        if i >= fast:
            sum_f -= c[i - fast]
        if i >= slow:
            sum_s -= c[i - slow]
        if i >= slow - 1:
            f = sum_f / fast
            s = sum_s / slow
            if prev_f == prev_f:
                if f > s and prev_f <= prev_s:
                    pending = 1
                elif f < s and prev_f >= prev_s:
                    pending = -1
            prev_f = f
            prev_s = s
    if units > 0.0:
        cash = units * c[n - 1] * (1.0 - fee)
        out[k, 1] = -1
        out[k, 3] = c[n - 1]
        k += 1
    return cash, out[:k].copy()


def fused_outcome(result: tuple[float, np.ndarray]) -> Outcome:
    final, rows = result
    trades = [(int(r[0]), int(r[1]), r[2], r[3], r[4] / CASH) for r in rows if r[1] >= 0]
    still = [(int(r[0]), r[4] / CASH) for r in rows if r[1] < 0]
    return Outcome(trades, still[0] if still else None, final / CASH)


# ---- vectorbt ---------------------------------------------------------------------------------------


def naive(candles: pd.DataFrame) -> pd.DataFrame:
    """The same bars on a tz-naive index: vectorbt 1.2 under pandas 3 turns a tz-aware index into
    Python objects on every result it wraps (about 1 s per 100,000 bars), which is not the engine
    being measured."""
    return candles.tz_localize(None)


def vectorbt_timed(candles: pd.DataFrame) -> Any:
    import vectorbt as vbt

    close = candles["close"]
    fast = vbt.MA.run(close, FAST)
    slow = vbt.MA.run(close, SLOW)
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False).astype(bool)
    exits = fast.ma_crossed_below(slow).shift(1, fill_value=False).astype(bool)
    pf = vbt.Portfolio.from_signals(
        close, entries, exits, price=candles["open"], fees=FEE, init_cash=CASH * SCALE, size=np.inf, freq="1min"
    )
    return pf, (
        pf.final_value(),
        pf.total_return(),
        pf.sharpe_ratio(),
        pf.max_drawdown(),
        pf.trades.count(),
        pf.trades.win_rate(),
    )


def vectorbt_outcome(candles: pd.DataFrame, enter: np.ndarray, leave: np.ndarray) -> Outcome:
    import vectorbt as vbt

    entries = pd.Series(enter, index=candles.index).shift(1, fill_value=False).astype(bool)
    exits = pd.Series(leave, index=candles.index).shift(1, fill_value=False).astype(bool)
    pf = vbt.Portfolio.from_signals(
        candles["close"],
        entries,
        exits,
        price=candles["open"],
        fees=FEE,
        init_cash=CASH * SCALE,
        size=np.inf,
        freq="1min",
    )
    records = pf.trades.records_arr
    cash0 = CASH * SCALE
    trades, open_position = [], None
    last_close = float(candles["close"].iloc[-1])
    # Not pf.final_value(): it adds cumulative cash flows to the starting cash and is float noise
    # once equity has fallen ~20 orders of magnitude below it; cash and assets are exact.
    final = float(pf.cash().iloc[-1]) + float(pf.assets().iloc[-1]) * last_close
    for r in records:
        if r["status"] == 1:  # closed
            trades.append(
                (int(r["entry_idx"]), int(r["exit_idx"]), r["entry_price"], r["exit_price"], r["size"] / cash0)
            )
        else:
            open_position = (int(r["entry_idx"]), r["size"] / cash0)
            final -= r["size"] * last_close * FEE
    return Outcome(trades, open_position, final / cash0)


# ---- backtesting.py ----------------------------------------------------------------------------------


def backtesting_run(candles: pd.DataFrame, enter: np.ndarray | None, leave: np.ndarray | None) -> tuple[Outcome, int]:
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest, crossover

    unit = 1e-8
    data = candles.rename(columns=str.capitalize)

    class Cross(Strategy):
        def init(self) -> None:
            if enter is None:
                close = self.data.Close
                self.fast = self.I(lambda x: pd.Series(x).rolling(FAST).mean().to_numpy(), close)
                self.slow = self.I(lambda x: pd.Series(x).rolling(SLOW).mean().to_numpy(), close)
            else:
                self.enter = self.I(lambda: enter.astype(float))
                self.leave = self.I(lambda: leave.astype(float))

        def next(self) -> None:
            if enter is None:
                go, stop = crossover(self.fast, self.slow), crossover(self.slow, self.fast)
            else:
                go, stop = self.enter[-1] > 0, self.leave[-1] > 0
            if go and not self.position:
                self.buy()
            elif stop and self.position:
                self.position.close()

    cash0 = CASH * SCALE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(data, Cross, cash=cash0, commission=FEE, fractional_unit=unit, finalize_trades=False)
        stats = bt.run()
    trades_df = stats["_trades"]
    equity = stats["_equity_curve"]["Equity"]
    trades = [
        # FractionalBacktest reports closed trades back in whole coins and real prices.
        (int(t.EntryBar), int(t.ExitBar), t.EntryPrice, t.ExitPrice, t.Size / cash0)
        for t in trades_df.itertuples()
    ]
    strategy = stats["_strategy"]
    final = float(equity.iloc[-1])
    open_position = None
    for trade in strategy.trades:  # still open
        size = trade.size * unit
        open_position = (int(trade.entry_bar), size / cash0)
        final -= size * float(candles["close"].iloc[-1]) * FEE
    return Outcome(trades, open_position, final / cash0), len(trades_df) + len(strategy.trades)


# ---- backtrader ----------------------------------------------------------------------------------------


def backtrader_run(candles: pd.DataFrame, enter: np.ndarray | None, leave: np.ndarray | None) -> tuple[Outcome, int]:
    import backtrader as bt

    cash0 = CASH * SCALE
    fills: list[tuple[int, float, float]] = []  # (bar, signed units, price)

    class Cross(bt.Strategy):
        def __init__(self) -> None:
            if enter is None:
                self.cross = bt.ind.CrossOver(
                    bt.ind.SMA(self.data.close, period=FAST), bt.ind.SMA(self.data.close, period=SLOW)
                )
            self.signal = 0

        def next(self) -> None:  # at bar t's close: decide
            i = len(self.data) - 1
            if enter is None:
                self.signal = 1 if self.cross[0] > 0 else -1 if self.cross[0] < 0 else 0
            else:
                self.signal = 1 if enter[i] else -1 if leave[i] else 0

        def next_open(self) -> None:  # at bar t+1's open, before its orders fill (cheat-on-open)
            if self.signal == 1 and not self.position:
                units = self.broker.getcash() / (self.data.open[0] * (1 + FEE)) * (1 - 1e-12)
                self.buy(size=units)
            elif self.signal == -1 and self.position:
                self.close()
            self.signal = 0

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                fills.append((len(self.data) - 1, order.executed.size, order.executed.price))

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)
    cerebro.adddata(bt.feeds.PandasData(dataname=candles.tz_localize(None)))
    cerebro.addstrategy(Cross)
    cerebro.broker.setcash(cash0)
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_checksubmit(False)
    cerebro.run()
    value = float(cerebro.broker.getvalue())
    trades, open_position = [], None
    for n in range(0, len(fills) - 1, 2):
        (e, units, pe), (x, _, px) = fills[n], fills[n + 1]
        trades.append((e, x, pe, px, units / (1 - 1e-12) / cash0))
    if len(fills) % 2:
        e, units, _ = fills[-1]
        open_position = (e, units / (1 - 1e-12) / cash0)
        value -= units * float(candles["close"].iloc[-1]) * FEE
    return Outcome(trades, open_position, value / cash0), len(fills) // 2 + len(fills) % 2


# ---- the run --------------------------------------------------------------------------------------------


def best(repeats: int, calls: dict[str, Callable[[], Any]]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def once(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 bars (backtrader 20,000), fewer repeats")
    parser.add_argument("--record", action="store_true", help="append the section to bench/RESULTS.md")
    parser.add_argument("--skip-slow", action="store_true", help="leave out backtesting.py and backtrader")
    args = parser.parse_args()
    rows = 100_000 if args.quick else 1_000_000
    slow_rows = 20_000 if args.quick else 100_000  # backtrader
    bt_rows = 100_000 if args.quick else rows  # backtesting.py
    repeats = 3 if args.quick else 7

    import backtesting
    import backtrader
    import vectorbt

    candles = chained_candles(rows)
    o, c = candles["open"].to_numpy(), candles["close"].to_numpy()
    # Warm up (numba compiles or loads its cache), then time alternating.
    platform_timed(candles.iloc[:5000])
    fused(o[:5000], c[:5000], FAST, SLOW, CASH, FEE)
    plain = naive(candles)
    vectorbt_timed(plain.iloc[:5000])
    timings = best(
        repeats,
        {
            "platform": lambda: platform_timed(candles),
            "fused": lambda: fused(o, c, FAST, SLOW, CASH, FEE),
            "vectorbt": lambda: vectorbt_timed(plain),
        },
    )
    result = platform_timed(candles)
    sig = signals(get_strategy("sma_cross", fast=FAST, slow=SLOW), candles)
    enter, leave = sig["enter_long"].to_numpy(), sig["exit_long"].to_numpy()
    ours = platform_outcome(result, candles)
    table: list[dict[str, Any]] = []

    def add(engine: str, bars: int, seconds: float, trades: int, mine: Outcome, theirs: Outcome | None) -> None:
        diff, what = disagreement(mine, theirs) if theirs is not None else (0.0, "-")
        table.append(
            {
                "engine": engine,
                "bars": bars,
                "seconds": seconds,
                "trades": trades,
                "final": theirs.final if theirs is not None else mine.final,
                "diff": diff,
                "what": what,
            }
        )

    add("platform (signals + fills + metrics)", rows, timings["platform"], int(result.metrics["trades"]), ours, None)
    fused_result = fused(o, c, FAST, SLOW, CASH, FEE)
    add("hand-fused numba loop", rows, timings["fused"], len(fused_result[1]), ours, fused_outcome(fused_result))
    vbt_trades = int(vectorbt_timed(plain)[1][4])
    add("vectorbt 1.2", rows, timings["vectorbt"], vbt_trades, ours, vectorbt_outcome(plain, enter, leave))
    if not args.skip_slow:
        part = candles.iloc[:bt_rows]
        part_ours = ours if bt_rows == rows else platform_outcome(platform_timed(part), part)
        seconds, (_, count) = once(lambda: backtesting_run(part, None, None))
        agreed, _ = backtesting_run(part, enter[:bt_rows], leave[:bt_rows])
        add("backtesting.py 0.6", bt_rows, seconds, count, part_ours, agreed)
        part = candles.iloc[:slow_rows]
        part_ours = platform_outcome(platform_timed(part), part)
        sub = signals(get_strategy("sma_cross", fast=FAST, slow=SLOW), part)
        seconds, (_, count) = once(lambda: backtrader_run(part, None, None))
        agreed, _ = backtrader_run(part, sub["enter_long"].to_numpy(), sub["exit_long"].to_numpy())
        add("backtrader", slow_rows, seconds, count, part_ours, agreed)

    versions = {
        "python": platform.python_version(),
        "numba": __import__("numba").__version__,
        "vectorbt": vectorbt.__version__,
        "backtesting": backtesting.__version__,
        "backtrader": backtrader.__version__,
    }
    lines = render(table, timings, versions, rows, args.quick)
    print("\n".join(lines))
    if args.record:
        with RESULTS.open("a") as fh:
            fh.write("\n" + "\n".join(lines) + "\n")
    failed = [row for row in table if row["diff"] > TOLERANCE]
    ratio_vbt = timings["platform"] / timings["vectorbt"]
    ratio_fused = timings["platform"] / timings["fused"]
    if failed or timings["platform"] > 0.25 or ratio_vbt > 0.5 or ratio_fused > 25:
        print("TARGET MISSED" if not failed else f"DISAGREEMENT: {[r['engine'] for r in failed]}", file=sys.stderr)
        sys.exit(1)


def render(
    table: list[dict[str, Any]], timings: dict[str, float], versions: dict[str, str], rows: int, quick: bool
) -> list[str]:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    lines = [
        f"## Backtest engine (issue 4){' - quick run' if quick else ''}",
        "",
        f"{now}; {os.cpu_count()} CPUs (nproc), {cpu_model()}; load average {load:.2f} at the end; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        f"`.venv-bench/bin/python bench/backtest_engine.py{' --quick' if quick else ''}`: "
        f"SMA({FAST})/SMA({SLOW}) cross, long only, fee {FEE:.1%}, next-open fills, "
        f"all cash in fractional units, on {rows:,} one-minute candles (real BTC-USDT 1m chained); "
        "fast engines best of several runs, the slow ones once.",
        "",
        "| engine | bars | seconds | trades | final equity / cash | max rel. diff vs platform | where |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in table:
        diff = (
            "-"
            if row["engine"].startswith("platform")
            else ("differs" if math.isinf(row["diff"]) else f"{row['diff']:.1e}")
        )
        cells = [row["engine"], f"{row['bars']:,}", f"{row['seconds']:.4f}", f"{row['trades']:,}"]
        cells += [f"{row['final']:.6e}", diff, row["what"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Ratios: platform / vectorbt = {timings['platform'] / timings['vectorbt']:.3f} (target <= 0.5), "
        f"platform / fused loop = {timings['platform'] / timings['fused']:.1f}x (target <= 25x), "
        f"platform {timings['platform']:.3f} s (target <= 0.25 s).",
    ]
    return lines


if __name__ == "__main__":
    main()
