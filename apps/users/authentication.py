"""API authentication: personal tokens (knox) and sessions verified with the second factor."""

from typing import Any

from django.utils import timezone
from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from apps.users.models import ApiToken
from apps.users.selectors import user_has_second_factor


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <token>`. Expired tokens are refused (and removed by knox)."""

    def validate_user(self, auth_token: ApiToken) -> tuple[Any, ApiToken]:
        user, token = super().validate_user(auth_token)
        now = timezone.now()
        # One write a minute at most per token: enough to show "last used", cheap under load.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return user, token


class VerifiedSessionAuthentication(SessionAuthentication):
    """Session authentication (with CSRF) that refuses a session still waiting for its second
    factor. The middleware already stops such requests; this keeps the API safe on its own."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user = result[0]
        is_verified = getattr(user, "is_verified", None)
        if is_verified is not None and not is_verified() and user_has_second_factor(user=user):
            raise exceptions.PermissionDenied("Verify your second factor first.", code="second_factor_required")
        return result


class ApiTokenScheme(KnoxTokenScheme):
    """Describes ApiTokenAuthentication in the OpenAPI schema (`Authorization: Token <token>`).

    drf-spectacular registers an extension when its class is defined; defining it beside the
    authenticator guarantees that happens before any schema (or `check --deploy`) looks for it.
    """

    target_class = "apps.users.authentication.ApiTokenAuthentication"
    name = "apiToken"


class VerifiedSessionScheme(SessionScheme):
    """Describes VerifiedSessionAuthentication in the OpenAPI schema (the session cookie)."""

    target_class = "apps.users.authentication.VerifiedSessionAuthentication"
    name = "cookieAuth"
