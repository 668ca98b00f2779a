"""Writes of the strategies app (see each module): building strategies and rule sets
(`rule_sets`), deployments' life cycle (`deployments`) and the tick (`ticks`).

The names of the former single module are re-exported here, so
``from apps.strategies.services import strategy_build`` keeps working. Deployments and ticks
are imported from their own modules (``apps.strategies.services.deployments``), which keeps
this package importable by the apps the trades app depends on.
"""

from apps.strategies.services.rule_sets import (
    NAME_MAX_LENGTH,
    RULE_SLOTS,
    RULES_KEY,
    LookaheadBiasedError,
    RuleSetNameTakenError,
    lookahead_verdict_record,
    rule_set_create,
    rule_set_delete,
    rule_set_update,
    rules_as_text,
    rules_from_text,
    rules_normalise,
    strategy_assert_deployable,
    strategy_build,
)

__all__ = [
    "NAME_MAX_LENGTH",
    "RULES_KEY",
    "RULE_SLOTS",
    "LookaheadBiasedError",
    "RuleSetNameTakenError",
    "lookahead_verdict_record",
    "rule_set_create",
    "rule_set_delete",
    "rule_set_update",
    "rules_as_text",
    "rules_from_text",
    "rules_normalise",
    "strategy_assert_deployable",
    "strategy_build",
]
