"""Compiling a rule set to a vectorised Strategy (key "rules")."""

import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from apps.strategies.base import Strategy
from apps.strategies.errors import StrategyComputeError
from apps.strategies.library._signals import crossover, crossunder
from apps.strategies.params import StrategyParams
from apps.strategies.rules.catalogue import INDICATORS
from apps.strategies.rules.text import format_condition, format_operand
from apps.strategies.rules.validate import SIGNALS, RuleSetError, operands, validate_rules
from apps.strategies.timeframes import (
    TimeframeMismatch,
    align_closed,
    check_higher,
    higher_candles,
    infer_base_seconds,
    seconds,
)

# warmup() without a known candle timeframe assumes 1-minute candles (the most base bars per
# higher-timeframe bar), so it never under-counts.
_WORST_BASE = 60


class RuleStrategy(Strategy):
    """A strategy written as rules: conditions over prices and indicators, no code.

    Each of enter_long, exit_long, enter_short and exit_short is a condition; the signal is true
    on every bar where its condition holds (a missing rule never fires). Operands on another
    timeframe (``sma(50)@4h``) read closed bars of that timeframe only, the latest one that ended
    at or before the bar (see apps.strategies.timeframes), so a rule cannot peek.
    """

    key = "rules"
    name = "Rule strategy"
    Params = StrategyParams
    is_public = False  # built from a RuleSet, never picked from the catalogue

    def __init__(self, rules: Mapping[str, Any], params: StrategyParams | Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.rules = validate_rules(rules)

    def describe(self) -> str:
        parts = [f"{signal}: {format_condition(node)}" for signal, node in self.conditions()]
        return f"{self.name}({'; '.join(parts)})"

    def conditions(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for signal in SIGNALS:
            node = self.rules[signal]
            if node is not None:
                yield signal, node

    def operands(self) -> list[dict[str, Any]]:
        return [operand for _, node in self.conditions() for operand in operands(node)]

    def warmup(self) -> int:
        """Bars before every operand is defined: the largest indicator warm-up (plus its offset),
        in candles of this strategy's timeframe (1-minute ones when unknown), plus one bar for
        crosses."""
        base = seconds(self.timeframe) if self.timeframe else _WORST_BASE
        longest = 0
        for operand in self.operands():
            if "value" in operand:
                continue
            ratio = max(seconds(operand["timeframe"]) // base, 1) if operand.get("timeframe") else 1
            own = INDICATORS[operand["indicator"]].warmup(tuple(operand["args"])) if "indicator" in operand else 0
            extra = 1 if operand.get("timeframe") else 0  # the wait for the first bar to close
            longest = max(longest, (own + operand.get("offset", 0) + extra) * ratio)
        return longest + 1

    def compute(self, candles: pd.DataFrame) -> pd.DataFrame:
        evaluation = _Evaluation(candles, infer_base_seconds(candles.index, self.timeframe))
        columns = {signal: np.zeros(len(candles), dtype=bool) for signal in SIGNALS}
        for signal, node in self.conditions():
            columns[signal] = evaluation.condition(node)
        return candles.assign(**columns)


class _Evaluation:
    """One compute() call: operands are computed once each, higher timeframes resampled once."""

    def __init__(self, candles: pd.DataFrame, base: int | None) -> None:
        self.candles = candles
        self.size = len(candles)
        self.base = base
        self.series: dict[str, np.ndarray] = {}
        self.frames: dict[str, pd.DataFrame] = {}

    def condition(self, node: dict[str, Any]) -> np.ndarray:
        if "all" in node:
            return np.logical_and.reduce([self.condition(member) for member in node["all"]])
        if "any" in node:
            return np.logical_or.reduce([self.condition(member) for member in node["any"]])
        left, right = self.operand(node["left"]), self.operand(node["right"])
        op = node["op"]
        if op == "crosses_above":
            return crossover(left, right, self.size)
        if op == "crosses_below":
            return crossunder(left, right, self.size)
        with np.errstate(invalid="ignore"):
            if op == "<":
                return left < right
            if op == "<=":
                return left <= right
            if op == ">":
                return left > right
            return left >= right

    def operand(self, node: dict[str, Any]) -> np.ndarray:
        if "value" in node:
            return np.full(self.size, float(node["value"]))
        key = json.dumps(node, sort_keys=True)
        if key not in self.series:
            self.series[key] = self._compute(node)
        return self.series[key]

    def _compute(self, node: dict[str, Any]) -> np.ndarray:
        timeframe: str | None = node.get("timeframe")
        try:
            higher = timeframe if timeframe and check_higher(timeframe, self.base) else None
        except TimeframeMismatch as exc:
            raise StrategyComputeError(f"{format_operand(node)}: {exc}") from exc
        frame = self._frame(higher) if higher else self.candles
        if "column" in node:
            series = frame[node["column"]].astype(np.float64)
        else:
            spec = INDICATORS[node["indicator"]]
            result = spec.compute(frame, tuple(node["args"]))
            chosen = result[node["output"]] if isinstance(result, pd.DataFrame) else result
            series = chosen.astype(np.float64)
        if node.get("offset"):
            series = series.shift(int(node["offset"]))
        if higher:
            series = align_closed(series, higher, self.candles.index)
        return series.to_numpy(dtype=np.float64)

    def _frame(self, timeframe: str) -> pd.DataFrame:
        if timeframe not in self.frames:
            self.frames[timeframe] = higher_candles(self.candles, timeframe)
        return self.frames[timeframe]


def compile_rules(spec: Any) -> RuleStrategy:
    """Validate ``spec`` (RuleSetError naming the field if invalid) and build its Strategy."""
    return RuleStrategy(spec)


def check_timeframes(spec: Mapping[str, Any], timeframe: str, *, path: str = "rules") -> None:
    """Refuse (RuleSetError naming the operand's field) a validated rule set whose operands use a
    timeframe that cannot be built from ``timeframe`` candles (lower, or not a whole multiple).

    Lets a service reject the combination when a backtest is created instead of failing it later.
    """
    base = seconds(timeframe)
    errors: dict[str, list[str]] = {}
    for signal in SIGNALS:
        node = spec.get(signal)
        if node is None:
            continue
        for where, operand in _operand_paths(node, f"{path}.{signal}"):
            if not operand.get("timeframe"):
                continue
            try:
                check_higher(operand["timeframe"], base)
            except TimeframeMismatch as exc:
                errors.setdefault(f"{where}.timeframe", []).append(str(exc))
    if errors:
        raise RuleSetError(errors)


def _operand_paths(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("all", "any"):
        if kind in node:
            for i, member in enumerate(node[kind]):
                yield from _operand_paths(member, f"{path}.{kind}[{i}]")
            return
    yield f"{path}.left", node["left"]
    yield f"{path}.right", node["right"]
