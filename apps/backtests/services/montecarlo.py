"""Monte Carlo jobs: resample or reshuffle a finished backtest's trades (optionally with return
noise) thousands of times, and store the distributions (`apps.backtests.research.montecarlo`).

Only a succeeded backtest with trades, owned by the requester, can be simulated; the simulation
count is bounded (MONTE_CARLO_MAX_SIMULATIONS).
"""

import logging
import math
from functools import partial
from typing import Any

import pandas as pd
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.backtests.models import Backtest, BacktestTrade, JobStatus, MonteCarlo
from apps.backtests.research.montecarlo import monte_carlo, trade_equity_returns
from apps.backtests.services import jobs
from apps.backtests.services.runs import RunInputError
from apps.users.models import User

logger = logging.getLogger(__name__)


def _enqueue(monte_carlo_id: int) -> None:
    from apps.backtests import tasks

    tasks.monte_carlo_run.delay(monte_carlo_id)


def _number(value: Any, field: str, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RunInputError("Give a number.", field=field)
    if value > high or value < low or (low_open and value == low):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise RunInputError(f"Give a number {bound} and at most {high:g}.", field=field)
    return float(value)


def monte_carlo_create(
    *,
    owner: User,
    backtest: Backtest,
    method: str,
    simulations: int,
    noise: float,
    seed: int | None,
    loss_threshold: float,
) -> MonteCarlo:
    """Validate and queue a Monte Carlo of ``backtest`` (after commit).

    The backtest must be the owner's (otherwise "No such backtest", field ``backtest``, the same
    as for one that does not exist), succeeded, and have trades. Errors name ``method``,
    ``simulations``, ``noise``, ``seed``, ``loss_threshold``.
    """
    if backtest.owner_id != owner.pk:
        raise RunInputError("No such backtest.", field="backtest")
    if backtest.status != JobStatus.SUCCEEDED:
        raise RunInputError("Only a backtest that has succeeded can be simulated.", field="backtest")
    if not BacktestTrade.objects.filter(backtest=backtest).exists():
        raise RunInputError("The backtest made no trades: there is nothing to simulate.", field="backtest")
    if method not in MonteCarlo.Method.values:
        raise RunInputError(f"Use one of {', '.join(MonteCarlo.Method.values)}.", field="method")
    limit = int(django_settings.MONTE_CARLO_MAX_SIMULATIONS)
    if isinstance(simulations, bool) or not isinstance(simulations, int) or not 100 <= simulations <= limit:
        raise RunInputError(f"Give a whole number from 100 to {limit:,}.", field="simulations")
    noise = _number(noise, "noise", 0.0, 1.0)
    loss_threshold = _number(loss_threshold, "loss_threshold", 0.0, 1.0, low_open=True)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise RunInputError("Give a whole number, 0 or more, or leave it empty.", field="seed")
    jobs.jobs_assert_capacity(owner=owner)
    with transaction.atomic():
        job = MonteCarlo(
            owner=owner,
            backtest=backtest,
            method=method,
            simulations=simulations,
            noise=noise,
            seed=seed,
            loss_threshold=loss_threshold,
        )
        job.full_clean()
        job.save()
        audit_record(
            action="montecarlo.created",
            actor=owner,
            target=job,
            details={"backtest": backtest.pk, "method": method, "simulations": simulations},
        )
        transaction.on_commit(partial(_enqueue, job.pk))
    return job


def monte_carlo_cancel(*, monte_carlo: MonteCarlo, actor: User) -> MonteCarlo:
    """Cancel a queued or running Monte Carlo; Conflict when it has finished."""
    return jobs.job_cancel_as(MonteCarlo, monte_carlo, actor=actor, label="Monte Carlo", audit_action=None)


def monte_carlo_run(*, monte_carlo_id: int) -> None:
    """Run a queued Monte Carlo (the task's body; safe to deliver twice)."""
    job = jobs.job_claim(MonteCarlo, monte_carlo_id)
    if job is None:
        return
    try:
        _execute(job)
    except jobs.JobStopped:
        logger.info("monte carlo %s stopped: no longer running", monte_carlo_id)
    except SoftTimeLimitExceeded:
        limit = django_settings.BACKTEST_TIME_LIMIT_SECONDS
        jobs.job_fail(MonteCarlo, monte_carlo_id, f"The simulation took longer than the time limit ({limit} s).")
    except Exception as exc:
        if not hasattr(exc, "message"):
            logger.exception("monte carlo %s failed", monte_carlo_id)
        jobs.job_fail(MonteCarlo, monte_carlo_id, jobs.error_message(exc))


def _execute(job: MonteCarlo) -> None:
    rows = BacktestTrade.objects.filter(backtest_id=job.backtest_id).order_by("number").values_list("pnl", "exit_at")
    trades = pd.DataFrame.from_records(list(rows), columns=["pnl", "exit_at"])
    cash = float(job.backtest.settings.get("cash") or 10_000.0)
    returns = trade_equity_returns(trades, cash)
    results = monte_carlo(
        trade_returns=returns,
        cash=cash,
        method=job.method,
        simulations=job.simulations,
        noise=job.noise,
        seed=job.seed,
        loss_threshold=job.loss_threshold,
        progress=jobs.progress_scaled(job, 0.0, 0.95),
    )
    with transaction.atomic():
        running = jobs.job_lock_running(MonteCarlo, job.pk)
        if running is None:
            raise jobs.JobStopped
        jobs.job_succeed(running, fields={"results": jobs.json_safe(results), "seed": results.get("seed", job.seed)})
