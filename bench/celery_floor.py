"""What Celery itself manages on this machine, as the tick bench runs it: N no-op tasks through
Redis to `celery worker -c 2 -P prefork` with the platform's task settings (late acks,
prefetch multiplier 1, JSON), each task only counting itself in Redis. The ceiling a tick's own
work is added to (bench/ticks.py).

Run from the repository root: `.venv/bin/python bench/celery_floor.py --tasks 2000 --json`.
REDIS_URL names the Redis database used as broker (default redis://127.0.0.1:6379/6, flushed
first: use a database of its own). Prints ``tasks_per_s`` (enqueue of the first to the last
done), ``enqueue_s`` and ``ms_per_task_per_process``.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
COUNTER = "bench:celery_floor:done"

app = Celery("celery_floor", broker=REDIS_URL)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)
_redis = None


@app.task(name="bench.celery_floor.noop")
def noop(i: int) -> None:
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(REDIS_URL)
    _redis.incr(COUNTER)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.tasks < 1:
        parser.error("--tasks must be at least 1")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    (ROOT / "var").mkdir(exist_ok=True)
    log = open(ROOT / "var" / "bench-celery-floor.log", "wb")  # noqa: SIM115 - lives as long as the worker
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "bench.celery_floor", "worker", "-c", "2", "-P", "prefork"),
            *("--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=1.0):
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not answer a ping; see var/bench-celery-floor.log")
        client.delete(COUNTER)
        started = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for i in range(args.tasks):
                noop.apply_async((i,), producer=producer)
        enqueued = time.perf_counter()
        while int(client.get(COUNTER) or 0) < args.tasks:
            if time.perf_counter() - started > 300:
                raise RuntimeError("the tasks did not finish in 300 s; see var/bench-celery-floor.log")
            time.sleep(0.01)
        done = time.perf_counter()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    seconds = done - started
    result = {
        "tasks": args.tasks,
        "tasks_per_s": round(args.tasks / seconds, 1),
        "enqueue_s": round(enqueued - started, 3),
        "ms_per_task_per_process": round(2 * seconds / args.tasks * 1000, 2),
        "cpus": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
