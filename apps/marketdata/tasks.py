"""Celery tasks of the market-data app: thin, each calls one service.

- `candles_poll` (beat, every 30 s): one `candles_poll_series` per live series.
- `candles_poll_series(series_id)`: new closed bars from the venue, stored and announced once.
  Retried (with backoff) only on temporary venue errors; an unknown symbol is not retried.
- `replay_step` (beat, every second): advance every active replay by the bars due now.

Every task is safe to run twice: a bar is announced only when it is newer than what its series
held, decided under the series' row lock.
"""

import logging

from celery import shared_task

from apps.marketdata import services
from apps.marketdata.feeds import replay
from apps.marketdata.feeds.errors import TemporaryFeedError

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, time_limit=60, ignore_result=True)
def candles_poll() -> None:
    for series_id in services.live_series_ids():
        candles_poll_series.delay(series_id)


@shared_task(
    acks_late=True,
    time_limit=120,
    ignore_result=True,
    autoretry_for=(TemporaryFeedError,),
    retry_backoff=5,
    retry_backoff_max=60,
    max_retries=3,
)
def candles_poll_series(series_id: int) -> None:
    services.candles_poll(series_id=series_id)


@shared_task(acks_late=True, time_limit=60, ignore_result=True)
def replay_step() -> None:
    replay.replay_step_all()
