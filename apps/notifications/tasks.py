"""Celery tasks of the notifications app (the ``default`` queue): ids in, one service call."""

from celery import shared_task

TIME_LIMIT = 120


@shared_task(acks_late=True, time_limit=TIME_LIMIT, ignore_result=True)
def delivery_send(delivery_id: int) -> None:
    # Retries are the service's own (the delivery row keeps attempts and the backoff).
    from apps.notifications.services.deliveries import delivery_send as send

    send(delivery_id=delivery_id)


@shared_task(acks_late=True, time_limit=TIME_LIMIT, ignore_result=True)
def deliveries_sweep() -> None:
    from apps.notifications.services.deliveries import deliveries_sweep as sweep

    sweep()


@shared_task(acks_late=True, time_limit=TIME_LIMIT, ignore_result=True)
def telegram_updates_poll() -> None:
    from apps.notifications.services.telegram_link import telegram_updates_poll as poll

    poll()


@shared_task(acks_late=True, time_limit=900, ignore_result=True)
def summaries_send_due() -> None:
    from apps.notifications.services.summaries import summaries_send_due as send_due

    send_due()
