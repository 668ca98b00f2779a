"""Strategies services: building strategies from untrusted input, rule sets (validated,
normalised, unique names per owner), look-ahead verdicts and the deployability check."""

from typing import Any

import numpy as np
import pandas as pd
import pytest

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError
from apps.strategies import services
from apps.strategies.lookahead import LookaheadReport, fingerprint
from apps.strategies.models import LookaheadVerdict, RuleSet
from apps.strategies.registry import get_strategy
from apps.strategies.rules import RuleSetError, RuleStrategy

DIP = {
    "version": 1,
    "enter_long": {"left": {"indicator": "rsi", "args": [14]}, "op": "<", "right": {"value": 30}},
    "exit_long": {"left": {"indicator": "rsi", "args": [14]}, "op": ">", "right": {"value": 70}},
}


def report(*, biased: bool, message: str = "") -> LookaheadReport:
    return LookaheadReport(
        is_biased=biased,
        columns=("enter_long",) if biased else (),
        bars=("2021-01-01T00:00:00+00:00",) if biased else (),
        checked=40,
        biased_truncations=3 if biased else 0,
        message=message,
    )


# --- strategy_build -------------------------------------------------------------------------------


def test_build_a_registered_strategy_with_validated_params():
    strategy = services.strategy_build(strategy_key="sma_cross", params={"fast": 7, "slow": 21})
    assert strategy.key == "sma_cross" and (strategy.params.fast, strategy.params.slow) == (7, 21)


@pytest.mark.parametrize(
    "key,params,field",
    [
        ("nope", {}, "strategy"),
        ("", {}, "strategy"),
        ("sma_cross", {"fast": 0}, "params.fast"),
        ("sma_cross", {"fast": 10, "volume": 1}, "params.volume"),
        ("sma_cross", [1, 2], "params"),
        ("rules", {}, "rules"),
    ],
)
def test_build_refuses_bad_input_naming_the_field(key, params, field):
    with pytest.raises(ApplicationError) as refused:
        services.strategy_build(strategy_key=key, params=params)
    assert refused.value.status_code == 400
    assert field in refused.value.extra["fields"]


def test_build_a_rule_strategy_from_rules():
    strategy = services.strategy_build(strategy_key="rules", params={}, rules=DIP)
    assert isinstance(strategy, RuleStrategy) and strategy.rules["enter_long"]["op"] == "<"
    with pytest.raises(ApplicationError) as refused:
        services.strategy_build(strategy_key="rules", params={"fast": 3}, rules=DIP)
    assert "params" in refused.value.extra["fields"]


# --- text conditions ------------------------------------------------------------------------------


def test_conditions_as_text_normalise_to_the_same_rules_as_json():
    from_text = services.rules_normalise(conditions={"enter_long": "rsi(14) < 30", "exit_long": "rsi(14) > 70"})
    assert from_text == services.rules_normalise(rules=DIP)
    assert services.rules_as_text(rules=from_text) == {
        "enter_long": "rsi(14) < 30",
        "exit_long": "rsi(14) > 70",
        "enter_short": None,
        "exit_short": None,
    }


def test_every_bad_text_slot_is_named_at_once():
    with pytest.raises(RuleSetError) as refused:
        services.rules_normalise(conditions={"enter_long": "rsi(14) <", "exit_long": "closes > 3"})
    assert set(refused.value.fields) == {"conditions.enter_long", "conditions.exit_long"}


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"conditions": {"sideways": "close > 1"}}, "conditions.sideways"),
        ({"conditions": {"exit_long": "close > 1"}}, "conditions.enter_long"),
        ({}, "rules"),
        ({"rules": DIP, "conditions": {"enter_long": "close > 1"}}, "rules"),
    ],
)
def test_normalise_refuses_what_cannot_be_a_rule_set(kwargs, field):
    with pytest.raises(ApplicationError) as refused:
        services.rules_normalise(**kwargs)
    assert field in refused.value.extra["fields"]


# --- rule sets ------------------------------------------------------------------------------------


def test_rule_set_is_stored_normalised_and_audited(alice):
    rule_set = services.rule_set_create(owner=alice, name="  RSI dip ", description="buy the dip", rules=DIP)
    stored = RuleSet.objects.get(pk=rule_set.pk)
    assert stored.name == "RSI dip" and stored.owner == alice
    assert stored.rules["enter_long"]["right"] == {"value": 30.0}
    assert stored.rules["enter_short"] is None and stored.rules["version"] == 1
    assert AuditEvent.objects.filter(action="ruleset.created", target_id=str(rule_set.pk)).exists()


def test_rule_set_names_are_unique_per_owner(alice, bob):
    services.rule_set_create(owner=alice, name="dip", rules=DIP)
    with pytest.raises(services.RuleSetNameTakenError) as taken:
        services.rule_set_create(owner=alice, name="dip", rules=DIP)
    assert taken.value.extra["fields"] == {"name": ["This name is taken."]}
    services.rule_set_create(owner=bob, name="dip", rules=DIP)  # another owner may use it
    other = services.rule_set_create(owner=alice, name="other", rules=DIP)
    with pytest.raises(services.RuleSetNameTakenError):
        services.rule_set_update(rule_set=other, name="dip", rules=DIP)
    assert RuleSet.objects.get(pk=other.pk).name == "other"


def test_rule_set_update_validates_and_keeps_the_old_rules_on_error(alice):
    rule_set = services.rule_set_create(owner=alice, name="dip", rules=DIP)
    broken = {**DIP, "enter_long": {"left": {"indicator": "rsi", "args": [0]}, "op": "<", "right": {"value": 30}}}
    with pytest.raises(RuleSetError) as refused:
        services.rule_set_update(rule_set=rule_set, name="dip", rules=broken)
    assert list(refused.value.fields) == ["rules.enter_long.left.args[0]"]
    assert RuleSet.objects.get(pk=rule_set.pk).rules == services.rules_normalise(rules=DIP)


@pytest.mark.parametrize("name", ["", "   ", "x" * 121])
def test_rule_set_needs_a_sensible_name(alice, name):
    with pytest.raises(ApplicationError) as refused:
        services.rule_set_create(owner=alice, name=name, rules=DIP)
    assert "name" in refused.value.extra["fields"]


def test_rule_set_delete_is_audited(alice):
    rule_set = services.rule_set_create(owner=alice, name="dip", rules=DIP)
    services.rule_set_delete(rule_set=rule_set)
    assert not RuleSet.objects.exists()
    assert AuditEvent.objects.filter(action="ruleset.deleted").count() == 1


# --- look-ahead verdicts and deployability ------------------------------------------------------------


def test_a_biased_verdict_refuses_deployment(db):
    strategy = get_strategy("sma_cross", fast=5, slow=20)
    services.lookahead_verdict_record(strategy=strategy, report=report(biased=True, message="enter_long changed"))
    with pytest.raises(services.LookaheadBiasedError) as refused:
        services.strategy_assert_deployable(strategy=strategy)
    assert refused.value.code == "lookahead_biased" and "enter_long changed" in refused.value.message
    # another configuration of the same strategy has its own verdict
    services.strategy_assert_deployable(strategy=get_strategy("sma_cross", fast=6, slow=20))


def test_a_never_checked_configuration_is_deployable(db):
    services.strategy_assert_deployable(strategy=get_strategy("ema_cross"))


def test_a_biased_verdict_is_sticky(db):
    strategy = get_strategy("sma_cross", fast=5, slow=20)
    services.lookahead_verdict_record(strategy=strategy, report=report(biased=True, message="peeked"))
    later = services.lookahead_verdict_record(strategy=strategy, report=report(biased=False))
    assert later.is_biased is True and later.details["message"] == "peeked"
    assert LookaheadVerdict.objects.filter(fingerprint=fingerprint(strategy)).count() == 1
    with pytest.raises(services.LookaheadBiasedError):
        services.strategy_assert_deployable(strategy=strategy)


def test_a_clean_verdict_becomes_biased_when_a_later_check_catches_it(db):
    strategy = get_strategy("sma_cross", fast=5, slow=20)
    first = services.lookahead_verdict_record(strategy=strategy, report=report(biased=False))
    assert first.is_biased is False
    services.lookahead_verdict_record(strategy=strategy, report=report(biased=True))
    assert LookaheadVerdict.objects.get(pk=first.pk).is_biased is True


def test_rule_strategy_verdicts_are_per_rules(alice):
    rule_set = services.rule_set_create(owner=alice, name="dip", rules=DIP)
    strategy = services.strategy_build(strategy_key="rules", params=None, rules=rule_set.rules)
    verdict = services.lookahead_verdict_record(strategy=strategy, report=report(biased=False), rule_set=rule_set)
    assert (verdict.strategy_key, verdict.rule_set) == ("rules", rule_set)
    other = services.strategy_build(strategy_key="rules", params=None, rules={**DIP, "exit_long": None})
    assert fingerprint(other) != verdict.fingerprint


def test_the_peeking_test_strategy_is_caught_by_the_real_check(db):
    from apps.strategies.lookahead import lookahead_check
    from tests.backtests.platform_support import PeekingStrategy

    index = pd.date_range("2021-01-01", periods=3000, freq="1h", tz="UTC")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, len(index))))
    candles = pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1.0}, index=index
    )
    result = lookahead_check(PeekingStrategy(), candles)
    verdict: Any = services.lookahead_verdict_record(strategy=PeekingStrategy(), report=result)
    assert verdict.is_biased is True
    with pytest.raises(services.LookaheadBiasedError):
        services.strategy_assert_deployable(strategy=PeekingStrategy())


def test_deleting_a_rule_set_keeps_a_biased_verdict_shared_with_identical_rules(alice):
    from django.utils import timezone

    rules = {"version": 1, "enter_long": {"left": {"column": "close"}, "op": ">", "right": {"value": 1}}}
    rule_set = RuleSet.objects.create(owner=alice, name="mine", rules=rules)
    LookaheadVerdict.objects.create(
        fingerprint="f" * 64, strategy_key="rules", rule_set=rule_set, is_biased=True, checked_at=timezone.now()
    )
    services.rule_set_delete(rule_set=rule_set)
    verdict = LookaheadVerdict.objects.get(fingerprint="f" * 64)
    assert verdict.is_biased is True and verdict.rule_set is None
