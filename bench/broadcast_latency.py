"""Latency of a live event from a worker thread to a websocket client, embedded mode.

Runs uvicorn (tradingplatform.embedded.server_config, lifespan on) in a thread of this
process with Channels' in-memory layer, connects a websocket client with an API token, and
sends N events from a separate thread (as a Celery worker thread would), one at a time:

- hop:   apps.common.broadcast.send_now, which hands the group_send to the server's loop
         with run_coroutine_threadsafe (what `broadcast` does after commit);
- naive: async_to_sync(layer.group_send) from the thread, on a loop of its own.

Latency is the time from just before the send call to the client's receipt of the frame.
Prints JSON {"hop_p50_ms", "hop_p95_ms", "naive_p50_ms", "naive_p95_ms"}.

    .venv/bin/python bench/broadcast_latency.py [--n 50]

Uses tradingplatform.settings.test with a temporary SQLite file, whatever REDIS_URL says.
"""

import argparse
import json
import os
import queue
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup_django(db_path: Path) -> None:
    os.environ.pop("REDIS_URL", None)
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tradingplatform.settings.test"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


class Sender(threading.Thread):
    """A plain thread standing in for a Celery worker thread: it sends when told to."""

    def __init__(self) -> None:
        super().__init__(name="bench-sender", daemon=True)
        self.jobs: queue.Queue[Any] = queue.Queue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            job()


def _measure(socket: Any, sender: Sender, send: Any, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        started: dict[str, float] = {}

        def job(i: int = i, started: dict[str, float] = started) -> None:
            started["t"] = time.perf_counter()
            send(i)

        sender.jobs.put(job)
        message = json.loads(socket.recv(timeout=30))
        received = time.perf_counter()
        assert message["data"]["i"] == i, message
        latencies.append((received - started["t"]) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        _setup_django(Path(tmp) / "bench.sqlite3")

        import uvicorn
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer
        from websockets.sync.client import connect

        from apps.common.broadcast import get_server_loop, send_now, user_group
        from apps.users.models import ApiToken, User
        from tradingplatform.embedded import server_config

        user = User.objects.create_user(email="bench@example.com", password=secrets.token_urlsafe(16))
        _, plaintext = ApiToken.objects.create(user=user, expiry=None, name="bench")

        server = uvicorn.Server(server_config(host="127.0.0.1", port=0, log_level="warning"))
        server_thread = threading.Thread(target=server.run, daemon=True)
        server_thread.start()
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        assert get_server_loop() is not None
        layer = get_channel_layer()
        assert layer.__class__.__name__ == "InMemoryChannelLayer"

        def hop(i: int) -> None:
            send_now(user.pk, "bench", {"i": i})

        def naive(i: int) -> None:
            message = {"type": "platform.event", "event": "bench", "data": {"i": i}}
            async_to_sync(layer.group_send)(user_group(user.pk), message)

        sender = Sender()
        sender.start()
        headers = {"Authorization": f"Token {plaintext}"}
        with connect(f"ws://127.0.0.1:{port}/ws/", additional_headers=headers) as socket:
            assert json.loads(socket.recv(timeout=5))["event"] == "hello"
            _measure(socket, sender, hop, 5)  # warm up both paths
            _measure(socket, sender, naive, 5)
            hop_ms = _measure(socket, sender, hop, args.n)
            naive_ms = _measure(socket, sender, naive, args.n)
        sender.jobs.put(None)
        server.should_exit = True
        server_thread.join(10)

    print(
        json.dumps(
            {
                "n": args.n,
                "hop_p50_ms": round(statistics.median(hop_ms), 3),
                "hop_p95_ms": round(_percentile(hop_ms, 95), 3),
                "naive_p50_ms": round(statistics.median(naive_ms), 3),
                "naive_p95_ms": round(_percentile(naive_ms, 95), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
