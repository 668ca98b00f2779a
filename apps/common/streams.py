"""Public streams a websocket client may subscribe to, beside its private user group.

A higher app registers a stream in its AppConfig.ready(): a name and a resolver that turns the
client's parameters into a Channels group name (raising StreamRefused for bad ones). The
consumer (apps.users) only knows this registry, so lower apps need not import higher ones.
A resolver runs in a worker thread and may query the database.
"""

from collections.abc import Callable
from typing import Any

from apps.common.errors import ValidationFailed

StreamResolver = Callable[[dict[str, Any], Any], str]

_streams: dict[str, StreamResolver] = {}


class StreamRefused(ValidationFailed):
    default_code = "stream_refused"


def register_stream(name: str, resolver: StreamResolver) -> None:
    _streams[name] = resolver


def resolve_stream(name: object, params: dict[str, Any], user: Any) -> str:
    """The group for `name` with `params`, for `user`; StreamRefused when not allowed."""
    resolver = _streams.get(name) if isinstance(name, str) else None
    if resolver is None:
        known = ", ".join(sorted(_streams)) or "none"
        raise StreamRefused(f"Unknown stream {name!r}; known streams: {known}.", code="unknown_stream")
    return resolver(params, user)
