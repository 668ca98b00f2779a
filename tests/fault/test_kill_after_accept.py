"""RELIABILITY 3: the worker is killed (SIGKILL, the parent) after the venue accepted an order
and before the answer was stored.

FakeVenue accepts the POST and then holds the answer (accept_then_hang). Once its log shows the
POST, the worker parent gets SIGKILL (its pool process dies with it). The late-acked message is
handed out again after the (test) visibility timeout to a fresh worker. Pass: the venue saw
exactly one POST with the order's client id, every later request about it is a GET (query
first), and our Order and Fill rows equal the venue's order and trades.
"""

from collections.abc import Callable
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, wait_until
from tests.fault.trading import Beat, assert_records_match_venue, is_settled, submit_market, wait_order

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]


def test_kill_after_accept_leaves_one_venue_order_and_matching_records(
    start_worker: Callable[..., CeleryWorker], venue: Any, ccxt_account: Any, btc: Any
) -> None:
    # given: a worker, and a venue that accepts and then never answers
    venue.accept_then_hang = True
    first = start_worker("first")

    # when: an order is sent; the venue has it; the worker dies before storing the answer
    order = submit_market(ccxt_account, btc, quantity="0.01")
    coid = order.client_order_id
    wait_until(lambda: venue.post_count(coid) == 1, timeout=30, what="the POST at the venue")
    first.kill()
    venue.accept_then_hang = False
    venue.release_hung()
    second = start_worker("second")

    # then: after the redelivery and resolution (a beat asks about unknown orders), one order
    resolve = Beat("apps.trades.tasks.orders_resolve_unknown", every=2.0)
    wait_order(order.pk, is_settled, timeout=45, what="the order resolved against the venue", tick=resolve)
    # the redelivered send has run (or been refused) by now: give it the visibility timeout
    wait_until(
        lambda: second.log_count("apps.trades.tasks.order_send[") >= 1, timeout=30, what="the redelivered order_send"
    )
    assert venue.post_count(coid) == 1
    final = assert_records_match_venue(venue, order.pk)
    assert final.status == "filled"
    assert len(venue.orders) == 1
