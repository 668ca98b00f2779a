"""Every Prometheus metric of the platform, declared here and nowhere else.

Services import the metric they move (``from apps.common.metrics import ORDERS``) and call
``.labels(...).inc()`` / ``.observe(...)``: about a microsecond, no I/O, never a database query.
``/metrics`` (apps.common.views.metrics) exports them with django-prometheus' own.

Names (what the Grafana dashboard in ops/grafana/trading-dashboard.json queries; a Counter
``x`` is exported as ``x_total``, a Histogram ``x`` as ``x_bucket`` / ``x_sum`` / ``x_count``):

- ``tp_deployment_ticks_total{outcome}``: ticks by outcome (``order``, ``no_signal``,
  ``refused``, ``duplicate``, ``error``, ...; the part of the outcome before ``:``).
- ``tp_signals_total{action, source}``: actionable signals (``enter_long``, ``exit_short``,
  ``stop``, ...) from a strategy's tick (``source="strategy"``) or a webhook.
- ``tp_orders_total{status, source}``: order state transitions, by the status reached
  (``new``, ``open``, ``partially_filled``, ``filled``, ``rejected``, ``unknown``, ...; every
  status an order is announced in, apps.trades.services.events) and the order's source;
  counted after commit (``order_status_reached``).
- ``tp_fills_total{source}``: fills recorded, by the order's source; after commit.
- ``tp_order_send_seconds{kind}``: an order's creation to its acceptance by the venue (the
  account's kind: ``paper`` accepted inside ``order_submit``, else ``order_send``).
- ``tp_tick_to_order_seconds``: a tick's start to its orders submitted (the tick's locks held,
  the orders written and, for paper accounts, accepted).
- ``tp_copy_fanout_chunk_seconds``: one copy fan-out chunk, start to end.
- ``tp_copies_total{status}``: copies by CopyTrade status (``ordered``, ``refused``,
  ``skipped``, ``failed``).
- ``tp_celery_queue_length{queue}``: messages waiting in each Celery queue, read from the
  broker's Redis at scrape time (QueueDepthCollector; nothing in embedded mode).
- ``tp_celery_task_failures_total{task}``: task runs that raised (Celery's ``task_failure``).
- ``tp_websocket_connections``: open authenticated websocket connections.

Processes. prometheus_client's default registry lives in one process. Embedded mode (worker
and beat as threads) and the tests need nothing more. In production the web server and each
Celery prefork child are separate processes: prometheus_client's multiprocess mode. When
PROMETHEUS_MULTIPROC_DIR is set (before the first import of prometheus_client) every process
writes its values to files in that folder, and ``/metrics`` sums the files of every process
(adding the live queue depths). docker-compose.yml mounts one volume at
PROMETHEUS_MULTIPROC_ROOT in web and the workers and gives each container its own folder in it
(``$PROMETHEUS_MULTIPROC_ROOT/<container hostname>``, emptied when the container starts: pids
repeat between containers and across restarts); the web's ``/metrics`` reads every folder under
that root. A worker on another machine, which cannot share the volume, serves its own processes'
values on a port of its own when PROMETHEUS_EXPORTER_PORT is set (``exporter_start``, called
when the worker is ready); Prometheus scrapes it beside the web.
"""

import glob
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
# Where /metrics looks for the files of every process: the folders of all containers, or just
# this process's own folder.
MULTIPROC_ROOT = os.environ.get("PROMETHEUS_MULTIPROC_ROOT") or MULTIPROC_DIR

if MULTIPROC_DIR:
    from prometheus_client import multiprocess

    # A process that reuses the pid of a dead one (pid 1 of a restarted container) must not
    # inherit its live gauge values (the websocket count).
    multiprocess.mark_process_dead(os.getpid(), MULTIPROC_DIR)

# Latencies from about a millisecond (a paper order) to a minute (a venue retried).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

TICKS = Counter("tp_deployment_ticks", "Deployment ticks by outcome", ["outcome"])
SIGNALS = Counter("tp_signals", "Actionable trading signals by action and source", ["action", "source"])
ORDERS = Counter("tp_orders", "Order state changes by the status reached and the order's source", ["status", "source"])
FILLS = Counter("tp_fills", "Fills recorded by the order's source", ["source"])
ORDER_SEND_SECONDS = Histogram(
    "tp_order_send_seconds",
    "Order created -> accepted by the venue, by account kind",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
TICK_TO_ORDER_SECONDS = Histogram(
    "tp_tick_to_order_seconds", "Tick start -> its orders submitted", buckets=_LATENCY_BUCKETS
)
COPY_FANOUT_CHUNK_SECONDS = Histogram(
    "tp_copy_fanout_chunk_seconds",
    "Duration of one copy fan-out chunk",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
COPIES = Counter("tp_copies", "Copy trades by status", ["status"])
TASK_FAILURES = Counter("tp_celery_task_failures", "Celery task runs that raised, by task name", ["task"])
WEBSOCKET_CONNECTIONS = Gauge(
    "tp_websocket_connections",
    "Open authenticated websocket connections",
    multiprocess_mode="livesum",
)

# The status each order was last counted in (per process, the newest _SEEN_MAX orders): an
# order announced again in the same status (its exchange id recorded, a second partial fill) is
# not a transition.
_ORDER_STATUS_SEEN: "OrderedDict[int, str]" = OrderedDict()
_SEEN_MAX = 100_000
_SEEN_LOCK = threading.Lock()


def order_status_reached(order_id: int | None, status: str, source: str) -> None:
    """Count an order reaching ``status`` in ``tp_orders_total``, unless this process counted
    that order in that status last. Call it after commit."""
    if order_id is not None:
        with _SEEN_LOCK:
            if _ORDER_STATUS_SEEN.get(order_id) == status:
                return
            _ORDER_STATUS_SEEN[order_id] = status
            _ORDER_STATUS_SEEN.move_to_end(order_id)
            if len(_ORDER_STATUS_SEEN) > _SEEN_MAX:
                _ORDER_STATUS_SEEN.popitem(last=False)
    ORDERS.labels(status=status, source=source).inc()


QUEUE_LENGTH = "tp_celery_queue_length"
# kombu's Redis transport keeps a queue's messages of priority 0 in a list named after the
# queue, and those of the other priority steps in "<queue>\x06\x16<step>".
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


class QueueDepthCollector(Collector):
    """``tp_celery_queue_length{queue}``: the length of each Celery queue in the broker's Redis,
    read at scrape time (one pipelined round trip). Embedded mode (in-memory broker) and a
    broker that does not answer report no samples: a scrape never fails because of it."""

    def __init__(self, queues: list[str] | None = None, broker_url: str | None = None):
        self._queues = queues
        self._broker_url = broker_url
        self._client: Any = None
        self._client_url = ""

    def _settings(self) -> tuple[list[str], str]:
        from django.conf import settings

        queues = self._queues or list(getattr(settings, "CELERY_TASK_QUEUES_NAMES", []))
        url = self._broker_url or str(getattr(settings, "CELERY_BROKER_URL", "") or "")
        return queues, url

    def _redis(self, url: str) -> Any:
        if self._client is None or self._client_url != url:
            import redis

            self._client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            self._client_url = url
        return self._client

    def lengths(self) -> dict[str, int]:
        """{queue: messages waiting}; empty without a Redis broker or when it does not answer."""
        queues, url = self._settings()
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return {}
        try:
            pipe = self._redis(url).pipeline(transaction=False)
            for queue in queues:
                pipe.llen(queue)
                for step in _PRIORITY_STEPS:
                    pipe.llen(f"{queue}{_PRIORITY_SEPARATOR}{step}")
            counts = pipe.execute()
        except Exception as exc:  # a scrape must not fail because the broker is down
            logger.warning("queue depth: the broker did not answer (%s)", type(exc).__name__)
            return {}
        per_queue = len(_PRIORITY_STEPS) + 1
        return {queue: int(sum(counts[i * per_queue : (i + 1) * per_queue])) for i, queue in enumerate(queues)}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Described without reading Redis: registering the collector must not connect.
        yield GaugeMetricFamily(QUEUE_LENGTH, "Messages waiting in each Celery queue", labels=["queue"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(QUEUE_LENGTH, "Messages waiting in each Celery queue", labels=["queue"])
        for queue, length in self.lengths().items():
            family.add_metric([queue], length)
        yield family


QUEUE_DEPTH = QueueDepthCollector()
REGISTRY.register(QUEUE_DEPTH)

# Every platform metric, by the name it is declared with (the dashboard test reads these).
PLATFORM_METRICS: dict[str, Counter | Gauge | Histogram] = {
    metric._name: metric
    for metric in (
        TICKS,
        SIGNALS,
        ORDERS,
        FILLS,
        ORDER_SEND_SECONDS,
        TICK_TO_ORDER_SECONDS,
        COPY_FANOUT_CHUNK_SECONDS,
        COPIES,
        TASK_FAILURES,
        WEBSOCKET_CONNECTIONS,
    )
}


def exported_names() -> set[str]:
    """Every series name the platform's metrics export (``x_total``, ``x_bucket``, ...)."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    names = {QUEUE_LENGTH}
    for name, metric in PLATFORM_METRICS.items():
        names.update(name + suffix for suffix in suffixes[metric._type])
    return names


class ProcessFilesCollector(Collector):
    """Multiprocess mode: the values every process wrote under ``root`` (``root/*.db`` and
    ``root/<folder>/*.db``), summed as prometheus_client's MultiProcessCollector sums one
    folder's."""

    def __init__(self, root: str):
        self.root = root

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = sorted(glob.glob(os.path.join(self.root, "*.db")) + glob.glob(os.path.join(self.root, "*", "*.db")))
        return iter(MultiProcessCollector.merge(files, accumulate=True))


def exposition_registry(*, queue_depth: bool = True) -> CollectorRegistry:
    """The registry ``/metrics`` exports: the process's own (default), or in multiprocess mode
    the values every process wrote under PROMETHEUS_MULTIPROC_ROOT plus (``queue_depth``) the
    live queue depths."""
    if not MULTIPROC_DIR:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(ProcessFilesCollector(MULTIPROC_ROOT))
    if queue_depth:
        registry.register(QUEUE_DEPTH)
    return registry


def exposition() -> bytes:
    """The Prometheus text of ``exposition_registry()``."""
    return generate_latest(exposition_registry())


def process_exited(pid: int) -> None:
    """Multiprocess mode: drop the live gauges of a process that ended (a pool child)."""
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, MULTIPROC_DIR)


def exporter_start() -> Any:
    """Serve ``exposition_registry()`` on PROMETHEUS_EXPORTER_PORT (on 127.0.0.1 unless
    PROMETHEUS_EXPORTER_ADDR says otherwise) when that is set: a worker on a machine that does
    not share the web's multiprocess volume. Returns the HTTP server (``shutdown()`` ends it),
    or None when the variable is unset."""
    port = os.environ.get("PROMETHEUS_EXPORTER_PORT", "")
    if not port:
        return None
    from prometheus_client import start_http_server

    # The queue depths are the web's to report (one series per queue, not one per exporter).
    registry = exposition_registry(queue_depth=False)
    server, _thread = start_http_server(
        int(port), addr=os.environ.get("PROMETHEUS_EXPORTER_ADDR", "127.0.0.1"), registry=registry
    )
    logger.info("Prometheus exporter listening on port %s", port)
    return server
