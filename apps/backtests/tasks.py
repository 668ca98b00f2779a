"""Celery tasks of the backtests app (queue `backtests`): thin, ids in, one service call each.

Every task is late-acknowledged and may be delivered twice: each service claims its job (or its
chunk) with a conditional update first, so a second delivery does nothing. A soft time limit
marks the job failed; `jobs_reap` (beat, on the default queue) fails jobs whose worker died. The
embedded mode's thread pool ignores time limits altogether: there the reaper is what ends a job
that hangs.
"""

from typing import Any

from celery import shared_task
from django.conf import settings

from apps.backtests import services
from apps.backtests.services import reaper

_SOFT = settings.BACKTEST_TIME_LIMIT_SECONDS
_HARD = _SOFT + 60
_JOB = {"acks_late": True, "soft_time_limit": _SOFT, "time_limit": _HARD, "ignore_result": True}


@shared_task(**_JOB)
def backtest_run(backtest_id: int) -> None:
    services.backtest_run(backtest_id=backtest_id)


@shared_task(**_JOB)
def optimisation_run(optimisation_id: int) -> None:
    services.optimisation_run(optimisation_id=optimisation_id)


@shared_task(**_JOB)
def optimisation_chunk_run(optimisation_id: int, chunk: int, points: list[dict[str, Any]] | None = None) -> None:
    services.optimisation_chunk_run(optimisation_id=optimisation_id, chunk=chunk, points=points)


@shared_task(**_JOB)
def walk_forward_run(walk_forward_id: int) -> None:
    services.walk_forward_run(walk_forward_id=walk_forward_id)


@shared_task(**_JOB)
def monte_carlo_run(monte_carlo_id: int) -> None:
    services.monte_carlo_run(monte_carlo_id=monte_carlo_id)


@shared_task(acks_late=True, time_limit=120, ignore_result=True)
def jobs_reap() -> None:
    reaper.jobs_reap()
