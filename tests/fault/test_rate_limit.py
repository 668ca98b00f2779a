"""RELIABILITY 14 (modest): a burst of orders against the account's send rate, while the venue
answers 429 with Retry-After for a few seconds.

Pass, from FakeVenue's log: no one-second window holds more order POSTs than
ORDER_RATE_PER_SECOND; an order refused with 429 is not POSTed again before the 429 window
(its Retry-After) is over; every accepted intent is exactly one venue order (nothing lost,
nothing doubled) and our records equal the venue's.
"""

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker
from tests.fault.trading import ORDER_PATH, assert_records_match_venue, submit_market, wait_order

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]

RATE = 4
ORDERS = 12
LIMITED_SECONDS = 3
# The limiter paces the start of each send; the POST follows once the adapter has loaded the
# venue's markets, tens of milliseconds later and not always the same: a window may look up to
# this much shorter at the venue than the pacing made it. (Unpaced sends are milliseconds apart.)
JITTER = 0.1


def test_burst_is_paced_and_429_is_waited_out(
    start_worker: Callable[..., CeleryWorker],
    worker_settings: dict[str, Any],
    venue: Any,
    ccxt_account: Any,
    btc: Any,
) -> None:
    # given
    worker_settings["ORDER_RATE_PER_SECOND"] = RATE
    worker = start_worker()
    # the reconciliation a worker runs at start, over before the 429s (it would halt the
    # account: a positions report it cannot read is not "flat")
    worker.wait_task_done("apps.trades.tasks.account_reconcile", timeout=40)

    # when: the venue says 429 for a while, and a burst of orders arrives
    venue.rate_limit(LIMITED_SECONDS)
    limited_until = time.monotonic() + LIMITED_SECONDS
    orders = [submit_market(ccxt_account, btc, quantity="0.001") for _ in range(ORDERS)]

    # then: every order filled, once
    for order in orders:
        wait_order(order.pk, lambda o: o.status == "filled", timeout=90, what="a burst order filled")
        assert_records_match_venue(venue, order.pk)
    assert len(venue.orders) == ORDERS

    ours = {order.client_order_id for order in orders}
    posts = [r for r in venue.requests_for(method="POST", path=ORDER_PATH) if r.client_order_id in ours]
    times = sorted(r.at for r in posts)
    for first, later in zip(times, times[RATE:], strict=False):
        assert later - first > 1.0 - JITTER, f"{RATE + 1} POSTs within {later - first:.3f} s (limit {RATE}/s)"
    # Retry-After honoured: while the venue said 429, each order tried at most once (the attempt
    # that got the 429), and none was POSTed again before the window was over.
    during = [r for r in venue.requests if r.at < limited_until and r.status == 429]
    assert len(during) <= ORDERS, f"{len(during)} requests into the 429 window for {ORDERS} orders"
    for post in (r for r in posts if r.status == 429):
        again = [r for r in posts if r.client_order_id == post.client_order_id and r.at > post.at]
        assert again, f"{post.client_order_id} refused with 429 and never sent again"
        assert min(r.at for r in again) >= limited_until - 0.05, "POSTed again before Retry-After was over"
