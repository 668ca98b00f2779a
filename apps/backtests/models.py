"""Backtests and the research built on them (optimisation, walk-forward, Monte Carlo).

Every job is owned by a user, run by a Celery task on the `backtests` queue, and moves
queued -> running -> succeeded | failed | cancelled; it never stays "running" after its task ends
(a failure stores `error`). Engine settings (cash, costs, fill, sizing, exits) are kept as JSON in
`settings`, validated by `apps.backtests.engine.EngineSettings.from_dict` before saving.
"""

from django.conf import settings
from django.db import models

from apps.common.models import TimeStampedModel
from apps.marketdata import timeframes


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class StrategyRun(TimeStampedModel):
    """What to run: a registered strategy with params, or a user's rule set, on one instrument's
    candles of one timeframe over [start_at, end_at) (open ends = all stored), with engine settings."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=120, blank=True)
    strategy_key = models.CharField(max_length=80, help_text="Registry key; 'rules' for a rule set.")
    params = models.JSONField(default=dict, blank=True)
    rule_set = models.ForeignKey(
        "strategies.RuleSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rules = models.JSONField(
        null=True, blank=True, help_text="The rule set's rules as they were when the job was created (reproducible)."
    )
    instrument = models.ForeignKey("marketdata.Instrument", on_delete=models.PROTECT, related_name="+")
    timeframe = models.CharField(max_length=4, choices=timeframes.CHOICES)
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    settings = models.JSONField(
        default=dict, blank=True, help_text="EngineSettings.as_dict(): costs, fill, sizing, exits."
    )

    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class Backtest(StrategyRun):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="backtests")
    rerun_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns")
    metrics = models.JSONField(default=dict, blank=True)
    equity = models.JSONField(
        default=dict,
        blank=True,
        help_text="Downsampled curves for charts: {t: [epoch ms], equity: [...], drawdown: [...], benchmark: [...]}",
    )
    candles_count = models.BigIntegerField(default=0)
    duration_ms = models.FloatField(null=True, blank=True, help_text="Engine time (signals + fills + metrics).")
    is_lookahead_biased = models.BooleanField(default=False)
    lookahead = models.JSONField(default=dict, blank=True, help_text="The look-ahead check's report for this run.")
    timings = models.JSONField(
        default=dict,
        blank=True,
        help_text="Milliseconds per phase of the run: load, lookahead, engine, curves, store_trades.",
    )

    class Meta(StrategyRun.Meta):
        indexes = [models.Index(fields=["owner", "-created_at"], name="backtest_owner_created")]

    def __str__(self) -> str:
        return self.name or f"Backtest #{self.pk} {self.strategy_key}"


class BacktestTrade(models.Model):
    """One round trip of a backtest (floats: analytics, not balances).

    Written only in bulk by `apps.backtests.services.trades.trades_store` (one binary COPY on
    PostgreSQL) for a backtest that exists, and deleted with it by the ORM's cascade. So the
    foreign key has no database constraint: its deferred per-row trigger cost ~0.2 s at commit
    for 20,000 trades, as much as storing them (the Candle table does the same). It has no index
    of its own either: the unique (backtest, number) index serves every read.
    """

    class Side(models.TextChoices):
        LONG = "long", "Long"
        SHORT = "short", "Short"

    backtest = models.ForeignKey(
        Backtest, on_delete=models.CASCADE, related_name="trades", db_constraint=False, db_index=False
    )
    number = models.PositiveIntegerField()
    side = models.CharField(max_length=5, choices=Side.choices)
    entry_at = models.DateTimeField()
    entry_price = models.FloatField()
    exit_at = models.DateTimeField(null=True, blank=True)
    exit_price = models.FloatField(null=True, blank=True)
    size = models.FloatField()
    fees = models.FloatField(default=0.0)
    pnl = models.FloatField(default=0.0)
    return_pct = models.FloatField(default=0.0)
    bars_held = models.PositiveIntegerField(default=0)
    exit_reason = models.CharField(
        max_length=20, blank=True, help_text="signal, stop, target, trailing, breakeven, time, end"
    )

    class Meta:
        ordering = ["backtest", "number"]
        constraints = [models.UniqueConstraint(fields=["backtest", "number"], name="backtesttrade_unique_number")]

    def __str__(self) -> str:
        return f"#{self.number} {self.side} {self.entry_at:%Y-%m-%d %H:%M}"


class Optimisation(StrategyRun):
    """A parameter search: grid or Optuna TPE over the Params bounds, trials run as Celery tasks
    sharing one Optuna study stored in the database (`study_name`)."""

    class Method(models.TextChoices):
        GRID = "grid", "Grid"
        TPE = "tpe", "Optuna TPE"

    class Objective(models.TextChoices):
        SHARPE = "sharpe", "Sharpe ratio"
        TOTAL_RETURN = "total_return", "Total return"
        CALMAR = "calmar", "Calmar ratio"
        PROFIT_FACTOR = "profit_factor", "Profit factor"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="optimisations")
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.GRID)
    objective = models.CharField(max_length=16, choices=Objective.choices, default=Objective.SHARPE)
    space = models.JSONField(default=dict, blank=True, help_text="{param: {low, high, step} | {choices: [...]}}")
    min_trades = models.PositiveIntegerField(default=1, help_text="Trials with fewer trades are infeasible.")
    n_trials = models.PositiveIntegerField(default=100)
    study_name = models.CharField(max_length=80, blank=True)
    best_params = models.JSONField(null=True, blank=True)
    best_value = models.FloatField(null=True, blank=True)
    best_metrics = models.JSONField(default=dict, blank=True)
    trials_done = models.PositiveIntegerField(default=0)
    seed = models.BigIntegerField(null=True, blank=True, help_text="TPE sampler seed (reproducible on one worker).")
    chunks_total = models.PositiveIntegerField(default=0, help_text="Chunk tasks the trials are split into.")
    chunks_done = models.JSONField(
        default=list, blank=True, help_text="Numbers of the chunks whose trials are stored (each stored once)."
    )

    def __str__(self) -> str:
        return self.name or f"Optimisation #{self.pk} {self.strategy_key}"


class OptimisationTrial(models.Model):
    """One evaluated parameter set (mirrors the Optuna trial, for the page and the heat map)."""

    optimisation = models.ForeignKey(Optimisation, on_delete=models.CASCADE, related_name="trials")
    number = models.PositiveIntegerField()
    params = models.JSONField()
    value = models.FloatField(null=True, blank=True, help_text="Objective; null when infeasible or failed.")
    metrics = models.JSONField(default=dict, blank=True)
    is_feasible = models.BooleanField(default=True)
    error = models.CharField(max_length=500, blank=True, help_text="Why the parameter set could not run.")

    class Meta:
        ordering = ["optimisation", "number"]
        constraints = [models.UniqueConstraint(fields=["optimisation", "number"], name="optimisationtrial_unique")]

    def __str__(self) -> str:
        return f"trial {self.number}"


class WalkForward(StrategyRun):
    """Walk-forward analysis: optimise on each train window, run the best params on the next test
    window, stitch the out-of-sample equity, report in-sample vs out-of-sample degradation."""

    class Mode(models.TextChoices):
        ROLLING = "rolling", "Rolling"
        ANCHORED = "anchored", "Anchored"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="walk_forwards")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.ROLLING)
    windows_count = models.PositiveIntegerField(default=5)
    train_ratio = models.FloatField(default=0.7, help_text="Share of each window used for training (rolling).")
    method = models.CharField(max_length=8, choices=Optimisation.Method.choices, default=Optimisation.Method.GRID)
    objective = models.CharField(
        max_length=16, choices=Optimisation.Objective.choices, default=Optimisation.Objective.SHARPE
    )
    space = models.JSONField(default=dict, blank=True)
    min_trades = models.PositiveIntegerField(default=1)
    n_trials = models.PositiveIntegerField(default=50)
    windows = models.JSONField(
        default=list, blank=True, help_text="Per window: ranges, best params, IS and OOS metrics."
    )
    metrics = models.JSONField(default=dict, blank=True, help_text="Stitched out-of-sample metrics and degradation.")
    equity = models.JSONField(
        default=dict, blank=True, help_text="Stitched out-of-sample equity {t, equity, drawdown}."
    )

    def __str__(self) -> str:
        return self.name or f"Walk-forward #{self.pk} {self.strategy_key}"


class MonteCarlo(TimeStampedModel):
    """Monte Carlo of a finished backtest's trades: resample (bootstrap) or reshuffle them, with
    optional return noise, thousands of times; distributions of final equity and max drawdown."""

    class Method(models.TextChoices):
        RESAMPLE = "resample", "Resample with replacement"
        RESHUFFLE = "reshuffle", "Reshuffle order"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="monte_carlos")
    backtest = models.ForeignKey(Backtest, on_delete=models.CASCADE, related_name="monte_carlos")
    method = models.CharField(max_length=10, choices=Method.choices, default=Method.RESAMPLE)
    simulations = models.PositiveIntegerField(default=5000)
    noise = models.FloatField(default=0.0, help_text="Std-dev of Gaussian noise added to each trade's return.")
    seed = models.BigIntegerField(null=True, blank=True)
    loss_threshold = models.FloatField(default=0.2, help_text="Report the probability of losing at least this share.")
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    results = models.JSONField(
        default=dict, blank=True, help_text="Percentiles, histograms, probability of loss (see engine.montecarlo)."
    )

    class Meta:
        ordering = ["-created_at"]

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def __str__(self) -> str:
        return f"Monte Carlo #{self.pk} of backtest {self.backtest_id}"
