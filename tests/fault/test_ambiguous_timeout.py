"""RELIABILITY 4 (and 5's ambiguous cases): a market order that fills at once, while every
answer to a POST is lost (the venue accepts, then resets the connection).

Binance would accept the same client order id again once the first order is filled, so only
our query-first rule stands between a retry and a second order. Pass: 1 venue order, 1 venue
fill, the Order FILLED with that fill, and no second POST, whatever the retries.
"""

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker
from tests.fault.trading import Beat, assert_records_match_venue, submit_market, wait_order

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]


def test_lost_answer_on_filled_order_is_resolved_by_asking(
    start_worker: Callable[..., CeleryWorker], venue: Any, ccxt_account: Any, btc: Any
) -> None:
    # given: a venue that fills at once and loses every POST's answer (connection reset)
    venue.fill_immediately = True
    venue.accept_then_reset = True
    start_worker()

    # when
    order = submit_market(ccxt_account, btc, quantity="0.02")

    # then
    resolve = Beat("apps.trades.tasks.orders_resolve_unknown", every=2.0)
    final = wait_order(order.pk, lambda o: o.status == "filled", timeout=45, what="the order filled", tick=resolve)
    assert final.fills.count() == 1
    time.sleep(2)  # room for a stray retry to show itself at the venue
    assert venue.post_count(order.client_order_id) == 1
    assert len(venue.orders) == 1 and len(venue.trades) == 1
    assert_records_match_venue(venue, order.pk)
