"""The one websocket a client opens: `/ws/`. It joins the user's own group and forwards the
events `apps.common.broadcast` sends there. A client may also subscribe to public streams
(market data) registered in `apps.common.streams`:

    -> {"type": "subscribe", "stream": "candles", "instrument": 3, "timeframe": "1m"}
    <- {"event": "subscribed", "data": {"stream": "candles", "instrument": 3, "timeframe": "1m"}}
    <- {"event": "candle", "data": {...}}            (each closed bar)
    -> {"type": "unsubscribe", "stream": "candles", "instrument": 3, "timeframe": "1m"}

A refused subscription answers {"event": "error", "data": {"code", "message"}}. It never writes.
"""

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.common.broadcast import user_group
from apps.common.metrics import WEBSOCKET_CONNECTIONS
from apps.common.presence import presence_change
from apps.common.streams import StreamRefused, resolve_stream
from apps.users.ws_auth import WS_UNAUTHENTICATED, session_fingerprint

MAX_SUBSCRIPTIONS = 20


class EventsConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        self.subscriptions: set[str] = set()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept, then close with an application code, so the client learns why
            # (a close before accepting is only an HTTP 403 to a browser).
            await self.accept()
            await self.close(code=self.scope.get("ws_close_code", WS_UNAUTHENTICATED))
            return
        self.group = user_group(user.pk)
        WEBSOCKET_CONNECTIONS.inc()  # decremented in disconnect, which runs once self.group is set
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.user_id = user.pk
        await database_sync_to_async(presence_change)(user.pk, 1)
        await self.accept()
        await self.send_json({"event": "hello", "data": {"user": user.email}})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            WEBSOCKET_CONNECTIONS.dec()
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await database_sync_to_async(presence_change)(self.user_id, -1)
        for group in getattr(self, "subscriptions", set()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or self.group is None:
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"event": "pong", "data": {}})
        elif kind in {"subscribe", "unsubscribe"}:
            await self._subscription(kind, content)
        else:
            await self._error("unknown_message", f"Unknown message type {kind!r}.")

    async def _subscription(self, kind: str, content: dict[str, Any]) -> None:
        params = {k: v for k, v in content.items() if k not in {"type", "stream"}}
        try:
            group = await database_sync_to_async(resolve_stream)(content.get("stream"), params, self.scope["user"])
        except StreamRefused as exc:
            await self._error(exc.code, exc.message)
            return
        echo = {"stream": content.get("stream"), **params}
        if kind == "unsubscribe":
            if group in self.subscriptions:
                self.subscriptions.discard(group)
                await self.channel_layer.group_discard(group, self.channel_name)
            await self.send_json({"event": "unsubscribed", "data": echo})
            return
        if group not in self.subscriptions and len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self._error("too_many_subscriptions", f"At most {MAX_SUBSCRIPTIONS} streams per connection.")
            return
        self.subscriptions.add(group)
        await self.channel_layer.group_add(group, self.channel_name)
        await self.send_json({"event": "subscribed", "data": echo})

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"event": "error", "data": {"code": code, "message": message}})

    def _is_ended_by(self, data: dict[str, Any]) -> bool:
        """A `session.ended` event names what ended: a token, a session, or (nothing) all of the
        user's connections (the account was locked)."""
        if "token" in data:
            return bool(self.scope.get("api_token_id") == data["token"])
        if "session" in data:
            session = self.scope.get("session")
            key = getattr(session, "session_key", None)
            return self.scope.get("auth_method") == "session" and session_fingerprint(key) == data["session"]
        return True

    async def platform_event(self, message: dict[str, Any]) -> None:
        if message["event"] == "session.ended":
            if self._is_ended_by(message["data"]):
                data = {k: v for k, v in message["data"].items() if k not in {"session", "token"}}
                await self.send_json({"event": "session.ended", "data": data})
                await self.close(code=WS_UNAUTHENTICATED)
            return
        await self.send_json({"event": message["event"], "data": message["data"]})
