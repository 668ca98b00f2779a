"""The trades tasks are thin: ids in, one service call, retries only when the service says the
order was certainly not sent (or deferred). Messages carry ids only."""

from typing import Any

import pytest
from celery.exceptions import Retry

from apps.trades import tasks
from apps.trades.services import orders


def test_order_send_retries_with_the_services_countdown(monkeypatch):
    monkeypatch.setattr(orders, "order_send", lambda *, order_id: 4.5)
    asked: list[dict[str, Any]] = []

    def retry(**kwargs: Any) -> Retry:
        asked.append(kwargs)
        return Retry()

    monkeypatch.setattr(tasks.order_send, "retry", retry)

    with pytest.raises(Retry):
        tasks.order_send(17)

    assert asked == [{"countdown": 4.5}]


def test_order_send_done_is_not_retried(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(orders, "order_send", lambda *, order_id: calls.append(order_id))

    tasks.order_send(17)

    assert calls == [17]


def test_order_resolve_asks_again_later(monkeypatch):
    monkeypatch.setattr(orders, "order_resolve", lambda *, order_id: 15.0)

    with pytest.raises(Retry):
        tasks.order_resolve(3)


def test_tasks_are_late_acked_time_limited_and_routed_to_orders(settings):
    from tradingplatform.celery import app

    for task in (tasks.order_send, tasks.order_resolve, tasks.order_sync, tasks.account_reconcile):
        assert task.acks_late
        assert task.time_limit
        assert app.amqp.router.route({}, task.name)["queue"].name == "orders"
    assert tasks.SEND_TIME_LIMIT < settings.ORDER_INFLIGHT_SECONDS


def test_queued_messages_carry_ids_only(monkeypatch):
    published: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.order_send, "apply_async", lambda args, countdown=None: published.append(args))

    orders._enqueue_send(42, countdown=None)

    assert published == [(42,)]


def test_accounts_reconcile_fans_out_one_task_per_account(monkeypatch):
    from apps.trades.services import reconcile

    sent: list[int] = []
    monkeypatch.setattr(reconcile, "accounts_to_reconcile", lambda: [1, 2])
    monkeypatch.setattr(tasks.account_reconcile, "delay", lambda account_id: sent.append(account_id))

    tasks.accounts_reconcile()

    assert sent == [1, 2]
