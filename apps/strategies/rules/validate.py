"""Validation and normalisation of rule sets.

Every problem is reported at the path of the offending field (``rules.enter_long.all[0].left.
indicator``) with a sentence a non-programmer understands; all problems are collected before
:class:`RuleSetError` is raised, so a form can mark each of them.

Normalised form (what :func:`validate_rules` returns and the database stores):

- a rule set has exactly ``version`` (1) and the four signals, missing ones as None;
- a group with one member is replaced by that member, and a group inside a group of the same
  kind (``all`` in ``all``) is merged into it, so equivalent rules have one form;
- numbers are floats (``{"value": 30.0}``), integer arguments ints; every indicator operand has
  all its ``args`` (defaults filled in), its ``output`` (the default one for multi-output
  indicators, None for single ones) and ``timeframe`` (None = the candles' own); ``offset`` (bars
  back, in the operand's timeframe) appears only when it is not 0, and ``timeframe`` on a column
  only when set.
"""

import math
from collections.abc import Mapping
from typing import Any

from apps.common.errors import ValidationFailed
from apps.strategies.rules.catalogue import COLUMNS, INDICATORS, RuleIndicator
from apps.strategies.timeframes import TIMEFRAMES

SIGNALS: tuple[str, ...] = ("enter_long", "exit_long", "enter_short", "exit_short")
OPERATORS: tuple[str, ...] = ("<", "<=", ">", ">=", "crosses_above", "crosses_below")
VERSION = 1
MAX_DEPTH = 4  # and/or groups inside one another
MAX_CONDITIONS = 32  # comparisons in a whole rule set
MAX_OFFSET = 500


class RuleSetError(ValidationFailed):
    """A rule set (or one condition) is not valid. ``extra["fields"]`` maps each offending path to
    its messages; the message is the first of them."""

    default_code = "invalid_rules"

    def __init__(self, fields: dict[str, list[str]]):
        first = next(iter(fields.values()))[0]
        count = sum(len(messages) for messages in fields.values())
        message = first if count == 1 else f"{first} (and {count - 1} more problem{'s' if count > 2 else ''})"
        super().__init__(message, extra={"fields": fields})
        self.fields = fields


def _listing(items: tuple[str, ...] | list[str]) -> str:
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Checker:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self.conditions = 0

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise RuleSetError(self.errors)

    # ---- conditions -------------------------------------------------------------------------

    def condition(self, node: Any, path: str, depth: int = 0) -> dict[str, Any] | None:
        if not isinstance(node, Mapping):
            self.error(path, "A condition must be a comparison or an all/any group of conditions.")
            return None
        if "all" in node or "any" in node:
            return self.group(node, path, depth)
        return self.comparison(node, path)

    def group(self, node: Mapping[str, Any], path: str, depth: int) -> dict[str, Any] | None:
        kind = "all" if "all" in node else "any"
        if set(node) != {kind}:
            self.error(path, f"An '{kind}' group holds only its list of conditions.")
            return None
        if depth >= MAX_DEPTH:
            self.error(path, f"Conditions are nested too deep: at most {MAX_DEPTH} levels of and/or groups.")
            return None
        members = node[kind]
        if not isinstance(members, list) or not members:
            what = "all of which must hold" if kind == "all" else "one of which must hold"
            self.error(f"{path}.{kind}", f"An '{kind}' group needs at least one condition ({what}).")
            return None
        parts = [self.condition(member, f"{path}.{kind}[{i}]", depth + 1) for i, member in enumerate(members)]
        valid = [part for part in parts if part is not None]
        if len(valid) != len(parts):
            return None
        flat: list[dict[str, Any]] = []
        for part in valid:
            flat.extend(part.get(kind, [part]))
        return flat[0] if len(flat) == 1 else {kind: flat}

    def comparison(self, node: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        self.conditions += 1
        missing = [key for key in ("left", "op", "right") if key not in node]
        extra = sorted(set(node) - {"left", "op", "right"})
        if extra:
            self.error(f"{path}.{extra[0]}", f"Unknown part '{extra[0]}' in a comparison (it has left, op, right).")
        for key in missing:
            self.error(f"{path}.{key}", f"The comparison is missing its '{key}'.")
        if missing or extra:
            return None
        op = node["op"]
        if op not in OPERATORS:
            self.error(f"{path}.op", f"Unknown comparison '{op}'; use {_listing(OPERATORS)}.")
        left = self.operand(node["left"], f"{path}.left")
        right = self.operand(node["right"], f"{path}.right")
        if left is None or right is None or op not in OPERATORS:
            return None
        if "value" in left and "value" in right:
            self.error(path, "Both sides are plain numbers: compare a price or an indicator with something.")
            return None
        return {"left": left, "op": op, "right": right}

    # ---- operands ---------------------------------------------------------------------------

    def operand(self, node: Any, path: str) -> dict[str, Any] | None:
        if _is_number(node):  # a bare number is accepted as shorthand for {"value": n}
            node = {"value": node}
        if not isinstance(node, Mapping):
            self.error(path, "Each side of a comparison is an indicator, a price column or a number.")
            return None
        kinds = [key for key in ("indicator", "column", "value") if key in node]
        if len(kinds) != 1:
            self.error(path, "Each side of a comparison is exactly one of: an indicator, a price column, a number.")
            return None
        if kinds[0] == "value":
            return self.value(node, path)
        if kinds[0] == "column":
            return self.column(node, path)
        return self.indicator(node, path)

    def value(self, node: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        if set(node) != {"value"}:
            self.error(path, "A number stands alone: remove the other parts.")
            return None
        value = node["value"]
        if not _is_number(value) or not math.isfinite(value):
            self.error(f"{path}.value", f"'{value}' is not a number.")
            return None
        return {"value": float(value)}

    def column(self, node: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        ok = self.known_keys(node, path, {"column", "timeframe", "offset"})
        column = node["column"]
        if not isinstance(column, str) or column.lower() not in COLUMNS:
            self.error(f"{path}.column", f"Unknown price column '{column}'; use {_listing(COLUMNS)}.")
            return None
        out: dict[str, Any] = {"column": column.lower()}
        timeframe, offset = self.timeframe(node, path), self.offset(node, path)
        if not ok or timeframe is False or offset is None:
            return None
        if timeframe is not None:
            out["timeframe"] = timeframe
        if offset:
            out["offset"] = offset
        return out

    def indicator(self, node: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        ok = self.known_keys(node, path, {"indicator", "args", "output", "timeframe", "offset"})
        name = node["indicator"]
        spec = INDICATORS.get(name.lower()) if isinstance(name, str) else None
        if spec is None:
            self.error(f"{path}.indicator", f"Unknown indicator '{name}'. Available: {', '.join(INDICATORS)}.")
            return None
        args = self.args(spec, node.get("args"), f"{path}.args")
        output = self.output(spec, node.get("output"), f"{path}.output")
        timeframe, offset = self.timeframe(node, path), self.offset(node, path)
        if not ok or args is None or output is False or timeframe is False or offset is None:
            return None
        out: dict[str, Any] = {"indicator": spec.name, "args": args, "output": output, "timeframe": timeframe}
        if offset:
            out["offset"] = offset
        return out

    def args(self, spec: RuleIndicator, args: Any, path: str) -> list[float] | None:
        if args is None:
            args = []
        if not isinstance(args, list):
            self.error(path, f"The settings of {spec.name} are a list of numbers.")
            return None
        if len(args) > len(spec.args):
            self.error(path, f"{spec.name} takes {_takes(spec)}, got {len(args)}.")
            return None
        out: list[float] = []
        for i, arg in enumerate(spec.args):
            raw = args[i] if i < len(args) else arg.default
            value = self.arg(spec, arg.name, arg.kind, arg.low, arg.high, raw, f"{path}[{i}]")
            if value is None:
                return None
            out.append(value)
        if spec.check is not None and (problem := spec.check(tuple(out))):
            self.error(path, f"{spec.name}: {problem}.")
            return None
        return out

    def arg(self, spec: RuleIndicator, name: str, kind: type, low: float, high: float, raw: Any, path: str) -> Any:
        if not _is_number(raw) or not math.isfinite(raw):
            self.error(path, f"The {name} of {spec.name} must be a number, not '{raw}'.")
            return None
        if kind is int and float(raw) != int(raw):
            self.error(path, f"The {name} of {spec.name} must be a whole number (got {raw:g}).")
            return None
        if not low <= raw <= high:
            self.error(path, f"The {name} of {spec.name} must be between {low:g} and {high:g} (got {raw:g}).")
            return None
        return int(raw) if kind is int else float(raw)

    def output(self, spec: RuleIndicator, output: Any, path: str) -> str | bool | None:
        """The normalised output; False when invalid (None is a valid 'single series')."""
        if not spec.outputs:
            if output in (None, "", spec.name):
                return None
            self.error(path, f"{spec.name} gives a single value; remove the output '{output}'.")
            return False
        if output is None or output == "":
            return spec.default_output
        if output not in spec.outputs:
            self.error(path, f"{spec.name} has no output '{output}'; choose {_listing(spec.outputs)}.")
            return False
        return str(output)

    def timeframe(self, node: Mapping[str, Any], path: str) -> str | bool | None:
        timeframe = node.get("timeframe")
        if timeframe is None or timeframe == "":
            return None
        if timeframe not in TIMEFRAMES:
            self.error(f"{path}.timeframe", f"Unsupported timeframe '{timeframe}'; use {_listing(TIMEFRAMES)}.")
            return False
        return str(timeframe)

    def offset(self, node: Mapping[str, Any], path: str) -> int | None:
        offset = node.get("offset", 0)
        if offset is None:
            return 0
        if not _is_number(offset) or float(offset) != int(offset) or not 0 <= offset <= MAX_OFFSET:
            self.error(f"{path}.offset", f"The offset counts bars back: a whole number from 0 to {MAX_OFFSET}.")
            return None
        return int(offset)

    def known_keys(self, node: Mapping[str, Any], path: str, allowed: set[str]) -> bool:
        extra = sorted(set(node) - allowed)
        for key in extra:
            self.error(f"{path}.{key}", f"Unknown part '{key}'.")
        return not extra


def _takes(spec: RuleIndicator) -> str:
    if not spec.args:
        return "no settings"
    names = ", ".join(arg.name for arg in spec.args)
    count = len(spec.args)
    return f"{count} number{'s' if count > 1 else ''} ({names})"


def validate_rules(spec: Any, *, path: str = "rules") -> dict[str, Any]:
    """The normalised rule set, or RuleSetError naming every offending field.

    ``spec`` is untrusted JSON: ``{"version": 1, "enter_long": COND|null, "exit_long": ...,
    "enter_short": ..., "exit_short": ...}`` (missing signals count as null). At least one entry
    rule is required; at most MAX_CONDITIONS comparisons and MAX_DEPTH levels of groups.
    """
    checker = _Checker()
    if not isinstance(spec, Mapping):
        raise RuleSetError({path: ["A rule set is an object with enter_long, exit_long, enter_short, exit_short."]})
    for key in sorted(set(spec) - {"version", *SIGNALS}):
        checker.error(f"{path}.{key}", f"Unknown part '{key}'; a rule set has {_listing(SIGNALS)}.")
    version = spec.get("version", VERSION)
    if version != VERSION or isinstance(version, bool):
        checker.error(f"{path}.version", f"Unsupported rule set version '{version}' (this platform reads {VERSION}).")
    out: dict[str, Any] = {"version": VERSION}
    for signal in SIGNALS:
        node = spec.get(signal)
        out[signal] = None if node is None else checker.condition(node, f"{path}.{signal}")
    if spec.get("enter_long") is None and spec.get("enter_short") is None:
        checker.error(f"{path}.enter_long", "The rule set is empty: give a rule to enter long or to enter short.")
    if checker.conditions > MAX_CONDITIONS:
        checker.error(path, f"Too many conditions ({checker.conditions}); a rule set may have {MAX_CONDITIONS}.")
    checker.raise_if_any()
    return out


def validate_condition(node: Any, *, path: str = "condition") -> dict[str, Any]:
    """One normalised condition (a comparison or an all/any group), or RuleSetError."""
    checker = _Checker()
    out = checker.condition(node, path)
    if checker.conditions > MAX_CONDITIONS:
        checker.error(path, f"Too many conditions ({checker.conditions}); a rule set may have {MAX_CONDITIONS}.")
    checker.raise_if_any()
    assert out is not None  # no errors recorded means a result
    return out


def operands(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every operand of a normalised condition, in order."""
    for kind in ("all", "any"):
        if kind in node:
            return [operand for member in node[kind] for operand in operands(member)]
    return [node["left"], node["right"]]
