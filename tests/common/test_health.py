"""/healthz says which part is down (database, cache, broker, worker); /metrics is Prometheus text."""

import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from apps.common import health
from apps.common.tasks import worker_heartbeat
from tests.common.live_db import transactional_db
from tests.common.live_stack import running_worker, short_lived_connections
from tests.conftest import free_port, port_open, require

pytestmark = pytest.mark.django_db


def get_health(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    return response.status_code, response.json()


def test_healthz_with_recent_heartbeat_is_200_and_all_ok(client: Client) -> None:
    # given
    health.record_heartbeat()
    # when
    status, body = get_health(client)
    # then
    assert status == 200
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert set(body["checks"]) == {"database", "cache", "broker", "worker"}
    assert all(check["ok"] for check in body["checks"].values())


def test_healthz_without_heartbeat_is_503_naming_the_worker(client: Client) -> None:
    status, body = get_health(client)

    assert status == 503
    assert body["status"] == "fail"
    assert body["failing"] == ["worker"]
    assert body["checks"]["worker"]["detail"] == "no heartbeat from any worker"


def test_healthz_with_stale_heartbeat_is_503_naming_the_worker(client: Client, settings: Any) -> None:
    cache.set(health.HEARTBEAT_KEY, time.time() - settings.HEARTBEAT_MAX_AGE_SECONDS - 30, 600)

    status, body = get_health(client)

    assert status == 503
    assert body["failing"] == ["worker"]
    assert "ago" in body["checks"]["worker"]["detail"]


def test_healthz_is_open_to_anonymous_and_holds_no_user_data(client: Client, alice: Any) -> None:
    health.record_heartbeat()

    response = client.get("/healthz")

    assert response.status_code == 200
    assert alice.email.encode() not in response.content


def test_heartbeat_task_marks_the_worker_alive(client: Client) -> None:
    worker_heartbeat()

    status, body = get_health(client)

    assert status == 200
    assert body["checks"]["worker"]["ok"] is True


@transactional_db()
def test_heartbeat_sent_to_the_embedded_worker_makes_healthz_200(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: no heartbeat yet
    assert get_health(client)[0] == 503
    # when: the beat-scheduled task goes through the broker to a worker thread
    with short_lived_connections(monkeypatch), running_worker():
        worker_heartbeat.delay()
        deadline = time.monotonic() + 10
        while cache.get(health.HEARTBEAT_KEY) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    # then
    status, body = get_health(client)
    assert status == 200, body


def test_metrics_is_prometheus_text(client: Client) -> None:
    client.get("/healthz")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# HELP " in text
    assert "# TYPE " in text
    assert "django_http_requests_before_middlewares_total" in text


@pytest.fixture
def redis_server() -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of our own on a free port, so stopping it harms no one else."""
    require(bool(shutil.which("redis-server")), "needs redis-server (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process.port = port  # type: ignore[attr-defined]
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not open its port"
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


@pytest.fixture
def pointed_at(redis_server: subprocess.Popen[bytes], settings: Any) -> Iterator[str]:
    """Cache and Celery broker on our redis-server, as in production mode."""
    from tradingplatform.celery import app

    url = f"redis://127.0.0.1:{redis_server.port}/0"  # type: ignore[attr-defined]
    settings.EMBEDDED = False
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    previous = app.conf.broker_url
    app.conf.update(broker_url=url)
    try:
        yield url
    finally:
        app.conf.update(broker_url=previous)


def test_healthz_names_cache_and_broker_when_redis_goes_down(
    client: Client, redis_server: subprocess.Popen[bytes], pointed_at: str
) -> None:
    # given: up, with a heartbeat in that Redis
    health.record_heartbeat()
    status, body = get_health(client)
    assert status == 200, body
    assert body["checks"]["cache"]["detail"] == "redis"
    assert body["checks"]["broker"]["detail"] == "redis"
    # when
    redis_server.terminate()
    redis_server.wait(10)
    # then
    status, body = get_health(client)
    assert status == 503
    assert {"cache", "broker"} <= set(body["failing"])
    assert "database" not in body["failing"]
    assert body["checks"]["database"]["ok"] is True
