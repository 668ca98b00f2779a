"""Writes of the ML app (see each module). Import from here.

- strategies.py: create / update / delete an ML strategy, every input validated and named.
- schedules.py: the retraining schedule (a django-celery-beat PeriodicTask) and its description.
- training.py: a training's life (start, the run, cancel, the reaper, the scheduled start).
- registry.py: promotion, rollback, and the comparison that decides a candidate's fate.
- drift.py: drift checks (PSI per feature) and what they trigger.
- deploy.py: backtesting and deploying an ML strategy through those apps' services.
"""

from apps.ml.services.deploy import ml_backtest_start, ml_deploy
from apps.ml.services.drift import drift_check, drift_check_all
from apps.ml.services.registry import version_promote, version_rollback, versions_compare
from apps.ml.services.schedules import ml_schedule_describe, ml_schedule_set
from apps.ml.services.strategies import ml_strategy_create, ml_strategy_delete, ml_strategy_update
from apps.ml.services.training import (
    training_cancel,
    training_reap,
    training_run,
    training_run_now,
    training_scheduled,
    training_start,
)

__all__ = [
    "drift_check",
    "drift_check_all",
    "ml_backtest_start",
    "ml_deploy",
    "ml_schedule_describe",
    "ml_schedule_set",
    "ml_strategy_create",
    "ml_strategy_delete",
    "ml_strategy_update",
    "training_cancel",
    "training_reap",
    "training_run",
    "training_run_now",
    "training_scheduled",
    "training_start",
    "version_promote",
    "version_rollback",
    "versions_compare",
]
