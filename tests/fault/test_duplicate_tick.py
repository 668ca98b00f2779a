"""RELIABILITY 6, 16 and 18: the same tick delivered more than once, to two worker processes, and
ticks of one deployment that would overlap.

- 6 / 18: the same deployment_tick message is published twice, and two "beats" announce the
  same closed bar (deployments_tick_enqueue twice), with two workers consuming. Pass: one venue
  order (from FakeVenue's book and log), one Signal, one TickRun; the duplicates are logged as
  ``duplicate_tick`` and are not task failures.
- 16: ticks of successive bars arrive faster than a tick takes (the fault point
  ``deployment_tick.locked`` holds each tick for a while inside its lock). Pass: no two TickRuns
  of the deployment overlap in time (started_at .. finished_at).
"""

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, wait_until
from tests.fault.trading import (
    PRICE,
    TIMEFRAME,
    assert_records_match_venue,
    flat_history,
    is_settled,
    live_deployment,
    next_bar,
    publish_tick,
    wait_order,
)

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]

TICK_TASK = "apps.strategies.tasks.deployment_tick["


def _two_workers(start_worker: Callable[..., CeleryWorker], **kwargs: Any) -> list[CeleryWorker]:
    workers = [start_worker(name, wait=False, **kwargs) for name in ("a", "b")]
    return [worker.wait_ready() for worker in workers]


def test_duplicate_deliveries_of_one_tick_make_one_order(
    start_worker: Callable[..., CeleryWorker], venue: Any, ccxt_account: Any, btc: Any
) -> None:
    from apps.strategies.models import Signal, TickRun
    from apps.strategies.services.ticks import deployments_tick_enqueue
    from apps.trades.models import Order

    # given: a live deployment whose strategy enters on the next bar, and two workers
    history = flat_history(btc)
    deployment = live_deployment(ccxt_account, btc)
    bar = next_bar(btc, history[-1].to_pydatetime(), PRICE * 1.01)
    workers = _two_workers(start_worker)

    # when: the same message twice, and two beats announcing the same bar
    publish_tick(deployment, btc, bar)
    publish_tick(deployment, btc, bar)
    deployments_tick_enqueue(instrument_id=btc.pk, timeframe=TIMEFRAME, ts=bar)
    deployments_tick_enqueue(instrument_id=btc.pk, timeframe=TIMEFRAME, ts=bar)

    # then
    wait_until(
        lambda: sum(w.log_text().count("duplicate_tick") for w in workers) >= 3,
        timeout=40,
        what="three deliveries refused as duplicates",
    )
    [order] = Order.objects.filter(deployment=deployment)
    wait_order(order.pk, is_settled, timeout=30, what="the entry order at the venue")
    assert_records_match_venue(venue, order.pk)
    assert len(venue.orders) == 1
    assert Signal.objects.filter(deployment=deployment, bar_ts=bar).count() == 1
    assert TickRun.objects.filter(deployment=deployment, bar_ts=bar).count() == 1
    logs = "".join(w.log_text() for w in workers)
    assert logs.count(f"{TICK_TASK}") >= 4
    assert "deployment_tick" not in "".join(line for line in logs.splitlines(True) if "raised unexpected" in line)


def test_ticks_of_one_deployment_never_overlap(
    start_worker: Callable[..., CeleryWorker], venue: Any, ccxt_account: Any, btc: Any
) -> None:
    from apps.strategies.models import TickRun

    # given: each tick holds its deployment for 2 s; a new bar closes every second
    history = flat_history(btc)
    deployment = live_deployment(ccxt_account, btc)
    _two_workers(start_worker, extra_env={"TP_FAULT_POINTS": "deployment_tick.locked=sleep:2"})

    # when
    last = history[-1].to_pydatetime()
    bars = []
    for n in range(4):
        last = next_bar(btc, last, PRICE * (1.0 + 0.001 * (n % 2)))
        bars.append(last)
        publish_tick(deployment, btc, last)
        time.sleep(1)

    # then: every bar's tick ran or was skipped, one at a time
    wait_until(
        lambda: TickRun.objects.filter(deployment=deployment, finished_at__isnull=False).count() == len(bars),
        timeout=40,
        what="every tick finished",
    )
    runs = list(TickRun.objects.filter(deployment=deployment).order_by("started_at"))
    assert [r.bar_ts for r in sorted(runs, key=lambda r: r.bar_ts)] == bars
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None
        assert earlier.finished_at <= later.started_at, (
            f"tick for {earlier.bar_ts} ({earlier.started_at}..{earlier.finished_at}) overlaps "
            f"tick for {later.bar_ts} ({later.started_at}..{later.finished_at})"
        )
