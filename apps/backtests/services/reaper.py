"""The beat job that keeps jobs honest: fail running jobs whose worker died, and (embedded mode)
send again the queued jobs whose message was lost (see `jobs.jobs_reap`)."""

from types import ModuleType

from django.conf import settings

from apps.backtests.models import Backtest, MonteCarlo, Optimisation, WalkForward
from apps.backtests.services import backtests, jobs, montecarlo, optimisations, walkforward

# Which function sends each kind's task (looked up when called).
_SENDERS: dict[jobs.JobModel, tuple[ModuleType, str]] = {
    Backtest: (backtests, "_enqueue"),
    Optimisation: (optimisations, "_enqueue_coordinator"),
    WalkForward: (walkforward, "_enqueue"),
    MonteCarlo: (montecarlo, "_enqueue"),
}


def _requeue(model: jobs.JobModel, job_id: int) -> None:
    module, name = _SENDERS[model]
    getattr(module, name)(job_id)


def jobs_reap() -> dict[str, int]:
    """Fail stale running jobs and re-send lost queued ones; returns failures per kind.

    Only the embedded mode's in-memory broker loses queued messages (on a restart); Redis keeps
    them, and re-sending there would only pile duplicates onto a queue that is already behind.
    """
    return jobs.jobs_reap(requeue=_requeue if settings.EMBEDDED else None)
