"""RELIABILITY 19's configuration half: a late-acknowledged message is handed to another worker
once the broker's visibility timeout passes, so the timeout must outlast every task's time limit
and every countdown the platform schedules; otherwise a task still running (or still waiting for
its countdown) would run a second time by design. (The fault workers use a short visibility
timeout on purpose, to make that redelivery happen within a test.)

Also: an order still SENDING after ORDER_INFLIGHT_SECONDS is treated as orphaned (its worker
died) and asked about, so order_send's hard time limit must be shorter than that window.
"""

from django.conf import settings

from tradingplatform.celery import app


def _visibility_timeout() -> float:
    return float(settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"])


def test_visibility_timeout_outlasts_every_task_time_limit() -> None:
    app.loader.import_default_modules()
    default = app.conf.task_time_limit
    too_long = {}
    for name, task in app.tasks.items():
        if name.startswith("celery."):
            continue
        limit = task.time_limit or default
        assert limit, f"{name} has no time limit (neither its own nor CELERY_TASK_TIME_LIMIT)"
        if limit >= _visibility_timeout():
            too_long[name] = limit
    assert too_long == {}, f"time limits at or above the visibility timeout {_visibility_timeout()} s: {too_long}"


def test_visibility_timeout_outlasts_every_countdown() -> None:
    from apps.strategies.tasks import deployment_tick

    countdowns = {
        "ORDER_RETRY_MAX_COUNTDOWN": float(getattr(settings, "ORDER_RETRY_MAX_COUNTDOWN", 60)),
        "deployment_tick retry_backoff_max": float(getattr(deployment_tick, "retry_backoff_max", 0) or 0),
    }
    assert {k: v for k, v in countdowns.items() if v >= _visibility_timeout()} == {}


def test_order_send_ends_before_its_order_counts_as_orphaned() -> None:
    from apps.trades.services.orders import inflight_seconds
    from apps.trades.tasks import order_send

    assert order_send.time_limit is not None
    assert order_send.time_limit < inflight_seconds()
