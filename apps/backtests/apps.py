import logging
import threading
from typing import Any

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _warm_engine(**_: Any) -> None:
    """Load the engine's numba kernels (from numba's cache, compiling on the very first start)
    in the background, so the first backtest a worker runs is not seconds late."""

    def warm() -> None:
        from apps.backtests.engine import warm_up

        logger.info("backtest engine warmed up in %.2f s", warm_up())

    threading.Thread(target=warm, name="engine-warm-up", daemon=True).start()


class BacktestsConfig(AppConfig):
    name = "apps.backtests"
    label = "backtests"

    def ready(self) -> None:
        from celery.signals import worker_process_init, worker_ready

        # worker_ready: the main process (threads pool, embedded mode); worker_process_init: each
        # prefork child, which does not inherit the parent's compiled kernels.
        worker_ready.connect(_warm_engine, weak=False)
        worker_process_init.connect(_warm_engine, weak=False)
