"""Rule strategies: what users write instead of code. Pure (no Django).

A rule set is JSON::

    {"version": 1,
     "enter_long":  COND | null, "exit_long":  COND | null,
     "enter_short": COND | null, "exit_short": COND | null}

    COND    = {"all": [COND, ...]} | {"any": [COND, ...]}
            | {"left": OPERAND, "op": "<" | "<=" | ">" | ">=" | "crosses_above" | "crosses_below",
               "right": OPERAND}
    OPERAND = {"column": "close"}            (open, high, low, close, volume)
            | {"value": 30}
            | {"indicator": "rsi", "args": [14], "output": null, "timeframe": null}

Operands may also carry ``"offset": n`` (the value n bars back, in the operand's timeframe) and
columns a ``"timeframe"``. ``crosses_above`` is true on the bar where left goes from at or below
right to above it (TradingView's crossover). Operands on a higher timeframe read only bars of it
that had closed (apps.strategies.timeframes).

- :func:`validate_rules` normalises a rule set or raises :class:`RuleSetError` naming every
  offending field (``rules.enter_long.all[0].left.indicator``);
- :func:`compile_rules` builds the Strategy (key "rules"), the same vectorised form as code;
- :func:`parse_condition_text` / :func:`format_condition`: the text form
  (``rsi(14) < 30 and close > sma(200)``), both ways;
- :func:`rule_indicators`: what the editor offers; COLUMNS, OPERATORS and TIMEFRAMES the rest.
"""

from apps.strategies.rules.catalogue import COLUMNS, INDICATORS, rule_indicators
from apps.strategies.rules.compile import RuleStrategy, check_timeframes, compile_rules
from apps.strategies.rules.text import format_condition, format_operand, parse_condition_text
from apps.strategies.rules.validate import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_OFFSET,
    OPERATORS,
    SIGNALS,
    RuleSetError,
    validate_condition,
    validate_rules,
)
from apps.strategies.timeframes import TIMEFRAMES

__all__ = [
    "COLUMNS",
    "INDICATORS",
    "MAX_CONDITIONS",
    "MAX_DEPTH",
    "MAX_OFFSET",
    "OPERATORS",
    "SIGNALS",
    "TIMEFRAMES",
    "RuleSetError",
    "RuleStrategy",
    "check_timeframes",
    "compile_rules",
    "format_condition",
    "format_operand",
    "parse_condition_text",
    "rule_indicators",
    "validate_condition",
    "validate_rules",
]
