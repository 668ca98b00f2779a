"""The Celery app. Queues: ticks, orders, backtests, ml, default (routes in settings)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings.dev")

# DjangoTask gives every task `delay_on_commit`: a task about a row is published only once
# the row is committed, so a worker never sees DoesNotExist and a rollback publishes nothing.
app = Celery("tradingplatform", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "ticks", "orders", "backtests", "ml")]
app.autodiscover_tasks()
