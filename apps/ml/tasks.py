"""Celery tasks of the ML app: thin, ids in, one service call each.

Routed to the ``ml`` queue (settings.CELERY_TASK_ROUTES), except where beat or the schedule
sends them to ``default``: the reaper (the ``ml`` workers may be busy with the very trainings it
checks) and the scheduled start (it only queues a training). A training is late-acknowledged
and may be delivered twice: its service claims the version first, so a second delivery does
nothing. The soft time limit marks it failed; the embedded mode's thread pool ignores time
limits, where the progress callback enforces the same limit.
"""

from celery import shared_task
from django.conf import settings

from apps.ml import services

_SOFT = int(settings.ML_TRAIN_TIME_LIMIT_SECONDS)


@shared_task(acks_late=True, soft_time_limit=_SOFT, time_limit=_SOFT + 60, ignore_result=True)
def ml_train(version_id: int) -> None:
    services.training_run(version_id=version_id)


@shared_task(acks_late=True, time_limit=120, ignore_result=True)
def ml_retrain_scheduled(ml_strategy_id: int) -> None:
    services.training_scheduled(ml_strategy_id=ml_strategy_id)


@shared_task(acks_late=True, time_limit=1800, ignore_result=True)
def drift_check_all() -> None:
    services.drift_check_all()


@shared_task(acks_late=True, time_limit=120, ignore_result=True)
def training_reap() -> None:
    services.training_reap()
