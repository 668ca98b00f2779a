"""The life of a job (backtest, optimisation, walk-forward, Monte Carlo), the same for all four.

    queued --claim--> running --finish--> succeeded
       |                 |----fail------> failed      (a readable `error`)
       +---cancel--------+----cancel----> cancelled

- Claim is a conditional UPDATE (queued -> running): a redelivered message claims nothing.
- Every progress step is a conditional UPDATE too (only while running) that also bumps
  `updated_at`, the job's heartbeat. When it matches nothing the job was cancelled (or reaped)
  meanwhile, and JobStopped tells the running code to stop without touching the status.
- Finishing locks the row and stores the results only while it is still running, in the same
  transaction, so a cancel that lands during the final store wins cleanly.
- `jobs_reap` (beat) fails running jobs whose worker died: no heartbeat for longer than the
  time limit. Queued jobs whose message was lost (an embedded worker restarted: its broker is in
  memory) are sent again; the claim makes a duplicate harmless.

Progress events go to the owner only, after commit:
``job.progress {"kind", "id", "status", "progress", "error"}``.
"""

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.backtests.models import Backtest, JobStatus, MonteCarlo, Optimisation, WalkForward
from apps.common.broadcast import broadcast
from apps.common.errors import ApplicationError, Conflict, NotFound

logger = logging.getLogger(__name__)

Job = Backtest | Optimisation | WalkForward | MonteCarlo

JobModel = type[Backtest] | type[Optimisation] | type[WalkForward] | type[MonteCarlo]
KINDS: dict[JobModel, str] = {
    Backtest: "backtest",
    Optimisation: "optimisation",
    WalkForward: "walk_forward",
    MonteCarlo: "monte_carlo",
}
ERROR_MAX_LENGTH = 2000


class TooManyJobsError(ApplicationError):
    """The user already has BACKTEST_MAX_ACTIVE_JOBS jobs queued or running."""

    status_code = 429
    default_code = "too_many_jobs"


def jobs_assert_capacity(*, owner: Any) -> None:
    """Refuse a new job while the owner has BACKTEST_MAX_ACTIVE_JOBS queued or running (all
    kinds together): one user must not be able to fill the backtest workers for everyone."""
    limit = int(settings.BACKTEST_MAX_ACTIVE_JOBS)
    active = sum(
        model.objects.filter(owner=owner, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)).count() for model in KINDS
    )
    if active >= limit:
        raise TooManyJobsError(
            f"You have {active} jobs queued or running (the limit is {limit}). "
            "Wait for some to finish, or cancel some, then try again."
        )


class JobStopped(Exception):
    """The job is no longer running (cancelled, or failed by the reaper): stop quietly."""


def kind_of(model: JobModel) -> str:
    return KINDS[model]


def progress_event(*, kind: str, job_id: int, owner_id: int, status: str, progress: float, error: str = "") -> None:
    """Announce a job's state to its owner (after commit; at once outside a transaction)."""
    broadcast(
        owner_id,
        "job.progress",
        {"kind": kind, "id": job_id, "status": status, "progress": round(float(progress), 4), "error": error},
    )


def job_announce(job: Job) -> None:
    progress_event(
        kind=kind_of(type(job)),
        job_id=int(job.pk),
        owner_id=int(job.owner_id),
        status=str(job.status),
        progress=job.progress,
        error=job.error,
    )


def job_claim[J: (Backtest, Optimisation, WalkForward, MonteCarlo)](model: type[J], job_id: int) -> J | None:
    """queued -> running, or None when the job is not queued (done, cancelled, claimed by an
    earlier delivery of the same message, or deleted)."""
    now = timezone.now()
    claimed = model.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, updated_at=now, progress=0.0, error=""
    )
    if not claimed:
        return None
    job = model.objects.get(pk=job_id)
    job_announce(job)
    return job


def job_progress(job: Job, fraction: float) -> None:
    """Record progress (0..1) and bump the heartbeat; JobStopped when no longer running.

    A single-task job (backtest, walk-forward, Monte Carlo) past BACKTEST_TIME_LIMIT_SECONDS since
    its start is failed here and stopped: the embedded mode's thread pool ignores Celery's time
    limits, and a job that keeps reporting progress never looks dead to the reaper. (An
    optimisation's chunks are separate tasks, each under Celery's own limit.)
    """
    fraction = min(max(float(fraction), 0.0), 1.0)
    now = timezone.now()
    started_at = getattr(job, "started_at", None)
    if (
        not isinstance(job, Optimisation)
        and started_at is not None
        and now - started_at > timedelta(seconds=_time_limit())
    ):
        message = f"The job took longer than the time limit ({_time_limit()} s)."
        job_fail(type(job), int(job.pk), message)  # type: ignore[type-var]  # a union of the job kinds
        raise JobStopped
    updated = type(job).objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(progress=fraction, updated_at=now)
    if not updated:
        raise JobStopped
    job.progress = fraction
    progress_event(
        kind=kind_of(type(job)),
        job_id=int(job.pk),
        owner_id=int(job.owner_id),
        status=JobStatus.RUNNING,
        progress=fraction,
    )


def progress_scaled(job: Job, start: float, end: float, *, every: float = 0.01) -> Callable[[float], None]:
    """A progress callback mapping a phase's 0..1 onto [start, end] of the job. Calls closer
    together than ``every`` (of the phase) are skipped: a caller reporting per block must not
    turn into hundreds of writes and events."""
    last = -1.0

    def report(fraction: float) -> None:
        nonlocal last
        fraction = min(max(float(fraction), 0.0), 1.0)
        if fraction - last < every and fraction < 1.0:
            return
        last = fraction
        job_progress(job, start + (end - start) * fraction)

    return report


def job_lock_running[J: (Backtest, Optimisation, WalkForward, MonteCarlo)](model: type[J], job_id: int) -> J | None:
    """The job's row, locked, when it is still running (call inside a transaction)."""
    return model.objects.select_for_update().filter(pk=job_id, status=JobStatus.RUNNING).first()


def job_succeed(job: Job, *, fields: dict[str, Any]) -> None:
    """Mark a locked, running job succeeded with its result `fields` (inside the transaction
    that stored the results; the event goes out after commit)."""
    job.error = ""
    for name, value in fields.items():
        setattr(job, name, value)
    job.status = JobStatus.SUCCEEDED
    job.progress = 1.0
    job.finished_at = timezone.now()
    job.save()
    job_announce(job)


def job_fail[J: (Backtest, Optimisation, WalkForward, MonteCarlo)](model: type[J], job_id: int, message: str) -> bool:
    """running -> failed with `message`; False when it was not running any more."""
    message = (message or "The job failed.")[:ERROR_MAX_LENGTH]
    now = timezone.now()
    with transaction.atomic():
        failed = model.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED, error=message, finished_at=now, updated_at=now
        )
        if failed:
            job_announce(model.objects.get(pk=job_id))
    return bool(failed)


def json_safe(value: Any) -> Any:
    """Results as plain JSON: NumPy scalars to Python, NaN/inf to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def error_message(exc: BaseException) -> str:
    """What the user reads for a failure: the refusal's own message (a strategy that raised,
    "No candles in range"), else the exception's type and text."""
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def job_cancel[J: (Backtest, Optimisation, WalkForward, MonteCarlo)](model: type[J], job_id: int) -> J:
    """queued/running -> cancelled (a running task stops at its next progress step). Returns
    the job as it is after the call; a finished job is left alone."""
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=job_id)
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            job.status = JobStatus.CANCELLED
            job.finished_at = timezone.now()
            job.save(update_fields=["status", "finished_at", "updated_at"])
            job_announce(job)
    return job


def job_cancel_as[J: (Backtest, Optimisation, WalkForward, MonteCarlo)](
    model: type[J], job: J, *, actor: Any, label: str, audit_action: str | None
) -> J:
    """Cancel ``job`` on behalf of ``actor``: its owner, or staff (anyone else gets NotFound, as if
    it did not exist). Conflict when it has finished. Staff cancelling another user's job is
    recorded in the audit trail under ``audit_action`` (when given)."""
    if job.owner_id != actor.pk and not actor.is_staff:
        raise NotFound(f"No such {label}.")
    if job.is_finished:
        raise Conflict(f"This {label} has already finished.", code="finished")
    with transaction.atomic():
        job = job_cancel(model, job.pk)
        if audit_action and actor.pk != job.owner_id:
            audit_record(action=audit_action, actor=actor, user=job.owner, target=job)
    return job


def _time_limit() -> int:
    return int(settings.BACKTEST_TIME_LIMIT_SECONDS)


def _silence_allowed(model: JobModel) -> int:
    """Seconds a running job may go without a heartbeat before it counts as dead. An
    optimisation's heartbeat is its chunks: they may wait in the queue behind other work, and a
    chunk whose worker died is redelivered by the broker after its visibility timeout, so the
    optimisation is only given up after that too."""
    allowed = _time_limit() + int(settings.BACKTEST_REAP_GRACE_SECONDS)
    if model is Optimisation:
        visibility = float(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600))
        allowed += int(visibility) + _time_limit()
    return allowed


def jobs_reap(*, now: Any = None, requeue: Callable[[JobModel, int], None] | None = None) -> dict[str, int]:
    """Fail running jobs without a heartbeat for longer than they may be silent (their worker
    died; see `_silence_allowed`), and hand queued jobs older than BACKTEST_REQUEUE_SECONDS to
    `requeue`. Returns counts per kind of what was failed."""
    now = now or timezone.now()
    limit = _time_limit()
    requeue_before = now - timedelta(seconds=settings.BACKTEST_REQUEUE_SECONDS)
    reaped: dict[str, int] = {}
    for model in KINDS:
        stale_before = now - timedelta(seconds=_silence_allowed(model))
        stale = list(
            model.objects.filter(status=JobStatus.RUNNING, updated_at__lt=stale_before).values_list("pk", flat=True)
        )
        message = (
            f"The worker running this job stopped: no progress for more than {limit} s. Run it again; "
            "if it keeps failing, narrow the range or the search."
        )
        count = 0
        for job_id in stale:
            # Conditional again: a heartbeat may have landed since the list was read.
            with transaction.atomic():
                failed = model.objects.filter(pk=job_id, status=JobStatus.RUNNING, updated_at__lt=stale_before).update(
                    status=JobStatus.FAILED, error=message, finished_at=now, updated_at=now
                )
                if failed:
                    job_announce(model.objects.get(pk=job_id))
                    count += 1
        if count:
            logger.warning("reaped %d stale %s job(s)", count, KINDS[model])
        reaped[KINDS[model]] = count
        if requeue is not None:
            lost = model.objects.filter(status=JobStatus.QUEUED, updated_at__lt=requeue_before)
            for job_id in list(lost.values_list("pk", flat=True)):
                # Bump the heartbeat so the same job is sent again only after another period.
                if model.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(updated_at=now):
                    requeue(model, job_id)
    return reaped
