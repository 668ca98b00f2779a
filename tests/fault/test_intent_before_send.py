"""RELIABILITY 2: the worker dies right after the order row was committed as sending and before
the POST (the fault point ``order_send.before_post`` ends the pool process with os._exit(137),
as a SIGKILL would).

Pass: the venue never got the order (0 POSTs: it is at most 1 by construction), and the order
does not stay in flight: asked about until the venue has said "not found" ORDER_NOT_FOUND_CHECKS
times over at least ORDER_INFLIGHT_SECONDS, it ends EXPIRED ("the venue never received it").
It is never sent again behind our back.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, wait_until
from tests.fault.trading import Beat, order_row, submit_market, wait_order

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]


def test_crash_between_commit_and_post_ends_not_sent(
    start_worker: Callable[..., CeleryWorker],
    venue: Any,
    ccxt_account: Any,
    btc: Any,
    fault_dir: Path,
) -> None:
    # given: a worker whose first send dies between its commit and the POST
    worker = start_worker(extra_env={"TP_FAULT_POINTS": "order_send.before_post", "TP_FAULT_ONCE_DIR": str(fault_dir)})

    # when
    order = submit_market(ccxt_account, btc)
    wait_until(
        lambda: (fault_dir / "order_send.before_post").exists(),
        timeout=30,
        what="the fault point order_send.before_post",
    )
    wait_until(
        lambda: "WorkerLostError" in worker.log_text() or "exited" in worker.log_text(),
        timeout=20,
        what="the lost worker",
    )
    assert order_row(order.pk).status == "sending"

    # then: resolution by asking (a beat), never by sending
    resolve = Beat("apps.trades.tasks.orders_resolve_unknown", every=1.0)
    final = wait_order(
        order.pk, lambda o: o.status == "expired", timeout=45, what="the order given up as never received", tick=resolve
    )
    assert venue.post_count(order.client_order_id) == 0
    assert venue.orders_for(order.client_order_id) == []
    assert final.exchange_order_id == ""
    assert "never received" in final.status_reason
    gets = venue.requests_for(client_order_id=order.client_order_id)
    assert len(gets) >= 3 and {r.method for r in gets} == {"GET"}
