"""Who is on the other end of a websocket.

- API clients send `Authorization: Token <token>` in the handshake; tokens are not ambient
  credentials, so no Origin is needed.
- Browsers use the session cookie. Cookies are sent by any page that opens a socket to us
  (cross-site websocket hijacking), so a session is only trusted when the Origin header is one
  of ALLOWED_HOSTS; a foreign or missing Origin is refused at the handshake.
- A session whose user has a second factor but has not passed it counts as not signed in.
"""

import hashlib
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions

from apps.users.authentication import ApiTokenAuthentication
from apps.users.second_factor import session_is_verified
from apps.users.selectors import user_has_second_factor

WS_UNAUTHENTICATED = 4401
WS_SECOND_FACTOR_REQUIRED = 4403


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


@database_sync_to_async
def _user_for_token(raw: str) -> tuple[Any, str | None]:
    try:
        user, token = ApiTokenAuthentication().authenticate_credentials(raw.encode())
    except exceptions.AuthenticationFailed:
        return None, None
    return user, str(token.public_id)


@database_sync_to_async
def _second_factor_pending(user: Any, session: Any) -> bool:
    return bool(user.is_authenticated and not session_is_verified(session, user) and user_has_second_factor(user=user))


class _SessionUserCheck:
    """After the session and user are loaded: refuse a session still owing its second factor."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # channels' AuthMiddleware has already loaded the user (no lazy query here).
        user = scope["user"]
        if user.is_authenticated and await _second_factor_pending(user, scope["session"]):
            scope = dict(scope, user=AnonymousUser(), ws_close_code=WS_SECOND_FACTOR_REQUIRED)
        scope = dict(scope, auth_method="session")
        return await self.app(scope, receive, send)


class WebsocketAuthMiddleware:
    def __init__(self, app: Any):
        self.app = app
        self.session_app = AllowedHostsOriginValidator(AuthMiddlewareStack(_SessionUserCheck(app)))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        authorization = _header(scope, b"authorization")
        if authorization:
            parts = authorization.split()
            user, token_id = None, None
            if len(parts) == 2 and parts[0].lower() == "token":
                user, token_id = await _user_for_token(parts[1])
            scope = dict(scope, user=user or AnonymousUser(), auth_method="token", api_token_id=token_id)
            return await self.app(scope, receive, send)
        return await self.session_app(scope, receive, send)


def session_fingerprint(session_key: str | None) -> str:
    """Names a session in events without revealing its key (the cookie's value)."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()[:24]
