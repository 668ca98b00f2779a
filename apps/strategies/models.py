from django.conf import settings
from django.db import models

from apps.common.models import TimeStampedModel
from apps.marketdata import timeframes


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


class Deployment(TimeStampedModel):
    """A strategy (or a rule set) with params running on a trading account: one or more
    instruments, one timeframe, sizing, exits and risk limits, each kept as validated JSON.

    States: draft -> paper | live -> paused | stopped | halted. `paper` and `live` are the
    running states (live only on a non-paper account, after a fresh second factor). `halted` is
    set by risk (maximum drawdown, a reconciliation it cannot explain, a kill switch) and needs
    the owner to resume. Each deployment has its own positions, ledger and P&L even when several
    share an account; `capital` is what its sizing and P&L count from.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PAPER = "paper", "Running (paper)"
        LIVE = "live", "Running (live)"
        PAUSED = "paused", "Paused"
        STOPPED = "stopped", "Stopped"
        HALTED = "halted", "Halted by risk"

    class Kind(models.TextChoices):
        STRATEGY = "strategy", "Strategy"
        COPY = "copy", "Copy trading"

    RUNNING = (Status.PAPER, Status.LIVE)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deployments")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="deployments")
    name = models.CharField(max_length=120)
    # A copy deployment is a follower's copy book (apps.marketplace Subscription.deployment): it is
    # never ticked, its orders come from the copy fan-out, and it is managed through its subscription.
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.STRATEGY, db_index=True)
    strategy_key = models.CharField(max_length=80, help_text="Registry key; 'rules' for a rule set.")
    params = models.JSONField(default=dict, blank=True)
    rule_set = models.ForeignKey(RuleSet, null=True, blank=True, on_delete=models.PROTECT, related_name="deployments")
    rules = models.JSONField(null=True, blank=True, help_text="The rule set's rules as deployed.")
    instruments = models.ManyToManyField("marketdata.Instrument", related_name="deployments")
    timeframe = models.CharField(max_length=4, choices=timeframes.CHOICES)
    capital = models.DecimalField(max_digits=28, decimal_places=10, help_text="Quote currency allocated.")
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="EngineSettings.as_dict() subset: fill, entry, allow_short, costs (paper), sizing, exits.",
    )
    risk = models.JSONField(
        default=dict, blank=True, help_text="apps.trades.risk.limits.DeploymentLimits: position, loss, drawdown."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    is_reduce_only = models.BooleanField(default=False, help_text="Kill switch in reduce-only mode.")
    fence = models.PositiveBigIntegerField(default=0, help_text="Raised on every state change; ticks check it.")
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_bar_ts = models.DateTimeField(null=True, blank=True, help_text="Newest bar ticked.")
    peak_equity = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    day_start_equity = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    day_started_on = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "timeframe"], name="deployment_running")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_running(self) -> bool:
        return self.status in self.RUNNING


class Signal(models.Model):
    """What a deployment's strategy said at one closed bar of one instrument. UNIQUE per
    (deployment, instrument, bar): a tick delivered twice records, and acts on, it once."""

    class Action(models.TextChoices):
        NONE = "none", "No action"
        ENTER_LONG = "enter_long", "Enter long"
        EXIT_LONG = "exit_long", "Exit long"
        ENTER_SHORT = "enter_short", "Enter short"
        EXIT_SHORT = "exit_short", "Exit short"
        STOP = "stop", "Protective exit"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="signals")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    bar_ts = models.DateTimeField()
    action = models.CharField(max_length=12, choices=Action.choices)
    price = models.FloatField(help_text="The bar's close.")
    details = models.JSONField(default=dict, blank=True, help_text="stop/target levels, the refusal if any.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-bar_ts", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "instrument", "bar_ts"], name="signal_unique_per_bar")
        ]

    def __str__(self) -> str:
        return f"{self.action} @ {self.bar_ts:%Y-%m-%d %H:%M}"


class TickRun(models.Model):
    """One execution of a deployment's tick for one bar: UNIQUE(deployment, instrument, bar_ts),
    so a duplicate delivery (two beats, a redelivered message) is refused by the database and
    counted, and overlapping runs are visible from started/finished."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="tick_runs")
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    bar_ts = models.DateTimeField()
    announced_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=40, blank=True, help_text="order, no_signal, refused:<code>, error, …")
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-bar_ts", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "instrument", "bar_ts"], name="tick_run_unique_per_bar")
        ]

    def __str__(self) -> str:
        return f"tick {self.deployment_id} {self.bar_ts}"


class DeploymentWebhook(TimeStampedModel):
    """A deployment's door for TradingView alerts (apps.strategies.webhooks): the URL carries
    ``token``; the sender proves itself with the secret (in the JSON body, or as the HMAC-SHA256
    key of an ``X-Signature`` header). The secret is kept encrypted (it is an HMAC key, so it
    cannot be a one-way hash), shown to the owner once, and replaced by ``rotate``."""

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="webhook")
    token = models.CharField(max_length=64, unique=True, help_text="The URL part; not a secret on its own.")
    secret_encrypted = models.TextField(help_text="MultiFernet token of the secret (apps.accounts.crypto).")
    secret_rotated_at = models.DateTimeField()
    is_enabled = models.BooleanField(default=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=30)
    last_signal_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"webhook of {self.deployment_id}"


class WebhookSignal(models.Model):
    """One request to a deployment's webhook, accepted or refused, with why. ``payload`` holds
    the fields the platform reads, never the secret. UNIQUE(deployment, nonce) among accepted
    signals: a replayed nonce cannot be accepted twice, even by two requests at once."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REFUSED = "refused", "Refused"

    webhook = models.ForeignKey(DeploymentWebhook, on_delete=models.CASCADE, related_name="signals")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="webhook_signals")
    status = models.CharField(max_length=8, choices=Status.choices)
    code = models.CharField(max_length=40, help_text="ok, no_order, bad_secret, replayed_nonce, …")
    http_status = models.PositiveSmallIntegerField()
    message = models.CharField(max_length=500, blank=True)
    action = models.CharField(max_length=8, blank=True)
    symbol = models.CharField(max_length=40, blank=True)
    nonce = models.CharField(max_length=100, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="The payload's timestamp.")
    payload = models.JSONField(default=dict, blank=True)
    order = models.ForeignKey("trades.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    order_ids = models.JSONField(default=list, blank=True, help_text="Every order it placed (exit, entry).")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "nonce"],
                condition=models.Q(status="accepted"),
                name="webhook_signal_unique_nonce",
            )
        ]
        indexes = [models.Index(fields=["deployment", "-created_at"], name="webhook_signal_recent")]

    def __str__(self) -> str:
        return f"{self.status} {self.code} {self.created_at:%Y-%m-%d %H:%M:%S}"
