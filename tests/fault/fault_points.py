"""Fault points: named places in the execution path where a fault test makes a real worker
process crash or stall, to prove what survives a crash at exactly that point.

The fault workers install them around the platform's own code at start (see worker_hooks.py),
so no service carries test code. ``TP_FAULT_POINTS`` (unset everywhere else) lists the points
to act on, comma-separated:

- ``order_send.before_post`` (or ``...=exit``): ``os._exit(137)``, as a SIGKILL would end the
  process (no ``finally``, no commit, no ack);
- ``order_send.after_post=sleep:8``: sleep 8 seconds there (time for the test to cut the
  worker's database connections, or to kill it, at that moment).

With ``TP_FAULT_ONCE_DIR`` set, each point acts once per directory (a marker file, also the
test's sign that the point was reached), so a respawned pool process goes through normally.

The points:
- ``order_send.before_post``: the order is committed as SENDING, the venue call is next;
- ``order_send.after_post``: the venue answered, nothing of the answer is stored yet;
- ``deployment_tick.locked``: a tick holds its account and deployment locks and is about to
  decide.
- ``copy_fanout.batched``: a fan-out chunk placed and filled its followers' paper copies; its
  transaction (orders, fills, CopyTrades) has not committed;
- ``copy_fanout.chunk_done``: a chunk committed; its message is not acknowledged yet.
"""

import os
import time
from pathlib import Path

ENV_POINTS = "TP_FAULT_POINTS"
ENV_ONCE_DIR = "TP_FAULT_ONCE_DIR"
CRASH_EXIT_CODE = 137


def _configured() -> dict[str, str]:
    raw = os.environ.get(ENV_POINTS, "")
    points: dict[str, str] = {}
    for item in raw.split(","):
        name, _, action = item.strip().partition("=")
        if name:
            points[name] = action or "exit"
    return points


def _first_time(name: str) -> bool:
    once_dir = os.environ.get(ENV_ONCE_DIR)
    if not once_dir:
        return True
    marker = Path(once_dir) / name
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def fault_point(name: str) -> None:
    """Crash or stall here if the test worker's environment asks for it; otherwise nothing."""
    if ENV_POINTS not in os.environ:
        return
    action = _configured().get(name)
    if action is None or not _first_time(name):
        return
    if action.startswith("sleep:"):
        time.sleep(float(action.removeprefix("sleep:")))
        return
    os._exit(CRASH_EXIT_CODE)
