"""RELIABILITY 12: the platform kill switch set to HALTED while ticks are running.

Four live deployments tick on an entry bar, each holding its locks for a while (the fault point
``deployment_tick.locked``), on two worker processes; meanwhile the admin's platform switch goes
to HALTED. Pass, from FakeVenue's log: after the switch's commit no order POST arrives, while
the cancel of an order resting at the venue (the switch cancels open orders) does go through;
the change is in the audit trail.
"""

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, wait_until
from tests.fault.trading import (
    ORDER_PATH,
    PRICE,
    flat_history,
    is_settled,
    live_deployment,
    next_bar,
    publish_tick,
    wait_order,
)

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]


def test_halt_stops_new_orders_at_once_and_cancels_still_go_through(
    start_worker: Callable[..., CeleryWorker], venue: Any, ccxt_account: Any, btc: Any, staff: Any
) -> None:
    from apps.audit.models import AuditEvent
    from apps.trades.intents import OrderIntent
    from apps.trades.models import Order
    from apps.trades.risk.switches import platform_switch_set
    from apps.trades.services.orders import order_submit

    # given: an order resting at the venue, four deployments about to enter, ticks that linger
    history = flat_history(btc)
    deployments = [live_deployment(ccxt_account, btc, capital="200") for _ in range(4)]
    workers = [
        start_worker(name, wait=False, extra_env={"TP_FAULT_POINTS": "deployment_tick.locked=sleep:2"})
        for name in ("a", "b")
    ]
    for worker in workers:
        worker.wait_ready()
    resting = order_submit(
        intent=OrderIntent(
            account_id=ccxt_account.pk,
            instrument_id=btc.pk,
            side="buy",
            type="limit",
            source="manual",
            quantity=Decimal("0.01"),
            price=Decimal("30000"),
        )
    )
    wait_order(resting.pk, is_settled, timeout=30, what="the resting order at the venue")
    bar = next_bar(btc, history[-1].to_pydatetime(), PRICE * 1.01)

    # when: the ticks are running, the platform is halted
    for deployment in deployments:
        publish_tick(deployment, btc, bar)
    time.sleep(1.0)
    platform_switch_set(mode="halted", reason="fault test: halt everything", actor=staff)
    halted_at = time.monotonic()

    # then: the ticks finish, nothing new is POSTed after the halt, the cancel went through
    wait_until(
        lambda: sum(w.tasks_done("apps.strategies.tasks.deployment_tick") for w in workers) >= len(deployments),
        timeout=40,
        what="the ticks to finish",
    )
    wait_order(resting.pk, lambda o: o.status == "cancelled", timeout=30, what="the resting order cancelled")
    late_posts = [r for r in venue.requests_for(method="POST", path=ORDER_PATH) if r.at > halted_at]
    assert late_posts == [], [(r.client_order_id, r.status) for r in late_posts]
    cancels = venue.requests_for(method="DELETE", client_order_id=resting.client_order_id)
    assert cancels and all(r.at > halted_at for r in cancels)
    [venue_order] = venue.orders_for(resting.client_order_id)
    assert venue_order.status == "CANCELED"
    assert AuditEvent.objects.filter(action="trading.platform_switch").exists()
    # the ticks after the halt did try: their entries are refused with the switch's reason (a
    # tick that held its account's lock when the switch came may have ordered just before it)
    refused = Order.objects.filter(deployment__in=deployments, status="rejected")
    assert refused.exists() and all("halted" in o.status_reason for o in refused)
