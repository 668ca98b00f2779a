"""The text form of conditions: examples, syntax errors with positions, and round trips
(format -> parse gives the same normalised node, for generated nodes). No database."""

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apps.strategies.rules import (
    COLUMNS,
    INDICATORS,
    OPERATORS,
    TIMEFRAMES,
    RuleSetError,
    format_condition,
    parse_condition_text,
    validate_condition,
)
from apps.strategies.rules.text import MAX_PARENTHESES, MAX_TEXT_LENGTH


def rsi(period: int = 14) -> dict[str, Any]:
    return {"indicator": "rsi", "args": [period], "output": None, "timeframe": None}


def sma(period: int, timeframe: str | None = None) -> dict[str, Any]:
    return {"indicator": "sma", "args": [period], "output": None, "timeframe": timeframe}


CLOSE = {"column": "close"}


def test_parses_the_issue_example():
    assert parse_condition_text("rsi(14) < 30 and close > sma(200)") == {
        "all": [
            {"left": rsi(), "op": "<", "right": {"value": 30.0}},
            {"left": CLOSE, "op": ">", "right": sma(200)},
        ]
    }


def test_and_binds_tighter_than_or_and_parentheses_group():
    a, b, c = "close > 1", "close > 2", "close > 3"
    plain = parse_condition_text(f"{a} or {b} and {c}")
    grouped = parse_condition_text(f"({a} or {b}) and {c}")
    one, two, three = (parse_condition_text(text) for text in (a, b, c))
    assert plain == {"any": [one, {"all": [two, three]}]}
    assert grouped == {"all": [{"any": [one, two]}, three]}


def test_outputs_timeframes_offsets_and_crosses():
    node = parse_condition_text("macd(12,26,9).hist crosses_above 0 or close crosses above sma(50)@4h[1]")
    assert node == {
        "any": [
            {
                "left": {"indicator": "macd", "args": [12, 26, 9], "output": "hist", "timeframe": None},
                "op": "crosses_above",
                "right": {"value": 0.0},
            },
            {"left": CLOSE, "op": "crosses_above", "right": {**sma(50, "4h"), "offset": 1}},
        ]
    }
    assert parse_condition_text("close > sma(50)[1]@4h") == parse_condition_text("close > sma(50)@4h[1]")


def test_case_blanks_and_defaults_do_not_matter():
    assert parse_condition_text("  RSI ( 14 )<30  AND Close>SMA(200) ") == parse_condition_text(
        "rsi(14) < 30 and close > sma(200)"
    )
    assert parse_condition_text("rsi < 30") == parse_condition_text("rsi(14) < 30")
    assert parse_condition_text("close > fibonacci(5, 5).fib_0.618")["right"]["output"] == "fib_0.618"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("close >", "Something is missing at the end of the text"),
        ("(close > 1", "closing parenthesis"),
        ("close > 1)", "Expected 'and', 'or' or the end of the condition at character 10"),
        ("close 1", "Expected a comparison"),
        ("close = 1", "Equality is not offered"),
        ("clsoe > 1", "Unknown name 'clsoe'"),
        ("close > $", "Unexpected '$' at character 9"),
        ("rsi(a) > 1", "Expected a number"),
        ("and > 1", "Expected an indicator, a price column or a number at character 1"),
        ("rsx(3) > 1", "Unknown indicator 'rsx'"),
        ("sma(20)@3h > close", "Unsupported timeframe '3h'"),
    ],
)
def test_syntax_and_validation_errors_are_readable(text, fragment):
    with pytest.raises(RuleSetError) as caught:
        parse_condition_text(text, path="rules.enter_long")
    messages = [message for messages in caught.value.fields.values() for message in messages]
    assert any(fragment in message for message in messages), messages
    assert all(path.startswith("rules.enter_long") for path in caught.value.fields)


def test_deep_parentheses_are_refused_with_a_readable_error_not_a_crash():
    # given: 400 pairs of parentheses (one parser recursion each), then just one too many
    for depth in (400, MAX_PARENTHESES + 1):
        text = "(" * depth + "close > 1" + ")" * depth

        # when / then
        with pytest.raises(RuleSetError) as caught:
            parse_condition_text(text, path="conditions.enter_long")
        assert list(caught.value.fields) == ["conditions.enter_long"]
        (message,) = caught.value.fields["conditions.enter_long"]
        assert f"Too many parentheses inside one another: at most {MAX_PARENTHESES} levels" in message
        assert f"at character {MAX_PARENTHESES + 1} ('(')" in message


def test_parentheses_up_to_the_limit_still_parse():
    nested = "(" * MAX_PARENTHESES + "close > 1" + ")" * MAX_PARENTHESES
    assert parse_condition_text(nested) == parse_condition_text("close > 1")
    grouped = "((close > 1 or (close > 2 and (close > 3 or close > 4))))"
    assert parse_condition_text(grouped) == parse_condition_text("close > 1 or close > 2 and (close > 3 or close > 4)")


def test_over_long_text_is_refused_before_parsing():
    text = " and ".join(["close > sma(200)"] * 200)
    assert len(text) > MAX_TEXT_LENGTH

    with pytest.raises(RuleSetError) as caught:
        parse_condition_text(text, path="conditions.exit_long")

    assert caught.value.fields == {
        "conditions.exit_long": [
            f"The condition is too long: {len(text):,} characters, at most {MAX_TEXT_LENGTH:,} are allowed. Shorten it."
        ]
    }
    # The limit itself is fine (blanks count as characters).
    assert parse_condition_text("close > 1".ljust(MAX_TEXT_LENGTH)) == parse_condition_text("close > 1")


def test_format_writes_every_argument_and_multi_outputs():
    node = validate_condition({"left": {"indicator": "bbands"}, "op": ">", "right": {"column": "close"}})
    assert format_condition(node) == "bbands(20,2).middle > close"
    assert format_condition(parse_condition_text("obv > obv[3]")) == "obv > obv[3]"


# ---- round trips -------------------------------------------------------------------------------


def _arg(low: float, high: float, kind: type) -> st.SearchStrategy[float]:
    if kind is int:
        return st.integers(int(low), int(high))
    return st.floats(low, high, allow_nan=False)


@st.composite
def indicator_operands(draw: st.DrawFn) -> dict[str, Any]:
    spec = INDICATORS[draw(st.sampled_from(sorted(INDICATORS)))]
    count = draw(st.integers(0, len(spec.args)))
    node: dict[str, Any] = {
        "indicator": spec.name,
        "args": [draw(_arg(arg.low, arg.high, arg.kind)) for arg in spec.args[:count]],
        "output": draw(st.sampled_from([None, *spec.outputs])),
        "timeframe": draw(st.sampled_from([None, *TIMEFRAMES])),
    }
    if draw(st.booleans()):
        node["offset"] = draw(st.integers(0, 20))
    return node


columns = st.builds(
    lambda name, timeframe, offset: {"column": name, "timeframe": timeframe, "offset": offset},
    st.sampled_from(COLUMNS),
    st.sampled_from([None, *TIMEFRAMES]),
    st.integers(0, 5),
)
values = st.builds(
    lambda number: {"value": number},
    st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False, width=64)),
)
series = st.one_of(indicator_operands(), columns)
comparisons = st.builds(
    lambda left, op, right: {"left": left, "op": op, "right": right},
    series,
    st.sampled_from(OPERATORS),
    st.one_of(series, values),
)
conditions = st.recursive(
    comparisons,
    lambda children: st.one_of(
        st.builds(lambda members: {"all": members}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda members: {"any": members}, st.lists(children, min_size=1, max_size=3)),
    ),
    max_leaves=8,
)


def normalised(node: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_condition(node)
    except RuleSetError:
        assume(False)
        raise


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(conditions)
def test_text_round_trip(node):
    # given: any valid condition, normalised
    expected = normalised(node)

    # when
    text = format_condition(expected)

    # then: the text parses back to the same node, and normalising again changes nothing
    assert parse_condition_text(text) == expected, text
    assert validate_condition(expected) == expected
