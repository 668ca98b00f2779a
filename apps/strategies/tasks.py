"""Celery tasks of the strategies app (queue ``ticks``, routed in settings): thin, ids in, one
service call each.

A tick may be delivered twice, late, or beside another tick of the same deployment: the
service's TickRun insert (UNIQUE per deployment, instrument and bar) and the deployment's row
lock make that harmless. Only infrastructure errors (the database went away mid-tick) are
retried; the retry finds the transaction rolled back and runs the tick afresh.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from apps.strategies.services import ticks

TICK_TIME_LIMIT = 60


@shared_task(
    acks_late=True,
    time_limit=TICK_TIME_LIMIT,
    soft_time_limit=TICK_TIME_LIMIT - 10,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=30,
    max_retries=5,
)
def deployment_tick(deployment_id: int, instrument_id: int, bar_ts: str, announced_at: str | None = None) -> None:
    ticks.deployment_tick(
        deployment_id=deployment_id, instrument_id=instrument_id, bar_ts=bar_ts, announced_at=announced_at
    )
