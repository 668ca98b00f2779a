"""Reads of the strategies app that leave it: the catalogue of code strategies (public, the same
for everyone), and rule sets (owner-scoped: another user's rule set does not exist for you)."""

from typing import Any

from django.db.models import QuerySet

from apps.common.errors import NotFound
from apps.strategies import rules as rule_engine
from apps.strategies.base import Strategy
from apps.strategies.errors import UnknownStrategyError
from apps.strategies.models import LookaheadVerdict, RuleSet
from apps.strategies.params import params_schema
from apps.strategies.registry import strategy_class, strategy_classes
from apps.users.models import User


def _summary(documentation: str) -> str:
    """The first paragraph of a docstring, on one line."""
    paragraph = documentation.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def strategy_describe(cls: type[Strategy]) -> dict[str, Any]:
    """What the catalogue says about one strategy class: key, name, summary, documentation,
    the Params JSON schema, and the warm-up of the default parameters (bars)."""
    documentation = cls.documentation()
    return {
        "key": cls.key,
        "name": cls.name or cls.key,
        "summary": _summary(documentation),
        "documentation": documentation,
        "params_schema": params_schema(cls.Params),
        "warmup": int(cls().warmup()),
    }


def strategy_catalogue() -> list[dict[str, Any]]:
    """Every public code strategy, by key (see `strategy_describe`)."""
    return [strategy_describe(cls) for cls in strategy_classes()]


def strategy_get(*, key: str) -> dict[str, Any]:
    """One public strategy's description; NotFound (404) for an unknown or hidden key."""
    try:
        cls = strategy_class(key)
    except UnknownStrategyError:
        cls = None
    if cls is None or not cls.is_public:
        raise NotFound(f"There is no strategy '{key}'.")
    return strategy_describe(cls)


def rule_indicators() -> list[dict[str, Any]]:
    """What the rule editor offers: indicators with their arguments and outputs."""
    return rule_engine.rule_indicators()


def rule_set_list_for_user(*, user: User) -> QuerySet[RuleSet]:
    return RuleSet.objects.filter(owner=user).order_by("-updated_at", "-id")


def rule_set_get_for_user(*, user: User, rule_set_id: int) -> RuleSet:
    """The user's rule set; NotFound (404) for a missing one or another user's."""
    rule_set = RuleSet.objects.filter(owner=user, pk=rule_set_id).first()
    if rule_set is None:
        raise NotFound("No such rule set.")
    return rule_set


def lookahead_verdict_get(*, fingerprint: str) -> LookaheadVerdict | None:
    return LookaheadVerdict.objects.filter(fingerprint=fingerprint).first()
