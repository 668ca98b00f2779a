"""Real processes a fault test starts, kills and restarts: Celery workers (prefork) and a
throw-away redis-server.

Every process is started in its own session (its own process group), so the test can end it and
whatever it forked, and nothing else: a test only ever signals PIDs it started itself (and their
children, found through /proc). Each process writes its output to a log file the test reads
to wait for readiness and shows when something fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

REPO = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable
WORKER_SETTINGS = "tests.fault.worker_settings"
WORKER_APPLICATION_NAME = "tp-fault-worker"
START_TIMEOUT = 45.0


def terminate_all(processes: list[OwnedProcess]) -> None:
    """End every process the test started (and what each forked), at once: SIGKILL to each
    process group. Nothing of a test worker needs a graceful exit (the next test starts from an
    emptied database and Redis), and a warm shutdown would wait for whatever task was running."""
    for process in reversed(processes):
        process.terminate(timeout=0)


def wait_until(condition: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(interval)


def database_url_for_workers() -> str:
    """A URL for the database this test uses (pytest-django's test database), so a worker
    process sees the rows the test committed."""
    conf = connection.settings_dict
    assert "postgresql" in conf["ENGINE"], "fault tests run worker processes against PostgreSQL"
    user = quote(conf.get("USER") or "", safe="")
    password = quote(conf.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = conf.get("HOST") or "127.0.0.1"
    port = conf.get("PORT") or "5432"
    return f"postgres://{auth}{host}:{port}/{quote(conf['NAME'], safe='')}"


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    children_file = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(p) for p in children_file.read_text().split()]
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def session_members(session_id: int) -> list[int]:
    """Live processes of the session ``session_id`` (from /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state ppid pgrp session ...
            if int(fields[3]) == session_id and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class OwnedProcess:
    """A process this test started, in its own process group, logging to ``log_path``."""

    def __init__(self, name: str, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._ended = False

    def _spawn(self, argv: list[str], env: Mapping[str, str]) -> None:
        self._ended = False
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                argv, cwd=REPO, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, needle: str, *, timeout: float, start: int = 0) -> None:
        def seen() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited ({self.process and self.process.returncode}):\n{self.tail()}")
            return needle in self.log_text()[start:]

        try:
            wait_until(seen, timeout=timeout, interval=0.1, what=f"{needle!r} in {self.name}'s log")
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self.tail()}") from None

    def log_count(self, needle: str) -> int:
        return self.log_text().count(needle)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def ask_to_stop(self) -> None:
        """SIGTERM (a worker's warm shutdown), without waiting."""
        if self.process is not None and not self._ended and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process itself (not its group): what an OOM kill or `kill -9 <pid>` does."""
        if self.running:
            os.kill(self.pid, sig)
            if sig == signal.SIGKILL:
                assert self.process is not None
                self.process.wait(timeout=10)

    def terminate(self, timeout: float = 3.0) -> None:
        """End the process and everything left in its process group: SIGTERM and up to
        ``timeout`` seconds to exit, then SIGKILL to the group."""
        if self.process is None or self._ended:
            return
        if timeout > 0:
            self.ask_to_stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        # start_new_session: the process we started leads a session of its own, and everything
        # it forked is in it. SIGKILL what is left (a pool child whose parent was killed, a
        # stuck shutdown), found by session id, so nothing outside it is touched.
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        for pid in session_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._ended = True


class CeleryWorker(OwnedProcess):
    """`celery -A tradingplatform worker -P prefork -c 2` against the test database and the
    test's broker, with the fault settings of tests/fault/worker_settings.py."""

    def __init__(
        self,
        log_dir: Path,
        *,
        broker_url: str,
        settings_overrides: Mapping[str, Any],
        extra_env: Mapping[str, str] | None = None,
        concurrency: int = 2,
        queues: str = "ticks,orders,default",
        name: str = "worker",
    ):
        super().__init__(name, log_dir)
        self.broker_url = broker_url
        self.settings_overrides = dict(settings_overrides)
        self.extra_env = dict(extra_env or {})
        self.concurrency = concurrency
        self.queues = queues
        self.hostname = f"fault-{name}-{uuid.uuid4().hex[:6]}@%h"
        self._ready_offset = 0

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TP_FAULT_")}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": WORKER_SETTINGS,
                "DATABASE_URL": database_url_for_workers(),
                "REDIS_URL": self.broker_url,
                "TP_TEST_SETTINGS": json.dumps(self.settings_overrides),
                "TP_DB_APPLICATION_NAME": WORKER_APPLICATION_NAME,
                "PYTHONPATH": str(REPO),
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = START_TIMEOUT, *, wait: bool = True) -> CeleryWorker:
        """Start it; unless ``wait`` is False, return once it consumes (``wait_ready`` later)."""
        self._ready_offset = len(self.log_text())
        argv = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "tradingplatform",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(self.concurrency),
            "-Q",
            self.queues,
            "-n",
            self.hostname,
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-l",
            "INFO",
        ]
        self._spawn(argv, self.environment())
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> CeleryWorker:
        self.wait_for_log(" ready.", timeout=timeout, start=self._ready_offset)
        return self

    def tasks_done(self, name: str) -> int:
        """How many runs of the task ``name`` this worker finished (succeeded or raised)."""
        return sum(
            1
            for line in self.log_text().splitlines()
            if f"Task {name}[" in line and (" succeeded in " in line or " raised " in line)
        )

    def wait_task_done(self, name: str, *, count: int = 1, timeout: float = 30.0) -> None:
        wait_until(lambda: self.tasks_done(name) >= count, timeout=timeout, what=f"{count} run(s) of {name}")

    def pool_children(self) -> list[int]:
        return [pid for pid in child_pids(self.pid) if pid_alive(pid)]

    def kill_child(self) -> int:
        """SIGKILL one pool process (the parent forks a replacement)."""
        children = self.pool_children()
        assert children, f"{self.name} has no pool processes"
        os.kill(children[0], signal.SIGKILL)
        return children[0]


class RedisServer(OwnedProcess):
    """A throw-away redis-server on its own port and folder: shut down and started again on the
    same port (scenario 21), with or without an append-only file."""

    def __init__(self, log_dir: Path, *, port: int, appendonly: bool):
        super().__init__(f"redis-{port}", log_dir)
        self.port = port
        self.appendonly = appendonly
        self.data_dir = log_dir / f"redis-{port}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
        ]
        self._spawn(argv, os.environ)
        wait_until(self.ping, timeout=timeout, what=f"redis on port {self.port}")
        return self

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10, check=False
        )
        return result.stdout.strip()

    def ping(self) -> bool:
        return self.running and self.cli("ping") == "PONG"

    def shutdown(self) -> None:
        """`redis-cli shutdown` (it writes the append-only file when there is one)."""
        self.cli("shutdown", "nosave" if not self.appendonly else "save")
        assert self.process is not None
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.terminate()


def terminate_worker_connections() -> int:
    """pg_terminate_backend on every connection the fault workers hold to the test database
    (found by their application_name); the test's own connection is untouched."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()",
            [WORKER_APPLICATION_NAME],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def probe_lines(path: Path, kind: str, label: str | None = None) -> list[str]:
    """The lines the probe task (tests.fault.probe) wrote: of ``kind`` ("start"/"done"), for one
    label or all."""
    if not path.exists():
        return []
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [" ".join(p) for p in lines if p[0] == kind and (label is None or p[1] == label)]


def broker_url() -> str:
    """The broker the test process publishes to (the test settings' Redis)."""
    url = settings.CELERY_BROKER_URL
    assert url.startswith("redis://"), "fault tests need REDIS_URL"
    return str(url)
