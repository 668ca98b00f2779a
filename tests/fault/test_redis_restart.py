"""RELIABILITY 21: Redis restarted while ticks are queued.

A throw-away redis-server (with and without an append-only file) is the broker, cache and
channel layer of a worker. Ticks of several live deployments are queued (each twice, as a
redelivery would), Redis is shut down before the worker has drained them and started again a
few seconds later. Pass: the worker reconnects by itself, every deployment gets its order, and
no deployment has more than one venue order for the bar (counted from FakeVenue's book and
log). With AOF that must come from the queued ticks alone (nothing queued is lost); without it
the queued ticks may be lost, so the bar is announced again (as the feed's next poll would):
the loss shows up as that later work only, never as a duplicate.
"""

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, RedisServer, wait_until
from tests.fault.trading import (
    PRICE,
    Beat,
    assert_records_match_venue,
    flat_history,
    is_settled,
    live_deployment,
    next_bar,
    publish_tick,
)

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]

DEPLOYMENTS = 6


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "no-aof"])
def test_ticks_survive_a_redis_restart_without_duplicates(
    start_worker: Callable[..., CeleryWorker],
    start_redis: Callable[..., RedisServer],
    venue: Any,
    ccxt_account: Any,
    btc: Any,
    appendonly: bool,
) -> None:
    from apps.trades.models import Order

    # given: deployments that all enter on the next bar, a worker on a Redis of its own
    history = flat_history(btc)
    deployments = [live_deployment(ccxt_account, btc, capital="200") for _ in range(DEPLOYMENTS)]
    bar = next_bar(btc, history[-1].to_pydatetime(), PRICE * 1.01)
    redis = start_redis(appendonly=appendonly)
    start_worker(broker=redis.url)

    # when: the ticks are queued (twice each), Redis goes away and comes back
    for _ in range(2):
        for deployment in deployments:
            publish_tick(deployment, btc, bar, broker=redis.url)
    redis.shutdown()
    time.sleep(3)
    redis.start()
    if not appendonly:
        # Without an append-only file the queued ticks are gone: the bar is announced again,
        # as the feed's next poll would. With one, nothing queued may be lost: no second chance.
        for deployment in deployments:
            publish_tick(deployment, btc, bar, broker=redis.url)

    # then: every deployment has its one order, settled at the venue
    beat = Beat("apps.trades.tasks.orders_resolve_unknown", every=2.0, broker=redis.url)

    def all_settled() -> bool:
        beat()
        orders = list(Order.objects.filter(deployment__in=deployments))
        return len(orders) == DEPLOYMENTS and all(is_settled(o) for o in orders)

    wait_until(all_settled, timeout=60, interval=0.5, what="one settled order per deployment")
    for deployment in deployments:
        [order] = Order.objects.filter(deployment=deployment)
        assert_records_match_venue(venue, order.pk)
    assert len(venue.orders) == DEPLOYMENTS
