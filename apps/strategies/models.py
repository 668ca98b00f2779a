from django.conf import settings
from django.db import models

from apps.common.models import TimeStampedModel


class RuleSet(TimeStampedModel):
    """A no-code strategy a user wrote: JSON rules over the indicator library, compiled by
    `apps.strategies.rules.compile_rules` to the same vectorised form as code strategies.
    `rules` is stored normalised (as `validate_rules` returns it) and validated on every save
    through the service."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rule_sets")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    rules = models.JSONField()

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="ruleset_unique_owner_name")]

    def __str__(self) -> str:
        return self.name


class LookaheadVerdict(TimeStampedModel):
    """The look-ahead check's latest verdict for one strategy configuration.

    `fingerprint` is `apps.strategies.lookahead.fingerprint(strategy)`: a hash of the key, the
    params and (for rule strategies) the rules. A biased configuration is flagged on every backtest
    of it and cannot be deployed or listed.
    """

    fingerprint = models.CharField(max_length=64, unique=True)
    strategy_key = models.CharField(max_length=80, db_index=True)
    params = models.JSONField(default=dict)
    # SET_NULL: a verdict may be shared by identical rules of several users; deleting one rule set
    # must not delete a biased verdict (that would clear the flag).
    rule_set = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.SET_NULL, related_name="verdicts")
    is_biased = models.BooleanField(default=False)
    details = models.JSONField(default=dict, help_text="Which columns changed, at which bars, on how many truncations.")
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        return f"{self.strategy_key} {'BIASED' if self.is_biased else 'ok'}"
