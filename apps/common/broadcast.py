"""Live events to a user's open browser tabs and API websocket clients.

`broadcast(user_id, event, data)` is the only way the platform pushes an event. It never sends
inside a transaction: it registers the send with `transaction.on_commit`, so a rolled-back
change is never announced and a client that reacts by reading the database finds the row.
Outside a transaction the send happens at once.

Every user has one Channels group, `user.<id>`; each connection of that user joins it and no
other user's.

Embedded mode uses Channels' in-memory layer. Its queues belong to the event loop of the ASGI
server, and a `group_send` made from another thread with `async_to_sync` runs on a loop of its
own, so the consumer is not woken until something else stirs its loop (seen: 4.8 s late). So
when the server's loop is known (recorded by `LoopRecordingApp`) and we are on another thread,
the send is handed to that loop with `run_coroutine_threadsafe` (seen: 0.7 ms).

With Redis, a plain thread (a Celery task) hands the send to one long-lived event loop per
process (`_Sender`, sending in order) and does not wait for it: `async_to_sync` would build a fresh loop,
and with it a fresh Redis connection, for every event (measured: ~17 ms per event, most of a
strategy tick's time). Events are live updates of rows already committed; a page that misses
one (the process dies before sending) shows the row on its next load.
"""

import asyncio
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from concurrent.futures import Future
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger(__name__)

_server_loop: asyncio.AbstractEventLoop | None = None
_server_loop_lock = threading.Lock()
_sender_instance: "_Sender | None" = None
_sender_pid: int | None = None
_sender_lock = threading.Lock()


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def set_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    global _server_loop
    with _server_loop_lock:
        _server_loop = loop


def get_server_loop() -> asyncio.AbstractEventLoop | None:
    loop = _server_loop
    if loop is not None and loop.is_closed():
        return None
    return loop


class _Sender:
    """One event loop thread per process that sends events through the channel layer in the
    order they were handed over (a FIFO drained by one coroutine), reusing its connections."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), name="broadcast-sender", daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.loop.create_task(self._drain(self.queue))
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    async def _drain(self, queue: "asyncio.Queue[tuple[str, dict[str, Any]]]") -> None:
        while True:
            group, message = await queue.get()
            try:
                layer = get_channel_layer()
                if layer is not None:
                    await layer.group_send(group, message)
            except Exception:
                logger.exception("broadcast to %s failed", group)

    def put(self, group: str, message: dict[str, Any]) -> None:
        assert self.queue is not None
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (group, message))


def _sender() -> _Sender:
    """This process's sender (started on first use, and again in a forked child, whose copy of
    the parent's has no thread running it)."""
    global _sender_instance, _sender_pid
    with _sender_lock:
        if _sender_instance is None or _sender_pid != os.getpid():
            _sender_instance, _sender_pid = _Sender(), os.getpid()
        return _sender_instance


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    # Decimals and datetimes become strings exactly as the API renders them.
    result: dict[str, Any] = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    return result


_pending: set["asyncio.Task[None] | Future[None]"] = set()


def _forget(future: "asyncio.Task[None] | Future[None]") -> None:
    _pending.discard(future)
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        logger.error("broadcast failed: %r", exc)


def _schedule(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
    # The event loop keeps only weak references to tasks: hold one until the send is done.
    task = loop.create_task(coro)
    _pending.add(task)
    task.add_done_callback(_forget)


def _is_in_memory(layer: Any) -> bool:
    return isinstance(layer, InMemoryChannelLayer)


def send_now(user_id: int, event: str, data: dict[str, Any]) -> None:
    """Deliver at once to the user's group. Call `broadcast` instead unless you are already
    running after commit. Never blocks an event loop; from a plain thread it returns once the
    send is handed over (in-memory layer) or done (Redis)."""
    send_to_group_now(user_group(user_id), event, data)


def send_to_group_now(group: str, event: str, data: dict[str, Any]) -> None:
    """Deliver at once to a named group (see `send_now`)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "platform.event", "event": event, "data": _jsonable(data)}
    server_loop = get_server_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if _is_in_memory(layer) and server_loop is not None and running is not server_loop:
        # The in-memory layer's queues live on the server's loop; only that loop may touch them.
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), server_loop)
        _pending.add(future)
        future.add_done_callback(_forget)
    elif running is not None:
        # Inside an event loop (an async view or consumer): schedule, don't block it.
        _schedule(running, layer.group_send(group, message))
    elif _is_in_memory(layer):
        # No server in this process (a management command, a test): the layer is local anyway.
        async_to_sync(layer.group_send)(group, message)
    else:
        _sender().put(group, message)


def broadcast(user_id: int, event: str, data: dict[str, Any]) -> None:
    """Send `event` with `data` to every open connection of `user_id`, after commit."""
    transaction.on_commit(lambda: send_now(user_id, event, data))


def group_send(group: str, event: str, data: dict[str, Any]) -> None:
    """Send `event` with `data` to every connection subscribed to a public stream's group
    (see apps.common.streams), after commit. Never use it for one user's private data."""
    transaction.on_commit(lambda: send_to_group_now(group, event, data))


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LoopRecordingApp:
    """ASGI wrapper that records the server's event loop and answers the lifespan protocol."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        if get_server_loop() is not loop:
            set_server_loop(loop)
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    set_server_loop(None)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.app(scope, receive, send)
