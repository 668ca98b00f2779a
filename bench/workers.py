"""The Celery worker the trading benchmarks measure: `celery -A tradingplatform worker -c 2
-P prefork` on the given queues, in a session of its own, its output in var/<log>."""

import os
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_workers(env: dict[str, str], *, queues: str, log: str) -> subprocess.Popen[bytes]:
    """Two prefork processes consuming ``queues`` (comma-separated), logging to var/``log``."""
    out = open(ROOT / "var" / log, "wb")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "celery"),
            "-A",
            "tradingplatform",
            "worker",
            "-Q",
            queues,
            "-c",
            "2",
            "-P",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_workers(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group; SIGKILL it after 20 s."""
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def wait_ready(*, log: str, timeout: float = 60.0) -> None:
    """Until the worker answers a ping (Django set up first)."""
    from tradingplatform.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            replies = app.control.ping(timeout=1.0)
        except Exception:
            replies = []
        if replies:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not answer a ping; see var/{log}")
