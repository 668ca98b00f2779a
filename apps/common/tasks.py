from celery import shared_task

from apps.common import health


@shared_task(acks_late=True, time_limit=10, ignore_result=True)
def worker_heartbeat() -> None:
    health.record_heartbeat()
