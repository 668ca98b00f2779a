"""The one websocket a client opens: `/ws/`. It joins the user's own group and forwards the
events `apps.common.broadcast` sends there. It never writes."""

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.common.broadcast import user_group
from apps.users.ws_auth import WS_UNAUTHENTICATED


class EventsConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Accept, then close with an application code, so the client learns why
            # (a close before accepting is only an HTTP 403 to a browser).
            await self.accept()
            await self.close(code=self.scope.get("ws_close_code", WS_UNAUTHENTICATED))
            return
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"event": "hello", "data": {"user": user.email}})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"event": "pong", "data": {}})

    async def platform_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"event": message["event"], "data": message["data"]})
        if message["event"] == "session.ended":
            await self.close(code=WS_UNAUTHENTICATED)
