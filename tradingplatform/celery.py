"""The Celery app. Queues: ticks, orders, backtests, ml, default (routes in settings)."""

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings.dev")

# DjangoTask gives every task `delay_on_commit`: a task about a row is published only once
# the row is committed, so a worker never sees DoesNotExist and a rollback publishes nothing.
app = Celery("tradingplatform", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "ticks", "orders", "backtests", "ml")]
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender: Any = None, **kwargs: Any) -> None:
    """Around each task, what Django does around each request: close the database connections
    that are broken or older than CONN_MAX_AGE and keep the others (settings:
    CELERY_DB_REUSE_MAX). Not for a task run eagerly inside a caller's transaction."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
