"""Rule set validation: every refusal names the offending field's path with a readable message,
and normalisation gives one form per meaning. No database."""

from typing import Any

import pytest

from apps.common.errors import ValidationFailed
from apps.strategies.rules import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    RuleSetError,
    rule_indicators,
    validate_condition,
    validate_rules,
)

RSI = {"indicator": "rsi", "args": [14], "output": None, "timeframe": None}
SMA200 = {"indicator": "sma", "args": [200], "output": None, "timeframe": None}
BUY = {"left": RSI, "op": "<", "right": {"value": 30.0}}
TREND = {"left": {"column": "close"}, "op": ">", "right": SMA200}


def rules(**signals: Any) -> dict[str, Any]:
    return {"version": 1, **signals}


def refusal(spec: Any) -> RuleSetError:
    with pytest.raises(RuleSetError) as caught:
        validate_rules(spec)
    return caught.value


def test_a_valid_rule_set_is_normalised():
    spec = {"enter_long": {"all": [{"left": {"indicator": "RSI", "args": [14]}, "op": "<", "right": 30}, TREND]}}

    out = validate_rules(spec)

    assert out == {
        "version": 1,
        "enter_long": {"all": [BUY, TREND]},
        "exit_long": None,
        "enter_short": None,
        "exit_short": None,
    }
    assert validate_rules(out) == out


def test_defaults_fill_arguments_and_outputs():
    node = validate_condition({"left": {"indicator": "macd"}, "op": ">", "right": {"value": 0}})
    assert node["left"] == {"indicator": "macd", "args": [12, 26, 9], "output": "macd", "timeframe": None}
    bands = validate_condition({"left": {"column": "close"}, "op": "<", "right": {"indicator": "bbands", "args": [20]}})
    assert bands["right"]["args"] == [20, 2.0] and bands["right"]["output"] == "middle"


def test_groups_are_flattened_and_single_member_groups_collapse():
    nested = {"all": [{"all": [BUY, {"any": [TREND]}]}, {"any": [{"any": [BUY, TREND]}]}]}
    assert validate_condition(nested) == {"all": [BUY, TREND, {"any": [BUY, TREND]}]}
    assert validate_condition({"any": [{"all": [BUY]}]}) == BUY


def test_offsets_and_column_timeframes_are_kept_only_when_set():
    node = validate_condition(
        {"left": {"column": "close", "timeframe": "1d", "offset": 0}, "op": ">", "right": {**SMA200, "offset": 2}}
    )
    assert node["left"] == {"column": "close", "timeframe": "1d"}
    assert node["right"] == {**SMA200, "offset": 2}


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            rules(enter_long={"left": {"indicator": "rsx"}, "op": "<", "right": 3}),
            "rules.enter_long.left.indicator",
            "Unknown indicator 'rsx'",
        ),
        (
            rules(enter_long={"all": [BUY, {"left": {"column": "price"}, "op": "<", "right": 3}]}),
            "rules.enter_long.all[1].left.column",
            "Unknown price column 'price'",
        ),
        (
            rules(enter_long={"left": {"indicator": "rsi", "args": [14, 3]}, "op": "<", "right": 3}),
            "rules.enter_long.left.args",
            "rsi takes 1 number (period), got 2",
        ),
        (
            rules(enter_long={"left": {"indicator": "rsi", "args": [1]}, "op": "<", "right": 3}),
            "rules.enter_long.left.args[0]",
            "between 2 and 500",
        ),
        (
            rules(enter_long={"left": {"indicator": "rsi", "args": [14.5]}, "op": "<", "right": 3}),
            "rules.enter_long.left.args[0]",
            "whole number",
        ),
        (
            rules(enter_long={"left": {"indicator": "macd", "args": [26, 12]}, "op": "<", "right": 3}),
            "rules.enter_long.left.args",
            "fast period must be shorter",
        ),
        (
            rules(enter_long={"left": {"indicator": "macd", "output": "histo"}, "op": "<", "right": 0}),
            "rules.enter_long.left.output",
            "choose macd, signal or hist",
        ),
        (
            rules(enter_long={"left": {"indicator": "rsi", "output": "k"}, "op": "<", "right": 0}),
            "rules.enter_long.left.output",
            "single value",
        ),
        (rules(enter_long={"left": RSI, "op": "==", "right": 3}), "rules.enter_long.op", "Unknown comparison '=='"),
        (
            rules(enter_long={"left": {**SMA200, "timeframe": "3h"}, "op": "<", "right": {"column": "close"}}),
            "rules.enter_long.left.timeframe",
            "Unsupported timeframe '3h'",
        ),
        (
            rules(enter_long={"left": {**SMA200, "offset": -1}, "op": "<", "right": {"column": "close"}}),
            "rules.enter_long.left.offset",
            "bars back",
        ),
        (rules(enter_long={"left": 30, "op": "<", "right": 40}), "rules.enter_long", "Both sides are plain numbers"),
        (rules(enter_long={"left": RSI, "op": "<"}), "rules.enter_long.right", "missing its 'right'"),
        (
            rules(enter_long={"left": {"indicator": "rsi", "column": "close"}, "op": "<", "right": 3}),
            "rules.enter_long.left",
            "exactly one of",
        ),
        (rules(enter_long={"all": []}), "rules.enter_long.all", "at least one condition"),
        (rules(enter_long={"all": [BUY], "any": [BUY]}), "rules.enter_long", "only its list"),
        (rules(enter_long="rsi < 30"), "rules.enter_long", "comparison or an all/any group"),
        (rules(exit_long=BUY), "rules.enter_long", "The rule set is empty"),
        ({}, "rules.enter_long", "The rule set is empty"),
        (rules(enter_long=BUY, enter_later=BUY), "rules.enter_later", "Unknown part 'enter_later'"),
        ({"version": 2, "enter_long": BUY}, "rules.version", "Unsupported rule set version"),
        ("rsi < 30", "rules", "A rule set is an object"),
    ],
)
def test_refusals_name_the_offending_path(spec, path, fragment):
    error = refusal(spec)
    assert isinstance(error, ValidationFailed)
    assert path in error.fields, error.fields
    assert any(fragment in message for message in error.fields[path]), error.fields[path]
    assert error.code == "invalid_rules"


def test_nesting_too_deep():
    node: dict[str, Any] = BUY
    for level in range(MAX_DEPTH + 1):
        node = {"all" if level % 2 else "any": [node, TREND]}
    error = refusal(rules(enter_long=node))
    assert any("nested too deep" in message for messages in error.fields.values() for message in messages)


def test_too_many_conditions():
    error = refusal(rules(enter_long={"any": [BUY] * (MAX_CONDITIONS + 1)}))
    assert "rules" in error.fields and "Too many conditions" in error.fields["rules"][0]


def test_every_problem_is_reported_at_once():
    spec = rules(
        enter_long={
            "all": [{"left": {"indicator": "rsx"}, "op": "<", "right": 3}, {"left": RSI, "op": "?", "right": 3}]
        },
        exit_long={"left": {"column": "price"}, "op": "<", "right": 3},
    )
    error = refusal(spec)
    assert set(error.fields) == {
        "rules.enter_long.all[0].left.indicator",
        "rules.enter_long.all[1].op",
        "rules.exit_long.left.column",
    }
    assert "2 more problems" in error.message
    assert error.extra == {"fields": error.fields}


def test_the_editor_catalogue_describes_every_indicator_consistently():
    catalogue = rule_indicators()
    names = [item["name"] for item in catalogue]
    assert len(names) == len(set(names))
    assert {"sma", "ema", "rsi", "macd", "bbands", "atr", "supertrend", "support_resistance", "confluence"} <= set(
        names
    )
    for item in catalogue:
        for arg in item["args"]:
            assert arg["low"] <= arg["default"] <= arg["high"], (item["name"], arg)
            assert arg["kind"] in ("int", "float") and arg["help"]
        assert item["default_output"] == (item["outputs"][0] if item["outputs"] else None)
        # the defaults themselves validate
        validate_condition({"left": {"indicator": item["name"]}, "op": ">", "right": {"value": 0}})
