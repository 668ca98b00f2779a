"""Optimisations: grid or Optuna TPE over a strategy's Params bounds, fanned out as chunk tasks.

- `optimisation_create` validates everything (run spec, method, objective, the search space
  within the Params bounds, the grid's size, n_trials) and queues the coordinator.
- `optimisation_run` (the coordinator task) claims the job, splits the trials into chunks,
  creates the shared Optuna study for TPE, and sends one `optimisation_chunk_run` per chunk.
- `optimisation_chunk_run` evaluates its chunk (grid: its slice of the grid points; TPE: n
  trials of the shared study, whose sampler learns from every worker's trials), then, holding the
  optimisation's row lock, stores its trials once (a redelivered chunk finds its number in
  `chunks_done` and stores nothing), adds them to `trials_done`, and when it is the last chunk
  by that record (not by timing) finalises the best params, value and metrics.
"""

import logging
import math
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.db import transaction

from apps.audit.services import audit_record
from apps.backtests.models import JobStatus, Optimisation, OptimisationTrial
from apps.backtests.research import optimise as research
from apps.backtests.research.space import grid_points, space_build
from apps.backtests.services import jobs
from apps.backtests.services.backtests import NoCandlesError
from apps.backtests.services.runs import RunInputError, run_spec_validate
from apps.backtests.services.studies import optuna_storage_is_per_study, optuna_storage_url
from apps.marketdata.storage import candles_frame
from apps.strategies.registry import strategy_class
from apps.strategies.services import RULES_KEY
from apps.users.models import User

logger = logging.getLogger(__name__)

# How often (in trials) a chunk checks that its optimisation is still running.
_CANCEL_CHECK_EVERY = 5


def _enqueue_coordinator(optimisation_id: int) -> None:
    from apps.backtests import tasks

    tasks.optimisation_run.delay(optimisation_id)


def _enqueue_chunk(optimisation_id: int, chunk: int, points: list[dict[str, Any]] | None = None) -> None:
    from apps.backtests import tasks

    tasks.optimisation_chunk_run.delay(optimisation_id, chunk, points)


def _choice(value: str, choices: Any, field: str) -> str:
    allowed = [str(c) for c in choices]
    if value not in allowed:
        raise RunInputError(f"Use one of {', '.join(allowed)}.", field=field)
    return value


def _whole(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RunInputError(f"Give a whole number from {low:,} to {high:,}.", field=field)
    return value


def search_plan(
    *, strategy_key: str, params: Mapping[str, Any], method: str, space: Mapping[str, Any] | None, n_trials: int
) -> tuple[list[dict[str, Any]] | None, int]:
    """Validate the search: (the grid's points or None for TPE, the number of trials).

    Raises ResearchInputError naming ``space...``, or RunInputError for ``n_trials``."""
    params_cls = strategy_class(strategy_key).Params
    dims = space_build(params_cls, space)
    if method == Optimisation.Method.GRID:
        points = grid_points(
            dims, limit=django_settings.OPTIMISATION_GRID_LIMIT, params_cls=params_cls, base_params=params
        )
        if not points:
            raise RunInputError("No combination of this grid satisfies the strategy's rules.", field="space")
        return points, len(points)
    return None, _whole(n_trials, "n_trials", 1, django_settings.OPTIMISATION_MAX_TRIALS)


def optimisation_create(
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
    method: str,
    objective: str,
    space: Mapping[str, Any] | None,
    min_trades: int,
    n_trials: int,
    name: str = "",
    seed: int | None = None,
) -> Optimisation:
    """Validate an optimisation request and queue its coordinator (after commit).

    Fixed parameters come from ``params``; ``space`` (``{param: {low, high, step} |
    {choices}}``, empty = every optimisable parameter) names what is searched, within the
    Params bounds. A grid runs every valid combination (``n_trials`` is its size, at most
    OPTIMISATION_GRID_LIMIT); TPE runs ``n_trials`` (at most OPTIMISATION_MAX_TRIALS). Rule
    strategies have no parameters to search (field ``strategy``).
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
    method = _choice(method, Optimisation.Method.values, "method")
    objective = _choice(objective, Optimisation.Objective.values, "objective")
    min_trades = _whole(min_trades, "min_trades", 0, 1_000_000)
    if seed is not None:
        seed = _whole(seed, "seed", 0, 2**62)
    if space is not None and not isinstance(space, Mapping):
        raise RunInputError("The search space must be an object of parameter: range.", field="space")
    _, trials = search_plan(
        strategy_key=spec.strategy_key, params=spec.params, method=method, space=space, n_trials=n_trials
    )
    jobs.jobs_assert_capacity(owner=owner)
    with transaction.atomic():
        optimisation = Optimisation(
            owner=owner,
            name=(name or "").strip()[:120],
            method=method,
            objective=objective,
            space=dict(space or {}),
            min_trades=min_trades,
            n_trials=trials,
            seed=seed,
            **spec.fields(),
        )
        optimisation.full_clean()
        optimisation.save()
        audit_record(
            action="optimisation.created",
            actor=owner,
            target=optimisation,
            details={"strategy": spec.strategy_key, "method": method, "trials": trials},
        )
        transaction.on_commit(partial(_enqueue_coordinator, optimisation.pk))
    return optimisation


def optimisation_cancel(*, optimisation: Optimisation, actor: User) -> Optimisation:
    """Cancel a queued or running optimisation: chunks still queued do nothing, running ones
    stop within a few trials, and nothing more is stored. Conflict when already finished."""
    return jobs.job_cancel_as(
        Optimisation, optimisation, actor=actor, label="optimisation", audit_action="optimisation.cancelled"
    )


def _chunk_size(method: str) -> int:
    if method == Optimisation.Method.GRID:
        return int(django_settings.OPTIMISATION_GRID_CHUNK)
    return int(django_settings.OPTIMISATION_TPE_CHUNK)


def _guarded(optimisation_id: int, body: Callable[[], None]) -> None:
    """Run ``body``; any failure fails the optimisation with a readable message."""
    try:
        body()
    except jobs.JobStopped:
        logger.info("optimisation %s stopped: no longer running", optimisation_id)
    except SoftTimeLimitExceeded:
        limit = django_settings.BACKTEST_TIME_LIMIT_SECONDS
        jobs.job_fail(Optimisation, optimisation_id, f"A part of the optimisation took longer than {limit} s.")
    except Exception as exc:
        if not hasattr(exc, "message"):
            logger.exception("optimisation %s failed", optimisation_id)
        jobs.job_fail(Optimisation, optimisation_id, jobs.error_message(exc))


def optimisation_run(*, optimisation_id: int) -> None:
    """The coordinator (safe to deliver twice: only the claim runs it): plan the chunks, create
    the shared study for TPE, and send every chunk task after commit."""
    optimisation = jobs.job_claim(Optimisation, optimisation_id)
    if optimisation is None:
        return
    _guarded(optimisation_id, partial(_plan, optimisation))


def _plan(optimisation: Optimisation) -> None:
    size = _chunk_size(optimisation.method)
    chunks = max(1, math.ceil(optimisation.n_trials / size))
    study_name = ""
    points: list[dict[str, Any]] | None = None
    if optimisation.method == Optimisation.Method.GRID:
        # Enumerated once here and sent with each chunk: checking thousands of combinations
        # against the Params' rules takes a good fraction of a second, once per chunk otherwise.
        points = _grid(optimisation)
        chunks = max(1, math.ceil(len(points) / size))
    else:
        study_name = f"optimisation-{optimisation.pk}-{secrets.token_hex(4)}"
        research.study_create(
            optuna_storage_url(study_name=study_name), study_name, direction="maximize", seed=optimisation.seed
        )
    with transaction.atomic():
        running = jobs.job_lock_running(Optimisation, optimisation.pk)
        if running is None:
            raise jobs.JobStopped
        running.chunks_total = chunks
        running.study_name = study_name
        running.save(update_fields=["chunks_total", "study_name", "updated_at"])
        for chunk in range(chunks):
            part = points[chunk * size : (chunk + 1) * size] if points is not None else None
            transaction.on_commit(partial(_enqueue_chunk, optimisation.pk, chunk, part))


def optimisation_chunk_run(*, optimisation_id: int, chunk: int, points: list[dict[str, Any]] | None = None) -> None:
    """Evaluate and store one chunk (see the module docstring). Does nothing when the
    optimisation is not running or the chunk is already stored. A grid chunk evaluates the
    ``points`` the coordinator sent with it (enumerated again when absent)."""
    optimisation = Optimisation.objects.filter(pk=optimisation_id, status=JobStatus.RUNNING).first()
    if optimisation is None or chunk in optimisation.chunks_done or not 0 <= chunk < optimisation.chunks_total:
        return
    _guarded(optimisation_id, partial(_chunk, optimisation, chunk, points))


def _grid(optimisation: Optimisation) -> list[dict[str, Any]]:
    points, _ = search_plan(
        strategy_key=optimisation.strategy_key,
        params=optimisation.params,
        method=optimisation.method,
        space=optimisation.space,
        n_trials=optimisation.n_trials,
    )
    assert points is not None
    return points


def _still_running(optimisation_id: int) -> Callable[[research.TrialResult], None]:
    seen = 0

    def check(_: research.TrialResult) -> None:
        nonlocal seen
        seen += 1
        if (
            seen % _CANCEL_CHECK_EVERY == 0
            and not Optimisation.objects.filter(pk=optimisation_id, status=JobStatus.RUNNING).exists()
        ):
            raise jobs.JobStopped

    return check


def _chunk(optimisation: Optimisation, chunk: int, points: list[dict[str, Any]] | None) -> None:
    candles = candles_frame(
        optimisation.instrument_id, optimisation.timeframe, optimisation.start_at, optimisation.end_at
    )
    if candles.empty:
        raise NoCandlesError("No candles in range.", field="start")
    size = _chunk_size(optimisation.method)
    common: dict[str, Any] = {
        "strategy_key": optimisation.strategy_key,
        "candles": candles,
        "settings": optimisation.settings,
        "objective": optimisation.objective,
        "min_trades": optimisation.min_trades,
        "base_params": optimisation.params,
        "on_trial": _still_running(optimisation.pk),
    }
    if optimisation.method == Optimisation.Method.GRID:
        first = chunk * size
        part = points if points is not None else _grid(optimisation)[first : first + size]
        results = research.trials_evaluate(params_list=part, first_number=first, **common)
    else:
        count = min(size, optimisation.n_trials - chunk * size)
        results = research.trials_run(
            storage_url=optuna_storage_url(study_name=optimisation.study_name),
            study_name=optimisation.study_name,
            space=optimisation.space,
            n_trials=count,
            chunk=chunk,
            **common,
        )
    _chunk_store(optimisation.pk, chunk, results)


def _chunk_store(optimisation_id: int, chunk: int, results: list[research.TrialResult]) -> None:
    with transaction.atomic():
        optimisation = jobs.job_lock_running(Optimisation, optimisation_id)
        if optimisation is None or chunk in optimisation.chunks_done:
            return
        OptimisationTrial.objects.bulk_create(
            [
                OptimisationTrial(
                    optimisation_id=optimisation_id,
                    number=result.number,
                    params=jobs.json_safe(result.params),
                    value=result.value,
                    metrics=jobs.json_safe(result.metrics),
                    is_feasible=result.is_feasible,
                    error=result.error[:500],
                )
                for result in results
            ],
            batch_size=500,
        )
        optimisation.chunks_done = sorted([*optimisation.chunks_done, chunk])
        optimisation.trials_done += len(results)
        if len(optimisation.chunks_done) >= optimisation.chunks_total:
            _finalise(optimisation)
            return
        optimisation.progress = len(optimisation.chunks_done) / optimisation.chunks_total
        optimisation.save(update_fields=["chunks_done", "trials_done", "progress", "updated_at"])
        jobs.job_announce(optimisation)


def _finalise(optimisation: Optimisation) -> None:
    """Best trial (highest value, lowest number among equals) and succeeded; in the transaction
    holding the row lock. The TPE study is deleted after commit: its trials are stored here."""
    best = (
        OptimisationTrial.objects.filter(optimisation=optimisation, is_feasible=True, value__isnull=False)
        .order_by("-value", "number")
        .first()
    )
    jobs.job_succeed(
        optimisation,
        fields={
            "best_params": best.params if best else None,
            "best_value": best.value if best else None,
            "best_metrics": best.metrics if best else {},
            # Succeeded all the same: every trial ran; the page says why there is no best.
            "error": ""
            if best
            else f"No trial made at least {optimisation.min_trades} trade(s) with a defined objective.",
        },
    )
    if optimisation.study_name:
        study = optimisation.study_name
        transaction.on_commit(partial(_study_delete, study))


def _study_delete(study_name: str) -> None:
    url = optuna_storage_url(study_name=study_name)
    try:
        research.study_delete(url, study_name)
    except Exception:  # tidying up; the results are stored already
        logger.exception("could not delete Optuna study %s", study_name)
    if optuna_storage_is_per_study(study_name=study_name):
        # A storage of its own is not used again: close its connections (the shared one keeps
        # its pool for the next study).
        research.storage_dispose(url)
