"""Embedded mode: the whole platform in one process, no servers to install.

The ASGI server (uvicorn) runs in the main thread; a Celery worker (thread pool, consuming every
queue) and Celery beat run as threads beside it, connected by Celery's in-memory broker. The
database is SQLite and the Channels layer is in memory (see apps.common.broadcast for how
events cross from worker threads to the server's loop). Ctrl-C stops the server, then beat,
then lets the worker finish what it is running.
"""

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.beat import EmbeddedService

logger = logging.getLogger(__name__)

QUEUES = ["default", "ticks", "orders", "backtests", "ml"]


def _worker_class(app: Celery) -> type:
    base: Any = app.WorkController

    class EmbeddedWorker(base):
        """A WorkController that says when its consumer is ready."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.consumer_ready = threading.Event()
            super().__init__(*args, **kwargs)

        def on_consumer_ready(self, consumer: Any) -> None:
            self.consumer_ready.set()

    return EmbeddedWorker


@dataclass
class EmbeddedCelery:
    """A Celery worker and beat running as threads of this process."""

    app: Celery
    concurrency: int = 4
    with_beat: bool = True
    worker: Any = None
    beat: Any = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, timeout: float = 20.0) -> None:
        self.app.finalize()
        self.app.set_current()
        self.app.set_default()
        self.worker = _worker_class(self.app)(
            app=self.app,
            concurrency=self.concurrency,
            pool="threads",
            hostname="embedded@localhost",
            queues=QUEUES,
            loglevel="INFO",
            ready_callback=None,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self._thread.start()
        if not self.worker.consumer_ready.wait(timeout):
            raise RuntimeError("The embedded Celery worker did not start.")
        if self.with_beat:
            self.beat = EmbeddedService(
                self.app, thread=True, scheduler_cls=self.app.conf.beat_scheduler, max_interval=5
            )
            self.beat.start()
            # Beat sends the first heartbeat only after its interval; send one now so /healthz
            # reports the worker as soon as it is up.
            from apps.common.tasks import worker_heartbeat

            worker_heartbeat.delay()
        logger.info("embedded Celery worker%s running", " and beat" if self.with_beat else "")

    def stop(self, timeout: float = 30.0) -> None:
        from celery.worker import state

        if self.beat is not None:
            self.beat.stop()
        if self._thread is not None:
            # The worker's loop watches this flag; 0 means "stop after the running tasks".
            state.should_terminate = 0  # type: ignore[assignment]  # the stubs say None only
            self._thread.join(timeout)
            state.should_terminate = None
        logger.info("embedded Celery stopped")


def server_config(*, host: str, port: int, log_level: str = "info") -> Any:
    """uvicorn's settings for the platform; `serve` and the live tests use the same ones.

    Lifespan must be on: `LoopRecordingApp` records the server's loop at startup, which is where
    worker threads send live events (apps.common.broadcast). uvicorn's older "websockets"
    protocol is deprecated; "websockets-sansio" is its replacement over the same library.
    """
    import uvicorn

    return uvicorn.Config(
        "tradingplatform.asgi:application",
        host=host,
        port=port,
        lifespan="on",
        log_level=log_level,
        ws="websockets-sansio",
    )


def serve(*, host: str, port: int, reload: bool = False) -> None:
    """Run the platform until Ctrl-C."""
    import uvicorn

    from tradingplatform.celery import app

    celery = EmbeddedCelery(app=app)
    celery.start()
    try:
        uvicorn.Server(server_config(host=host, port=port)).run()
    finally:
        celery.stop()
