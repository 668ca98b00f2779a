"""Imported by every fault worker at start (CELERY_IMPORTS in its settings, before the pool
forks), and nowhere else (not by the test process: it patches the platform's code):

- the fault points of fault_points.py, wrapped around the platform's code where they belong:
  ``order_send.before_post`` / ``.after_post`` around the venue call (``CcxtBroker.submit``,
  which order_send calls after committing SENDING and before storing the answer) and
  ``deployment_tick.locked`` at the start of the tick's locked decision (``_decide_and_act``),
  ``copy_fanout.batched`` after a fan-out chunk placed and filled its paper copies, inside the
  transaction that has not committed them yet, and ``copy_fanout.chunk_done`` after a chunk
  committed, before its message is acknowledged.
  They do nothing unless the worker's environment names them;
- a probe task (``tests.fault.probe``: published by name, see processes.probe_lines) that
  records each start and finish in a file, so a test can see a message run, run twice, or
  never finish;
- no backtest-engine warm-up: these workers never run a backtest, and loading the engine's
  kernels in every fresh process (seconds of CPU each on a small machine) would only slow the
  tasks a fault test waits for.
"""

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init, worker_ready

from apps.accounts.brokers.ccxt import CcxtBroker
from apps.backtests import apps as backtests_apps
from apps.marketplace.services import fanout
from apps.strategies.services import ticks
from tests.fault.fault_points import fault_point

_warm_engine = getattr(backtests_apps, "_warm_engine", None)
if _warm_engine is not None:
    worker_ready.disconnect(_warm_engine)
    worker_process_init.disconnect(_warm_engine)


def _around(function: Callable[..., Any], before: str, after: str | None = None) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        fault_point(before)
        result = function(*args, **kwargs)
        if after:
            fault_point(after)
        return result

    return wrapped


CcxtBroker.submit = _around(CcxtBroker.submit, "order_send.before_post", "order_send.after_post")  # type: ignore[method-assign]
fanout.orders_execute_paper_batch = _around(  # type: ignore[assignment]
    fanout.orders_execute_paper_batch, "copy_fanout.batch_start", "copy_fanout.batched"
)
fanout.copy_fanout_chunk = _around(fanout.copy_fanout_chunk, "copy_fanout.chunk_start", "copy_fanout.chunk_done")  # type: ignore[assignment]
if hasattr(ticks, "_decide_and_act"):  # the tick's decision, under its locks
    ticks._decide_and_act = _around(ticks._decide_and_act, "deployment_tick.locked")


@shared_task(name="tests.fault.probe", acks_late=True, ignore_result=True, time_limit=120)
def probe(path: str, label: str, sleep: float = 0.0) -> None:
    with Path(path).open("a") as out:
        out.write(f"start {label} {os.getpid()}\n")
    time.sleep(sleep)
    with Path(path).open("a") as out:
        out.write(f"done {label} {os.getpid()}\n")
