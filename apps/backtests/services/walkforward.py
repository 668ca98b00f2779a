"""Walk-forward jobs: optimise on each train window, run the best parameters on the test window
after it, stitch the out-of-sample equity, and report in-sample vs out-of-sample degradation
(`apps.backtests.research.walkforward`). One task runs the whole analysis with progress.
"""

import logging
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.backtests.models import Optimisation, WalkForward
from apps.backtests.research import walkforward as research
from apps.backtests.services import jobs
from apps.backtests.services.backtests import NoCandlesError
from apps.backtests.services.curves import curves_downsample
from apps.backtests.services.optimisations import search_plan
from apps.backtests.services.runs import RunInputError, run_spec_validate
from apps.marketdata.models import Candle
from apps.marketdata.storage import candles_frame
from apps.strategies.services import RULES_KEY
from apps.users.models import User

logger = logging.getLogger(__name__)


def _enqueue(walk_forward_id: int) -> None:
    from apps.backtests import tasks

    tasks.walk_forward_run.delay(walk_forward_id)


def _bars_in_range(spec: Any) -> int:
    bars = Candle.objects.filter(instrument_id=spec.instrument.pk, timeframe=spec.timeframe)
    if spec.start_at is not None:
        bars = bars.filter(ts__gte=spec.start_at)
    if spec.end_at is not None:
        bars = bars.filter(ts__lt=spec.end_at)
    return bars.count()


def walk_forward_create(
    *,
    owner: User,
    strategy_key: str,
    params: Mapping[str, Any] | None,
    rule_set_id: Any,
    instrument_id: Any,
    timeframe: str,
    start_at: datetime | None,
    end_at: datetime | None,
    settings: Mapping[str, Any] | None,
    mode: str,
    windows_count: int,
    train_ratio: float,
    method: str,
    objective: str,
    space: Mapping[str, Any] | None,
    min_trades: int,
    n_trials: int,
    name: str = "",
) -> WalkForward:
    """Validate a walk-forward request and queue it (after commit).

    Besides the run spec and the search (as for `optimisation_create`, per train window), the
    windows must make sense: ``mode`` rolling or anchored, 1..WALK_FORWARD_MAX_WINDOWS windows,
    ``train_ratio`` in (0, 1), and enough bars in the range for every train and test window
    (counted with one indexed COUNT). Errors name the field.
    """
    if rule_set_id not in (None, "") or (strategy_key or "").strip() == RULES_KEY:
        raise RunInputError("Rule strategies have no parameters to optimise; pick a code strategy.", field="strategy")
    spec = run_spec_validate(
        owner=owner,
        strategy_key=strategy_key,
        params=params,
        rule_set_id=None,
        instrument_id=instrument_id,
        timeframe=timeframe,
        start_at=start_at,
        end_at=end_at,
        settings=settings,
    )
    if mode not in WalkForward.Mode.values:
        raise RunInputError(f"Use one of {', '.join(WalkForward.Mode.values)}.", field="mode")
    if method not in Optimisation.Method.values:
        raise RunInputError(f"Use one of {', '.join(Optimisation.Method.values)}.", field="method")
    if objective not in Optimisation.Objective.values:
        raise RunInputError(f"Use one of {', '.join(Optimisation.Objective.values)}.", field="objective")
    limit = int(django_settings.WALK_FORWARD_MAX_WINDOWS)
    if isinstance(windows_count, bool) or not isinstance(windows_count, int) or not 1 <= windows_count <= limit:
        raise RunInputError(f"Give a whole number of windows from 1 to {limit}.", field="windows_count")
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, int | float) or not 0.1 <= train_ratio <= 0.95:
        raise RunInputError("Give the train share as a fraction from 0.1 to 0.95.", field="train_ratio")
    if isinstance(min_trades, bool) or not isinstance(min_trades, int) or min_trades < 0:
        raise RunInputError("Give a whole number, 0 or more.", field="min_trades")
    if space is not None and not isinstance(space, Mapping):
        raise RunInputError("The search space must be an object of parameter: range.", field="space")
    _, trials = search_plan(
        strategy_key=spec.strategy_key, params=spec.params, method=method, space=space, n_trials=n_trials
    )
    # One task runs every window's search: bound the whole, not just one window's.
    budget = int(django_settings.OPTIMISATION_MAX_TRIALS)
    if trials * windows_count > budget:
        raise RunInputError(
            f"{windows_count} windows x {trials} trials = {trials * windows_count} backtests; the limit is "
            f"{budget}. Use fewer windows, fewer trials or a narrower grid.",
            field="n_trials" if method == Optimisation.Method.TPE else "space",
        )
    # The run keeps the search's largest warm-up as history before the first window: check the
    # windows fit with that, so a wide search is refused here rather than failing later.
    research.windows(
        range(_bars_in_range(spec)),
        mode=mode,
        windows_count=windows_count,
        train_ratio=float(train_ratio),
        warmup=research.walk_forward_warmup(
            strategy_key=spec.strategy_key, space=space, base_params=spec.params, timeframe=spec.timeframe
        ),
    )
    jobs.jobs_assert_capacity(owner=owner)
    with transaction.atomic():
        walk_forward = WalkForward(
            owner=owner,
            name=(name or "").strip()[:120],
            mode=mode,
            windows_count=windows_count,
            train_ratio=float(train_ratio),
            method=method,
            objective=objective,
            space=dict(space or {}),
            min_trades=min_trades,
            n_trials=trials,
            **spec.fields(),
        )
        walk_forward.full_clean()
        walk_forward.save()
        audit_record(
            action="walkforward.created",
            actor=owner,
            target=walk_forward,
            details={"strategy": spec.strategy_key, "mode": mode, "windows": windows_count},
        )
        transaction.on_commit(partial(_enqueue, walk_forward.pk))
    return walk_forward


def walk_forward_cancel(*, walk_forward: WalkForward, actor: User) -> WalkForward:
    """Cancel a queued or running walk-forward (it stops at its next progress step)."""
    return jobs.job_cancel_as(
        WalkForward, walk_forward, actor=actor, label="walk-forward", audit_action="walkforward.cancelled"
    )


def walk_forward_run(*, walk_forward_id: int) -> None:
    """Run a queued walk-forward (the task's body; safe to deliver twice)."""
    job = jobs.job_claim(WalkForward, walk_forward_id)
    if job is None:
        return
    try:
        _execute(job)
    except jobs.JobStopped:
        logger.info("walk-forward %s stopped: no longer running", walk_forward_id)
    except SoftTimeLimitExceeded:
        limit = django_settings.BACKTEST_TIME_LIMIT_SECONDS
        jobs.job_fail(WalkForward, walk_forward_id, f"The walk-forward took longer than the time limit ({limit} s).")
    except Exception as exc:
        if not hasattr(exc, "message"):
            logger.exception("walk-forward %s failed", walk_forward_id)
        jobs.job_fail(WalkForward, walk_forward_id, jobs.error_message(exc))


def _execute(job: WalkForward) -> None:
    candles = candles_frame(job.instrument_id, job.timeframe, job.start_at, job.end_at)
    if candles.empty:
        raise NoCandlesError("No candles in range.", field="start")
    result = research.walk_forward(
        strategy_key=job.strategy_key,
        candles=candles,
        settings=job.settings,
        mode=job.mode,
        windows_count=job.windows_count,
        train_ratio=job.train_ratio,
        method=job.method,
        objective=job.objective,
        space=job.space,
        min_trades=job.min_trades,
        n_trials=job.n_trials,
        base_params=job.params,
        grid_limit=int(django_settings.OPTIMISATION_GRID_LIMIT),
        progress=jobs.progress_scaled(job, 0.0, 0.95),
    )
    summary = result.as_dict(max_points=1)
    curves = curves_downsample(equity=result.equity, drawdown=result.drawdown) if len(result.equity) else {}
    with transaction.atomic():
        running = jobs.job_lock_running(WalkForward, job.pk)
        if running is None:
            raise jobs.JobStopped
        jobs.job_succeed(
            running,
            fields={
                "windows": summary["windows"],
                "metrics": {**summary["metrics"], "degradation": summary["degradation"]},
                "equity": curves,
            },
        )
