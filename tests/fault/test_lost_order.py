"""RELIABILITY 11: a lost order is not a failed order.

The venue accepts the order and fills it, the answer is lost (connection reset), and for a
while the venue answers "order does not exist" about it (not_found_for). Pass: the order is not
given up (expired) before ORDER_NOT_FOUND_CHECKS not-found answers spanning at least
ORDER_INFLIGHT_SECONDS; nothing is sent again meanwhile (1 POST, then GETs); once the venue
shows the order, ours takes its status and fills.
"""

from collections.abc import Callable
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, wait_until
from tests.fault.trading import Beat, assert_records_match_venue, order_row, submit_market

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]

INFLIGHT_SECONDS = 10
HIDDEN_SECONDS = 5


def test_order_invisible_for_a_while_is_found_not_expired(
    start_worker: Callable[..., CeleryWorker],
    worker_settings: dict[str, Any],
    venue: Any,
    ccxt_account: Any,
    btc: Any,
) -> None:
    # given: the answer is lost and the order stays invisible at the venue for a while
    worker_settings["ORDER_INFLIGHT_SECONDS"] = INFLIGHT_SECONDS
    start_worker()
    venue.accept_then_reset = 1
    venue.not_found_for(HIDDEN_SECONDS)

    # when
    order = submit_market(ccxt_account, btc)
    resolve = Beat("apps.trades.tasks.orders_resolve_unknown", every=2.0)
    seen: list[str] = []

    def settled() -> bool:
        resolve()
        current = order_row(order.pk)
        seen.append(current.status)
        return current.status == "filled"

    wait_until(settled, timeout=60, interval=0.25, what="the order found filled")

    # then
    assert "expired" not in seen and "rejected" not in seen
    not_found = [
        r for r in venue.requests_for(client_order_id=order.client_order_id) if r.method == "GET" and r.status != 200
    ]
    assert not_found, "the venue was never asked while it hid the order: the test proved nothing"
    assert venue.post_count(order.client_order_id) == 1
    assert_records_match_venue(venue, order.pk)
