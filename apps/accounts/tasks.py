"""Celery tasks of the accounts app: ids in, one service call each, on the "orders" queue (the
workers that hold venue connections and may decrypt credentials). A message carries the
account id only, never a secret. Safe to deliver twice: a second test just tests again."""

from celery import shared_task

from apps.accounts import services


@shared_task(acks_late=True, queue="orders", soft_time_limit=45, time_limit=60, ignore_result=True)
def account_test_connection(account_id: int) -> None:
    services.account_test_connection(account_id=account_id)
