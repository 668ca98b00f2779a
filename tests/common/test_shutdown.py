"""docker-compose.yml stops the workers gracefully: longer than a tick's time limit between
SIGTERM (Celery's warm shutdown: running tasks finish) and SIGKILL. The warm shutdown itself,
with a real worker process: tests/fault/test_graceful_shutdown.py."""

from pathlib import Path
from typing import Any

import yaml

from apps.strategies.tasks import TICK_TIME_LIMIT
from apps.trades.tasks import SEND_TIME_LIMIT

COMPOSE = Path(__file__).resolve().parent.parent.parent / "docker-compose.yml"


def seconds(value: str) -> float:
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(unit) and value[: -len(unit)].replace(".", "", 1).isdigit():
            return float(value[: -len(unit)]) * factor
    return float(value)


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_the_trading_worker_has_longer_than_a_tick_to_stop() -> None:
    trading = services()["worker-trading"]

    assert "ticks" in " ".join(trading["command"])
    assert seconds(trading["stop_grace_period"]) > max(TICK_TIME_LIMIT, SEND_TIME_LIMIT)


def test_every_worker_stops_gracefully_and_restarts() -> None:
    for name in ("worker", "worker-trading"):
        service = services()[name]
        # Docker's default is 10 s, less than a tick may take.
        assert seconds(service["stop_grace_period"]) >= 60, name
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name


def test_web_and_workers_share_the_metrics_volume_in_folders_of_their_own() -> None:
    # Prometheus multiprocess mode (apps.common.metrics): one folder per container.
    for name in ("web", "worker", "worker-trading"):
        service = services()[name]
        assert any(v.endswith(":/home/app/prometheus") for v in service["volumes"]), name
        assert service["environment"]["PROMETHEUS_MULTIPROC_ROOT"] == "/home/app/prometheus"
        command = " ".join(service["command"])
        assert 'PROMETHEUS_MULTIPROC_DIR="$$PROMETHEUS_MULTIPROC_ROOT/$$HOSTNAME"' in command, name


def test_seconds_reads_compose_durations() -> None:
    assert seconds("90s") == 90
    assert seconds("2m") == 120
    assert seconds("1500ms") == 1.5
