"""RELIABILITY 22: the worker's database connections are cut (pg_terminate_backend, what a
PostgreSQL restart does to them) between the venue's accepting the POST and our storing the
answer. (Restarting the shared PostgreSQL server itself would hit every other test using it.)

The fault point ``order_send.after_post`` holds the worker for a few seconds after the POST
returned; the test terminates the worker's connections then. Pass: the task fails cleanly and
the order is resolved by asking (1 POST, records equal the venue's), and later orders on the
same worker processes (no restart: CONN_HEALTH_CHECKS reconnects) go through.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, terminate_worker_connections, wait_until
from tests.fault.trading import Beat, assert_records_match_venue, is_settled, submit_market, wait_order

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]


def test_connections_cut_between_post_and_store(
    start_worker: Callable[..., CeleryWorker], venue: Any, ccxt_account: Any, btc: Any, fault_dir: Path
) -> None:
    # given
    worker = start_worker(
        extra_env={"TP_FAULT_POINTS": "order_send.after_post=sleep:4", "TP_FAULT_ONCE_DIR": str(fault_dir)}
    )
    pool = set(worker.pool_children())

    # when: the venue has the order, the worker holds its answer, its connections are cut
    order = submit_market(ccxt_account, btc)
    wait_until(
        lambda: (fault_dir / "order_send.after_post").exists(),
        timeout=30,
        what="the fault point order_send.after_post",
    )
    assert venue.post_count(order.client_order_id) == 1
    assert terminate_worker_connections() >= 1

    # then: resolved by asking, one venue order, records equal the venue's
    resolve = Beat("apps.trades.tasks.orders_resolve_unknown", every=2.0)
    wait_order(order.pk, is_settled, timeout=45, what="the order resolved after the cut", tick=resolve)
    assert_records_match_venue(venue, order.pk)

    # and the same worker processes keep working: the next orders go through
    later = [submit_market(ccxt_account, btc, quantity="0.001") for _ in range(3)]
    for next_order in later:
        wait_order(next_order.pk, lambda o: o.status == "filled", timeout=30, what="a later order")
        assert_records_match_venue(venue, next_order.pk)
    assert worker.running and set(worker.pool_children()) == pool
    assert len(venue.orders) == 4
