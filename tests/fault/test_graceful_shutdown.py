"""Graceful shutdown: a worker told to stop (SIGTERM, what `docker compose stop` sends) finishes
the task it is running, acknowledges it, and exits 0 (Celery's warm shutdown). That
docker-compose.yml gives the workers time for it: tests/common/test_shutdown.py.

A real prefork worker process (tests/fault/processes.py) and the probe task (tests.fault.probe,
which writes "start" and "done" lines around a sleep) stand in for a tick: nothing is mocked.
"""

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.common.live_db import transactional_db
from tests.fault.processes import CeleryWorker, broker_url, probe_lines, wait_until
from tests.fault.trading import send_task

pytestmark = [transactional_db(), pytest.mark.postgres, pytest.mark.redis]

TASK_SECONDS = 4.0


def test_sigterm_lets_the_running_task_finish_and_the_worker_exit_cleanly(
    start_worker: Callable[..., CeleryWorker], fault_dir: Path
) -> None:
    # given: a worker running a task that takes a few seconds
    worker = start_worker()
    log = fault_dir / "probe.log"
    send_task("tests.fault.probe", str(log), "long", TASK_SECONDS)
    wait_until(lambda: probe_lines(log, "start", "long"), timeout=20, what="the probe to start")

    # when: it is told to stop mid-task
    worker.ask_to_stop()

    # then: the task ran to its end, the worker exited 0 ...
    assert worker.process is not None
    returncode = worker.process.wait(timeout=TASK_SECONDS + 30)
    assert probe_lines(log, "done", "long"), worker.tail()
    assert returncode == 0, worker.tail()
    assert worker.tasks_done("tests.fault.probe") == 1
    # ... and acknowledged it: nothing is left for Redis to hand out again.
    client = redis.Redis.from_url(broker_url())
    assert client.llen("default") == 0
    assert client.hlen("unacked") == 0


def test_a_worker_stopping_between_tasks_takes_no_new_one(
    start_worker: Callable[..., CeleryWorker], fault_dir: Path
) -> None:
    # given: one task running, a second one waiting in the queue (concurrency 1)
    worker = start_worker(concurrency=1)
    log = fault_dir / "probe.log"
    send_task("tests.fault.probe", str(log), "first", 2.0)
    wait_until(lambda: probe_lines(log, "start", "first"), timeout=20, what="the first probe to start")
    send_task("tests.fault.probe", str(log), "second")

    # when
    worker.ask_to_stop()

    # then: the running one finished, the waiting one stayed queued for the next worker
    assert worker.process is not None
    assert worker.process.wait(timeout=30) == 0, worker.tail()
    assert probe_lines(log, "done", "first")
    assert not probe_lines(log, "start", "second")
    client = redis.Redis.from_url(broker_url())
    assert client.llen("default") + client.hlen("unacked") == 1
