"""The Celery app. Queues: ticks, orders, backtests, ml, default (routes in settings)."""

import os
from typing import Any

from celery import Celery
from celery.signals import task_failure, task_postrun, task_prerun, worker_process_shutdown, worker_ready
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


# Each task's id and name on its log lines (apps.common.log_context); restored after the run
# (an eager task runs inside its caller's context).
_LOG_CONTEXT: dict[str, Any] = {}


@task_prerun.connect
def _log_context_enter(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    from apps.common.log_context import task_started

    _LOG_CONTEXT[task_id or ""] = task_started(task_id, getattr(task, "name", None))


@task_postrun.connect
def _log_context_exit(task_id: str | None = None, **kwargs: Any) -> None:
    from apps.common.log_context import task_finished

    task_finished(_LOG_CONTEXT.pop(task_id or "", None))


@task_failure.connect
def _count_task_failure(sender: Any = None, **kwargs: Any) -> None:
    """``tp_celery_task_failures_total{task}``: a run that raised (a retry is not a failure)."""
    from apps.common.metrics import TASK_FAILURES

    TASK_FAILURES.labels(task=getattr(sender, "name", None) or "unknown").inc()


@worker_ready.connect
def _metrics_exporter(**kwargs: Any) -> None:
    """A worker's own /metrics port when PROMETHEUS_EXPORTER_PORT is set (apps.common.metrics)."""
    from apps.common.metrics import exporter_start

    exporter_start()


@worker_process_shutdown.connect
def _metrics_process_exited(pid: int | None = None, **kwargs: Any) -> None:
    from apps.common.metrics import process_exited

    process_exited(pid or os.getpid())
