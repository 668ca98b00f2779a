"""Writes of the backtests app (see each module): jobs' life cycle, backtests, optimisations,
walk-forwards and Monte Carlo. Import from here."""

from apps.backtests.services.backtests import backtest_cancel, backtest_create, backtest_rerun, backtest_run
from apps.backtests.services.jobs import JobStopped, jobs_reap
from apps.backtests.services.montecarlo import monte_carlo_cancel, monte_carlo_create, monte_carlo_run
from apps.backtests.services.optimisations import (
    optimisation_cancel,
    optimisation_chunk_run,
    optimisation_create,
    optimisation_run,
)
from apps.backtests.services.runs import RunInputError, RunSpec, run_spec_validate
from apps.backtests.services.walkforward import walk_forward_cancel, walk_forward_create, walk_forward_run

__all__ = [
    "JobStopped",
    "RunInputError",
    "RunSpec",
    "backtest_cancel",
    "backtest_create",
    "backtest_rerun",
    "backtest_run",
    "jobs_reap",
    "monte_carlo_cancel",
    "monte_carlo_create",
    "monte_carlo_run",
    "optimisation_cancel",
    "optimisation_chunk_run",
    "optimisation_create",
    "optimisation_run",
    "run_spec_validate",
    "walk_forward_cancel",
    "walk_forward_create",
    "walk_forward_run",
]
