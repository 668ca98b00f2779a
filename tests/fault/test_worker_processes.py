"""The process harness itself, with a probe task (no trading code): RELIABILITY 20 a, a killed
pool process is replaced and the worker keeps consuming.

A killed worker parent (20 b: the late-acked message comes back after the visibility timeout)
is tested with a real order in test_kill_after_accept.py, Redis restarts with real ticks in
test_redis_restart.py.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, probe_lines, wait_until
from tests.fault.trading import send_task

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]


def test_killed_pool_child_is_replaced_and_work_continues(
    start_worker: Callable[..., CeleryWorker], fault_dir: Path
) -> None:
    worker = start_worker()
    log = fault_dir / "probe.log"
    send_task("tests.fault.probe", str(log), "one")
    wait_until(lambda: probe_lines(log, "done", "one"), timeout=20, what="the first probe")

    killed = worker.kill_child()

    wait_until(
        lambda: len(worker.pool_children()) == 2 and killed not in worker.pool_children(),
        timeout=20,
        what="a replacement pool process",
    )
    send_task("tests.fault.probe", str(log), "two")
    wait_until(lambda: probe_lines(log, "done", "two"), timeout=20, what="the probe after the kill")
