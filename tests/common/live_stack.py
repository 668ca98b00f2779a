"""The embedded platform inside the test process: uvicorn serving tradingplatform.asgi on a free
port in a thread, and the embedded Celery worker (tradingplatform.embedded.EmbeddedCelery)
in threads beside it, against the test database. The same code path as `make run`, with
the server's uvicorn settings taken from tradingplatform.embedded.server_config.

Starting and stopping the server and the worker takes a second or so (see running_worker for
the in-memory broker's stop), so these fixtures are for a handful of tests, not hundreds.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn
from django.db import connections

from apps.common.broadcast import get_server_loop
from tests.conftest import free_port
from tradingplatform.embedded import EmbeddedCelery, server_config

START_TIMEOUT = 20.0


@dataclass(frozen=True)
class LiveServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/"


@contextmanager
def short_lived_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Connections opened by server and worker threads close after each request or task, so
    none outlives the test (an open one would stop PostgreSQL from dropping the test database).
    Every thread builds its connection from this one settings dict."""
    for alias in connections:
        monkeypatch.setitem(connections[alias].settings_dict, "CONN_MAX_AGE", 0)
    yield


@contextmanager
def running_server() -> Iterator[LiveServer]:
    """uvicorn with lifespan on (so the server's loop is recorded for broadcast) in a thread."""
    port = free_port()
    server = uvicorn.Server(server_config(host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    loop = get_server_loop()
    assert loop is not None, "lifespan startup did not record the server's loop"
    # Debug mode makes asyncio refuse a foreign thread touching the server's loop. Without it a
    # worker thread's in-memory group_send only shows up as a late event (up to the server's
    # next wake-up: 0.1 s under uvicorn, 4.8 s seen elsewhere); with it, it raises and the
    # event never arrives, so a receive timeout catches a missing hop for certain.
    loop.slow_callback_duration = 5.0
    loop.set_debug(True)
    try:
        yield LiveServer("127.0.0.1", port)
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)


@contextmanager
def running_worker() -> Iterator[EmbeddedCelery]:
    from tradingplatform.celery import app

    # One task at a time: the SQLite test database is in memory with a shared cache, where a
    # second concurrent writer gets "database table is locked" at once instead of waiting (the
    # file database of `make run` waits, busy_timeout). PostgreSQL runs would not need this.
    celery = EmbeddedCelery(app=app, concurrency=1, with_beat=False)
    celery.start(timeout=START_TIMEOUT)
    try:
        yield celery
    finally:
        if app.conf.broker_url.startswith("memory://"):
            # On the in-memory broker the worker looks at the stop flag only between 2-second
            # waits for a message, and waits once more after seeing it (celery.worker.loops
            # .synloop): 4 s per test. A shutdown control message ends the wait at once; the
            # worker still finishes what it was running. (Redis's event loop sees the flag soon.)
            app.control.shutdown(destination=[celery.worker.hostname])
        celery.stop(timeout=START_TIMEOUT)


@contextmanager
def live_platform(monkeypatch: pytest.MonkeyPatch, *, with_worker: bool = True) -> Iterator[LiveServer]:
    with short_lived_connections(monkeypatch), running_server() as server:
        if not with_worker:
            yield server
            return
        with running_worker():
            yield server
