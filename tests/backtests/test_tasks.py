"""The backtests tasks on the embedded platform, as `make run` runs them: a backtest started
from the API (over HTTP, with a token) runs on the Celery worker thread, its progress reaches the
owner's websocket promptly and no one else's, and a failing job leaves the worker going.

These tests are transactional (the server and worker threads need committed rows)."""

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from apps.backtests.models import Backtest, JobStatus
from apps.users.models import ApiToken
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform

pytestmark = transactional_db()

# Generous: the first run in a fresh worker may compile the engine (numba). Never a timing
# assertion: a missing event fails by timing out, not by being slow.
FINISH_TIMEOUT = 90.0


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


def token_for(user: Any) -> str:
    _, plaintext = ApiToken.objects.create(user=user, expiry=None, name="live")
    return str(plaintext)


def api(server: LiveServer, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310  (http on loopback)
        f"{server.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (loopback)
        return json.loads(response.read())


@contextmanager
def socket_for(server: LiveServer, token: str) -> Iterator[ClientConnection]:
    with connect(server.ws_url, additional_headers={"Authorization": f"Token {token}"}, open_timeout=5) as socket:
        assert json.loads(socket.recv(timeout=5))["event"] == "hello"
        yield socket


def progress_until_finished(socket: ClientConnection, job_id: int) -> list[dict[str, Any]]:
    """The job's progress events, up to the one saying it finished."""
    seen: list[dict[str, Any]] = []
    while True:
        message = json.loads(socket.recv(timeout=FINISH_TIMEOUT))
        if message["event"] != "job.progress" or message["data"]["id"] != job_id:
            continue
        seen.append(message["data"])
        if message["data"]["status"] in ("succeeded", "failed", "cancelled"):
            return seen


def body(instrument: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "strategy": "sma_cross",
        "params": {"fast": 10, "slow": 30},
        "instrument": instrument.pk,
        "timeframe": "1h",
        **overrides,
    }


def test_a_backtest_from_the_api_runs_on_the_worker_and_streams_progress_to_its_owner_only(
    platform: LiveServer, alice, bob, btc
):
    alice_token, bob_token = token_for(alice), token_for(bob)
    with socket_for(platform, alice_token) as alice_socket, socket_for(platform, bob_token) as bob_socket:
        # when
        created = api(platform, alice_token, "POST", "/api/v1/backtests/", body(btc))
        events = progress_until_finished(alice_socket, created["id"])
        # then: running, rising progress, succeeded
        assert events[0]["status"] == "running"
        assert [e["progress"] for e in events] == sorted(e["progress"] for e in events)
        assert events[-1] == {
            "kind": "backtest",
            "id": created["id"],
            "status": "succeeded",
            "progress": 1.0,
            "error": "",
        }
        detail = api(platform, alice_token, "GET", f"/api/v1/backtests/{created['id']}/")
        assert detail["status"] == "succeeded" and detail["metrics"]["trades"] > 0
        # bob heard nothing of it
        with pytest.raises(TimeoutError):
            bob_socket.recv(timeout=0.5)


def test_a_failing_backtest_leaves_the_worker_running_the_next_one(platform: LiveServer, alice, btc):
    token = token_for(alice)
    with socket_for(platform, token) as socket:
        broken = api(platform, token, "POST", "/api/v1/backtests/", body(btc, strategy="test_exploding", params={}))
        failed = progress_until_finished(socket, broken["id"])[-1]
        # The next job is sent once the first has failed: in embedded mode the test database is
        # an in-memory SQLite whose shared cache refuses (rather than waits for) a second
        # writer, so a POST racing the worker's claim would fail the test, not the platform.
        good = api(platform, token, "POST", "/api/v1/backtests/", body(btc))
        succeeded = progress_until_finished(socket, good["id"])[-1]
    assert failed["status"] == "failed" and "division by zero in my indicator" in failed["error"]
    assert succeeded["status"] == "succeeded"
    assert Backtest.objects.get(pk=broken["id"]).status == JobStatus.FAILED
    assert not Backtest.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists()


@pytest.mark.redis
def test_progress_reaches_the_owner_with_redis_too(platform: LiveServer, alice, btc):
    from django.conf import settings

    assert settings.EMBEDDED is False
    token = token_for(alice)
    with socket_for(platform, token) as socket:
        created = api(platform, token, "POST", "/api/v1/backtests/", body(btc))
        assert progress_until_finished(socket, created["id"])[-1]["status"] == "succeeded"
