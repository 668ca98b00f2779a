"""The look-ahead check: does a strategy's signal on bar t change when later bars are added?

As freqtrade's lookahead-analysis does: compute the signals on a history, then again on the same
history truncated at bar k, and compare every signal and stop/target price of bars <= k. An
honest strategy gives the same values (row t only reads rows <= t); any difference means the
strategy peeks at data it could not have had live (a ``shift(-1)``, a centred window, a
normalisation by the whole series' max, a higher-timeframe bar read before it closed...). A
flagged configuration is marked on every backtest of it and cannot be deployed or listed.

Which truncations (bounded time on any length; documented because it is a trade-off):

- Where a peek shows depends on the strategy; each region's truncation points come in three
  thirds. Signal bars, evenly chosen: a peek that creates a signal (a ``shift(-1)`` entry on bar
  k exists only because of bar k + 1) shows on the bars where the full history fires. Bars just
  before the largest next-bar moves (close to close, and the next bar's high/low reach from the
  close): a peek that suppresses a signal (an entry vetoed because the next bar crashes) leaves
  no signal to find, but a peek only pays when it conditions on a big move. Quiet bars, where
  nothing starts to fire, evenly chosen, for the rest (and any shortfall of the others).
- Short histories (up to ``window`` bars plus the context below): one reference over the whole
  history, truncations anywhere after the warm-up. This is the exact freqtrade procedure.
- Long histories: a tail region (the last ``window`` bars, half of the ``samples``) and ``spread``
  regions of ``window / 4`` bars evenly placed inside the history before it (the other half).
  Each region is computed from ``context`` = warm-up + 200 bars before it; its reference runs
  from there to the end of the history (or ``horizon`` bars past the region, when given), and
  its truncations share the reference's start. Both sides of each comparison thus start on the
  same bar, so recursive indicators (EMA, RSI) agree exactly and only the added future can make
  a difference, however far ahead the strategy peeks (up to ``horizon`` when it is given).

Cost: ``spread`` + 1 references (at most that many full computations, the price of catching far
peeks) plus ``samples`` short truncated runs of about ``context + window`` bars. On 1,000,000
one-minute bars an SMA cross is checked in about 0.1 s (bench/strategies.py). Sampling stays a
sample: a veto of a rare signal (a crossing skipped before a crash) is caught only when one of
the vetoed bars is among the biggest moves of a region.
:func:`fingerprint` names a configuration (key, params, rules) for storing the verdict.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from apps.marketdata.timeframes import TIMEFRAMES
from apps.strategies.base import PRICE_COLUMNS, SIGNAL_COLUMNS, Strategy, signals
from apps.strategies.errors import StrategyComputeError
from apps.strategies.timeframes import infer_base_seconds

MAX_BARS_REPORTED = 50
_CONTEXT_MARGIN = 200
_RTOL = 1e-9


@dataclass(frozen=True)
class LookaheadReport:
    """The verdict. ``bars`` are ISO-8601 open times of bars whose values changed (at most 50),
    ``columns`` the signal/price columns that changed, ``checked`` the truncations compared
    (0 = too few candles to tell: not a pass)."""

    is_biased: bool
    columns: tuple[str, ...]
    bars: tuple[str, ...]
    checked: int
    biased_truncations: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "is_biased": self.is_biased,
            "columns": list(self.columns),
            "bars": list(self.bars),
            "checked": self.checked,
            "biased_truncations": self.biased_truncations,
            "message": self.message,
        }


@dataclass(frozen=True)
class _Region:
    start: int  # first bar computed (shared by the reference and its truncations)
    first: int  # first truncation point allowed
    last: int  # last truncation point allowed (inclusive)
    end: int  # the reference covers [start, end)
    samples: int


def lookahead_check(
    strategy: Strategy,
    candles: pd.DataFrame,
    *,
    samples: int = 48,
    window: int = 2000,
    spread: int = 2,
    horizon: int | None = None,
) -> LookaheadReport:
    """Compare ``strategy``'s signals on truncated histories with the untruncated ones.

    ``samples`` truncations in all, ``window`` bars in the tail region, ``spread`` earlier regions
    on long histories, whose references run to the end or ``horizon`` bars past them (see the
    module docstring). A strategy that raises on a reference run raises StrategyComputeError; a
    truncation on which it raises is skipped (not counted).
    """
    size = len(candles)
    warmup = min(_warmup(strategy, candles), max(size - 2, 0))
    context = warmup + _CONTEXT_MARGIN
    diffs = _Differences(candles.index)
    checked = 0
    for region in _regions(size, warmup, context, samples, window, spread, horizon):
        checked += _check_region(strategy, candles, region, diffs)
    return diffs.report(checked, warmup)


def fingerprint(strategy: Strategy) -> str:
    """sha256 hex of the configuration: key, params and (rule strategies) the rules."""
    payload = {
        "key": strategy.key,
        "params": strategy.params.as_dict(),
        "rules": getattr(strategy, "rules", None),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _warmup(strategy: Strategy, candles: pd.DataFrame) -> int:
    """The strategy's warm-up for these candles. One not told its timeframe assumes the worst
    case (1-minute candles), so it is asked with the inferred timeframe set for the call."""
    if strategy.timeframe is not None:
        return max(int(strategy.warmup()), 0)
    base = infer_base_seconds(candles.index)
    name = next((tf for tf, length in TIMEFRAMES.items() if length == base), None)
    strategy.timeframe = name
    try:
        return max(int(strategy.warmup()), 0)
    finally:
        strategy.timeframe = None


def _regions(
    size: int, warmup: int, context: int, samples: int, window: int, spread: int, horizon: int | None
) -> list[_Region]:
    first = min(warmup + 1, size - 1)
    if size < 3 or samples < 1:
        return []
    if size <= window + context or spread < 1:
        return [_Region(0, first, size - 2, size, samples)]
    tail_start = size - window
    length = max(window // 4, 1)
    earliest = context + first
    latest = tail_start - length
    if latest <= earliest:
        return [_Region(tail_start - context, tail_start, size - 2, size, samples)]
    others = samples // 2
    regions = [_Region(tail_start - context, tail_start, size - 2, size, samples - others)]
    for i, at in enumerate(np.linspace(earliest, latest, spread + 2)[1:-1].astype(int).tolist()):
        share = others // spread + (1 if i < others % spread else 0)
        end = size if horizon is None else min(at + length + horizon, size)
        regions.append(_Region(at - context, at, at + length - 1, end, share))
    return regions


def _check_region(strategy: Strategy, candles: pd.DataFrame, region: _Region, diffs: "_Differences") -> int:
    reference = signals(strategy, candles.iloc[region.start : region.end])
    full = {column: reference[column].to_numpy() for column in (*SIGNAL_COLUMNS, *PRICE_COLUMNS)}
    checked = 0
    for cut in _cut_points(reference, region, candles):
        length = cut - region.start + 1
        try:
            truncated = signals(strategy, candles.iloc[region.start : cut + 1])
        except StrategyComputeError:
            continue
        checked += 1
        diffs.compare({column: values[:length] for column, values in full.items()}, truncated, region.start)
    return checked


def _cut_points(reference: pd.DataFrame, region: _Region, candles: pd.DataFrame) -> list[int]:
    """Truncation points (absolute bar positions) in the region, ``region.samples`` of them when
    the region has that many bars: a third on bars before the largest next-bar moves, a third
    where the columns start to fire (shared evenly between the columns), the rest and any
    shortfall on quiet bars (where nothing starts to fire)."""
    lo, hi = region.first - region.start, region.last - region.start
    if hi < lo:
        return []
    rows = reference.iloc[max(lo - 1, 0) : hi + 1]
    skip = 1 if lo > 0 else 0
    events = [_events(rows[column].to_numpy())[skip:] for column in (*SIGNAL_COLUMNS, *PRICE_COLUMNS)]
    firing = [np.flatnonzero(mask) + lo for mask in events if mask.any()]
    moving = region.samples // 3
    budget = region.samples - moving - max(region.samples // 3, 1)
    chosen: set[int] = set()
    for i, positions in enumerate(firing):
        share = budget // len(firing) + (1 if i < budget % len(firing) else 0)
        chosen.update(_evenly(positions, share).tolist())
    taken = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
    moves = _before_big_moves(candles, region.first, region.last, moving + len(taken)) - region.start
    chosen.update(moves[~np.isin(moves, taken)][:moving].tolist())
    everything = np.arange(lo, hi + 1)
    taken = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
    fired = np.concatenate([taken, *firing])
    quiet = everything[~np.isin(everything, fired)]
    rest = everything[np.isin(everything, fired) & ~np.isin(everything, taken)]
    missing = region.samples - len(chosen)
    picked = _evenly(quiet, missing)
    chosen.update(picked.tolist())
    chosen.update(_evenly(rest, missing - len(picked)).tolist())
    return sorted(int(position) + region.start for position in chosen)


def _before_big_moves(candles: pd.DataFrame, first: int, last: int, count: int) -> np.ndarray:
    """Bars t in [first, last] (absolute) before the ``count`` largest moves of bar t + 1 by
    each of two measures, biggest first, alternating between them: the close-to-close move
    |close[t+1] / close[t] - 1| and the reach of bar t + 1's high and low from close[t] (its
    range, gaps included). A peek pays only when it conditions on a big move (vetoing an entry
    before a crash, requiring a jump), so these are the bars where a suppressed or a demanded
    signal shows."""
    close = candles["close"].iloc[first : last + 2].to_numpy(dtype=np.float64)
    high = candles["high"].iloc[first + 1 : last + 2].to_numpy(dtype=np.float64)
    low = candles["low"].iloc[first + 1 : last + 2].to_numpy(dtype=np.float64)
    base = close[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        move = np.abs(close[1:] / base - 1.0)
        reach = np.maximum(high / base - 1.0, 1.0 - low / base)
    order = np.column_stack([_largest(move, count), _largest(reach, count)]).ravel()
    _, firsts = np.unique(order, return_index=True)
    return order[np.sort(firsts)] + first


def _largest(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` largest finite values, largest first."""
    values = np.where(np.isfinite(values), values, -np.inf)
    if count <= 0:
        return np.arange(0)
    top = np.argpartition(-values, count - 1)[:count] if count < values.size else np.arange(values.size)
    return top[np.lexsort((top, -values[top]))]


def _events(column: np.ndarray) -> np.ndarray:
    """Where a column starts to fire: a boolean turning true, a price appearing or changing."""
    if column.dtype == bool:
        present = column
        changed = column.copy()
    else:
        present = ~np.isnan(column)
        changed = present.copy()
        if column.size > 1:
            changed[1:] &= ~(np.isclose(column[1:], column[:-1], rtol=_RTOL, atol=0.0) & present[:-1])
        return changed
    if column.size > 1:
        changed[1:] &= ~present[:-1]
    return changed


def _evenly(positions: np.ndarray, count: int) -> np.ndarray:
    if count <= 0 or positions.size == 0:
        return positions[:0]
    if positions.size <= count:
        return positions
    picks = np.unique(np.linspace(0, positions.size - 1, count).round().astype(int))
    return positions[picks]


class _Differences:
    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self.columns: set[str] = set()
        self.bars: set[int] = set()
        self.biased = 0

    def compare(self, reference: dict[str, np.ndarray], truncated: pd.DataFrame, offset: int) -> None:
        changed = np.zeros(len(truncated), dtype=bool)
        for column in SIGNAL_COLUMNS:
            differs = reference[column] != truncated[column].to_numpy()
            changed |= self._note(column, differs)
        for column in PRICE_COLUMNS:
            ref, cut = reference[column], truncated[column].to_numpy()
            same = (np.isnan(ref) & np.isnan(cut)) | np.isclose(ref, cut, rtol=_RTOL, atol=0.0)
            changed |= self._note(column, ~same)
        if changed.any():
            self.biased += 1
            self.bars.update((np.flatnonzero(changed) + offset).tolist())

    def _note(self, column: str, differs: np.ndarray) -> np.ndarray:
        if differs.any():
            self.columns.add(column)
        return differs

    def report(self, checked: int, warmup: int) -> LookaheadReport:
        positions = sorted(self.bars)[:MAX_BARS_REPORTED]
        bars = tuple(pd.Timestamp(self.index[position]).isoformat() for position in positions)
        columns = tuple(column for column in (*SIGNAL_COLUMNS, *PRICE_COLUMNS) if column in self.columns)
        if self.biased:
            message = (
                f"Look-ahead bias: {', '.join(columns)} changed on {len(self.bars)} bar(s) (first at {bars[0]}) "
                f"when later candles were added, in {self.biased} of {checked} truncated histories. The "
                "strategy uses data from after the bar it signals on; its backtests cannot be trusted."
            )
        elif checked == 0:
            message = f"Not enough candles to check for look-ahead (the warm-up alone is {warmup} bars)."
        else:
            message = f"No look-ahead found: {checked} truncated histories gave the same signals as the full one."
        return LookaheadReport(self.biased > 0, columns, bars, checked, self.biased, message)
