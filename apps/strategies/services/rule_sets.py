"""Writes of the strategies app about strategies themselves: rule sets, look-ahead verdicts, and
building a runnable strategy from untrusted input.

Every error names the field it is about, as the API and the forms show it: ``strategy``,
``params.<name>``, ``rules.<path>`` (from `apps.strategies.rules.validate_rules`),
``conditions.<slot>`` for text conditions, ``name``.
"""

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.common.errors import ValidationFailed
from apps.common.errors import field_error as _field_error
from apps.strategies import rules as rule_engine
from apps.strategies.base import Strategy
from apps.strategies.errors import InvalidParamsError
from apps.strategies.lookahead import LookaheadReport, fingerprint
from apps.strategies.models import LookaheadVerdict, RuleSet
from apps.strategies.registry import get_strategy
from apps.users.models import User

RULES_KEY = "rules"
RULE_SLOTS = ("enter_long", "exit_long", "enter_short", "exit_short")
NAME_MAX_LENGTH = 120


class RuleSetNameTakenError(ValidationFailed):
    default_code = "name_taken"


class LookaheadBiasedError(ValidationFailed):
    """The strategy configuration was caught using future bars; it cannot be deployed or listed."""

    default_code = "lookahead_biased"


# --- building strategies ------------------------------------------------------------------------


def strategy_build(*, strategy_key: str, params: Mapping[str, Any] | None, rules: Any = None) -> Strategy:
    """A strategy instance from untrusted input: a registry key with params, or ``"rules"`` with
    a rule set's JSON (compiled by `compile_rules`).

    Raises UnknownStrategyError (400, field ``strategy``), InvalidParamsError (``params.<name>``)
    or RuleSetError (``rules.<path>``). Hidden strategies (``is_public = False``) can be built by
    key: hiding keeps them out of the catalogue, it is not a permission.
    """
    key = (strategy_key or "").strip()
    if not key:
        raise _field_error("Choose a strategy.", "strategy")
    if key == RULES_KEY:
        if rules is None:
            raise _field_error("A rule strategy needs its rules (or a rule set).", "rules")
        if params:
            raise InvalidParamsError("A rule strategy takes no parameters; its rules say everything.", field="params")
        return rule_engine.compile_rules(rules)
    if params is not None and not isinstance(params, Mapping):
        raise InvalidParamsError("Parameters must be an object of name: value.", field="params")
    return get_strategy(key, dict(params or {}))


def rules_normalise(*, rules: Any = None, conditions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate a rule set given as JSON (``rules``) or as text conditions per slot
    (``conditions={"enter_long": "rsi(14) < 30 and close > sma(200)", ...}``), and return the
    normalised JSON that is stored. Exactly one of the two must be given. Errors name
    ``rules.<path>`` or ``conditions.<slot>`` (every problem at once)."""
    if (rules is None) == (conditions is None):
        raise _field_error("Give either rules (JSON) or conditions (text), not both or neither.", "rules")
    if conditions is not None:
        spec = rules_from_text(conditions=conditions)
        # Text slots were validated where they were written; this checks the whole (an entry rule).
        return rule_engine.validate_rules(spec, path="conditions")
    return rule_engine.validate_rules(rules)


def rules_from_text(*, conditions: Mapping[str, Any]) -> dict[str, Any]:
    """The rule-set JSON of text conditions per slot (empty or missing slots are null)."""
    if not isinstance(conditions, Mapping):
        raise _field_error("Conditions must be an object of slot: text.", "conditions")
    unknown = sorted(set(conditions) - set(RULE_SLOTS))
    if unknown:
        raise _field_error(f"Unknown slot '{unknown[0]}'; use {', '.join(RULE_SLOTS)}.", f"conditions.{unknown[0]}")
    spec: dict[str, Any] = {"version": 1}
    errors: dict[str, list[str]] = {}
    for slot in RULE_SLOTS:
        text = conditions.get(slot)
        if text is None or (isinstance(text, str) and not text.strip()):
            spec[slot] = None
            continue
        try:
            spec[slot] = rule_engine.parse_condition_text(text, path=f"conditions.{slot}")
        except rule_engine.RuleSetError as exc:
            errors.update(exc.fields)
    if errors:
        raise rule_engine.RuleSetError(errors)
    return spec


def rules_as_text(*, rules: Mapping[str, Any]) -> dict[str, str | None]:
    """Each slot of normalised rules in the text form (null where the slot is empty)."""
    return {slot: rule_engine.format_condition(rules[slot]) if rules.get(slot) else None for slot in RULE_SLOTS}


# --- rule sets ----------------------------------------------------------------------------------


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise _field_error("Give the rule set a name.", "name")
    if len(name) > NAME_MAX_LENGTH:
        raise _field_error(f"Keep the name under {NAME_MAX_LENGTH} characters.", "name")
    return name


def _name_taken(name: str) -> RuleSetNameTakenError:
    return RuleSetNameTakenError(
        f"You already have a rule set called '{name}'.", extra={"fields": {"name": ["This name is taken."]}}
    )


def _save(rule_set: RuleSet) -> None:
    others = RuleSet.objects.filter(owner_id=rule_set.owner_id, name=rule_set.name).exclude(pk=rule_set.pk)
    if others.exists():
        raise _name_taken(rule_set.name)
    rule_set.full_clean(validate_unique=False, validate_constraints=False)
    try:
        # Two saves racing past the check above: the constraint decides.
        with transaction.atomic():
            rule_set.save()
    except IntegrityError:
        raise _name_taken(rule_set.name) from None


@transaction.atomic
def rule_set_create(*, owner: User, name: str, description: str = "", rules: Any) -> RuleSet:
    """Create a rule set after validating its rules (stored normalised). The name is unique per
    owner (RuleSetNameTakenError, field ``name``)."""
    normalised = rule_engine.validate_rules(rules)
    rule_set = RuleSet(owner=owner, name=_clean_name(name), description=description or "", rules=normalised)
    _save(rule_set)
    audit_record(action="ruleset.created", actor=owner, target=rule_set, details={"name": rule_set.name})
    return rule_set


@transaction.atomic
def rule_set_update(*, rule_set: RuleSet, name: str, description: str = "", rules: Any) -> RuleSet:
    """Replace a rule set's name, description and rules (validated, stored normalised).

    Backtests keep the rules they ran with (they snapshot them), so editing never changes a
    past result. The caller has checked ownership (selectors).
    """
    rule_set.rules = rule_engine.validate_rules(rules)
    rule_set.name = _clean_name(name)
    rule_set.description = description or ""
    _save(rule_set)
    audit_record(action="ruleset.updated", actor=rule_set.owner, target=rule_set, details={"name": rule_set.name})
    return rule_set


@transaction.atomic
def rule_set_delete(*, rule_set: RuleSet) -> None:
    """Delete a rule set. Jobs that used it keep their snapshot of the rules."""
    audit_record(action="ruleset.deleted", actor=rule_set.owner, target=rule_set, details={"name": rule_set.name})
    rule_set.delete()


# --- look-ahead verdicts ------------------------------------------------------------------------


@transaction.atomic
def lookahead_verdict_record(
    *, strategy: Strategy, report: LookaheadReport, rule_set: RuleSet | None = None
) -> LookaheadVerdict:
    """Store the look-ahead check's verdict for this strategy configuration (by fingerprint).

    A verdict is sticky once biased: a later clean check (other candles may simply not expose
    the peek) does not clear it, since one proven peek is enough to refuse deployment. The row
    is locked while it is decided, so two backtests checking at once cannot lose the flag.
    """
    key = fingerprint(strategy)
    now = timezone.now()
    details = report.as_dict()
    verdict = LookaheadVerdict.objects.select_for_update().filter(fingerprint=key).first()
    if verdict is None:
        try:
            with transaction.atomic():
                return LookaheadVerdict.objects.create(
                    fingerprint=key,
                    strategy_key=strategy.key,
                    params=strategy.params.as_dict(),
                    rule_set=rule_set,
                    is_biased=report.is_biased,
                    details=details,
                    checked_at=now,
                )
        except IntegrityError:
            verdict = LookaheadVerdict.objects.select_for_update().get(fingerprint=key)
    if report.is_biased or not verdict.is_biased:
        verdict.details = details
        verdict.is_biased = report.is_biased
    verdict.checked_at = now
    if rule_set is not None:
        verdict.rule_set = rule_set
    verdict.save(update_fields=["details", "is_biased", "checked_at", "rule_set", "updated_at"])
    return verdict


def strategy_assert_deployable(*, strategy: Strategy) -> None:
    """Refuse (LookaheadBiasedError, field ``strategy``) a configuration whose look-ahead
    verdict is biased. A configuration never checked passes: the check runs with every
    backtest, and the deploy and listing flows call this before going live."""
    verdict = LookaheadVerdict.objects.filter(fingerprint=fingerprint(strategy)).only("is_biased", "details").first()
    if verdict is not None and verdict.is_biased:
        detail = verdict.details.get("message") if isinstance(verdict.details, dict) else ""
        message = f"{strategy.describe()} uses future bars (look-ahead bias) and cannot be deployed or listed." + (
            f" {detail}" if detail else ""
        )
        raise LookaheadBiasedError(message, extra={"fields": {"strategy": [message]}})
