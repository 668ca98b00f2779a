"""Backtests: create (validate everything, then queue), cancel, re-run, and the run itself.

The run (`backtest_run`, called by the task of that name) loads the candles, builds the
strategy, runs the look-ahead check (a biased strategy still runs, flagged), runs the engine with
progress, and stores metrics, trades (bulk) and chart curves (downsampled) with the status in one
transaction. Any exception fails the backtest with a readable `error`; the worker carries on.
"""

import logging
import time
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.backtests.engine import run_backtest
from apps.backtests.models import Backtest
from apps.backtests.services import jobs
from apps.backtests.services.curves import curves_downsample
from apps.backtests.services.runs import RunInputError, run_spec_validate, run_strategy
from apps.backtests.services.trades import trades_store
from apps.common.errors import NotFound
from apps.marketdata.storage import candles_frame
from apps.strategies.lookahead import lookahead_check
from apps.strategies.services import lookahead_verdict_record
from apps.users.models import User

logger = logging.getLogger(__name__)

# Phases of a run on the progress bar.
_LOADED, _CHECKED, _SIMULATED = 0.1, 0.2, 0.85


def _enqueue(backtest_id: int) -> None:
    from apps.backtests import tasks

    tasks.backtest_run.delay(backtest_id)


def backtest_create(
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
    name: str = "",
    rules: Mapping[str, Any] | None = None,
    rerun_of: Backtest | None = None,
) -> Backtest:
    """Validate a backtest request and queue it (the task is sent after commit).

    Raises an ApplicationError naming the field (see `runs.run_spec_validate`); nothing is
    stored or queued then. ``rules`` replaces the rule set's current rules (a re-run keeps the
    rules it first ran with).
    """
    spec = run_spec_validate(
        owner=owner,
        strategy_key=strategy_key,
        params=params,
        rule_set_id=rule_set_id,
        instrument_id=instrument_id,
        timeframe=timeframe,
        start_at=start_at,
        end_at=end_at,
        settings=settings,
        rules=rules,
    )
    name = (name or "").strip()
    if len(name) > 120:
        raise RunInputError("Keep the name under 120 characters.", field="name")
    jobs.jobs_assert_capacity(owner=owner)
    with transaction.atomic():
        backtest = Backtest(owner=owner, name=name, rerun_of=rerun_of, **spec.fields())
        backtest.full_clean()
        backtest.save()
        audit_record(
            action="backtest.created",
            actor=owner,
            target=backtest,
            details={"strategy": spec.strategy_key, "instrument": spec.instrument.pk, "timeframe": spec.timeframe},
        )
        transaction.on_commit(partial(_enqueue, backtest.pk))
    return backtest


def _check_actor(job: Any, actor: User) -> None:
    if job.owner_id != actor.pk and not actor.is_staff:
        raise NotFound("No such job.")


def backtest_cancel(*, backtest: Backtest, actor: User) -> Backtest:
    """Cancel a queued or running backtest (a running one stops at its next progress step).
    Refuses a finished one (Conflict). Staff may cancel anyone's; that is audited."""
    return jobs.job_cancel_as(Backtest, backtest, actor=actor, label="backtest", audit_action="backtest.cancelled")


def backtest_rerun(*, backtest: Backtest, actor: User) -> Backtest:
    """A new backtest with the same strategy, rules snapshot, instrument, range and settings,
    validated again (the candles or the strategy may have changed) and queued for the owner."""
    _check_actor(backtest, actor)
    with transaction.atomic():
        rerun = backtest_create(
            owner=backtest.owner,
            strategy_key=backtest.strategy_key,
            params=backtest.params if backtest.rules is None else None,
            rule_set_id=backtest.rule_set_id,
            instrument_id=backtest.instrument_id,
            timeframe=backtest.timeframe,
            start_at=backtest.start_at,
            end_at=backtest.end_at,
            settings=backtest.settings,
            name=backtest.name,
            rules=backtest.rules,
            rerun_of=backtest,
        )
        if actor.pk != backtest.owner_id:
            audit_record(
                action="backtest.rerun", actor=actor, user=backtest.owner, target=rerun, details={"of": backtest.pk}
            )
    return rerun


class NoCandlesError(RunInputError):
    default_code = "no_candles"


def backtest_run(*, backtest_id: int) -> None:
    """Run a queued backtest to the end (the task's body). Safe to call twice: only the call
    that claims it (queued -> running) runs it. Never raises for a failure of the backtest
    itself: the row is marked failed with the message."""
    backtest = jobs.job_claim(Backtest, backtest_id)
    if backtest is None:
        return
    try:
        _execute(backtest)
    except jobs.JobStopped:
        logger.info("backtest %s stopped: no longer running", backtest_id)
    except SoftTimeLimitExceeded:
        limit = django_settings.BACKTEST_TIME_LIMIT_SECONDS
        jobs.job_fail(Backtest, backtest_id, f"The backtest took longer than the time limit ({limit} s).")
    except Exception as exc:
        if not hasattr(exc, "message"):
            logger.exception("backtest %s failed", backtest_id)
        jobs.job_fail(Backtest, backtest_id, jobs.error_message(exc))


def _execute(backtest: Backtest) -> None:
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    candles = candles_frame(backtest.instrument_id, backtest.timeframe, backtest.start_at, backtest.end_at)
    if candles.empty:
        raise NoCandlesError("No candles in range.", field="start")
    timings["load_ms"] = _lap(clock)
    jobs.job_progress(backtest, _LOADED)

    clock = time.perf_counter()
    strategy = run_strategy(strategy_key=backtest.strategy_key, params=backtest.params, rules=backtest.rules)
    strategy.timeframe = backtest.timeframe
    report = lookahead_check(strategy, candles)
    # The verdict is sticky: a configuration once caught peeking stays flagged on every backtest
    # of it, even when this run's candles happen not to expose the peek.
    verdict = lookahead_verdict_record(strategy=strategy, report=report, rule_set=backtest.rule_set)
    timings["lookahead_ms"] = _lap(clock)
    jobs.job_progress(backtest, _CHECKED)

    clock = time.perf_counter()
    result = run_backtest(
        strategy, candles, settings=backtest.settings, progress=jobs.progress_scaled(backtest, _CHECKED, _SIMULATED)
    )
    timings["engine_ms"] = _lap(clock)

    clock = time.perf_counter()
    curves = curves_downsample(equity=result.equity, drawdown=result.drawdown, benchmark=result.benchmark)
    timings["curves_ms"] = _lap(clock)
    with transaction.atomic():
        running = jobs.job_lock_running(Backtest, backtest.pk)
        if running is None:
            raise jobs.JobStopped
        clock = time.perf_counter()
        trades_store(backtest_id=backtest.pk, trades=result.trades)
        timings["store_trades_ms"] = _lap(clock)
        jobs.job_succeed(
            running,
            fields={
                "metrics": jobs.json_safe(result.metrics),
                "equity": curves,
                "candles_count": len(candles),
                "duration_ms": float(result.duration_ms),
                "is_lookahead_biased": bool(report.is_biased or verdict.is_biased),
                "lookahead": jobs.json_safe(report.as_dict() if report.is_biased else verdict.details),
                "timings": timings,
            },
        )


def _lap(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
