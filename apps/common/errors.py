"""The error family services raise. The API's exception handler and the views turn these into
one JSON shape / a form error; nothing else should need to know about HTTP."""

from typing import Any


class ApplicationError(Exception):
    """A refusal the user can act on. `code` is stable and machine-readable."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.extra = extra or {}


class ValidationFailed(ApplicationError):
    default_code = "invalid"


def field_error(message: str, field: str, code: str | None = None) -> ValidationFailed:
    """A ValidationFailed about one input: ``extra["fields"]`` names it, as the API's error body
    and the forms that show a service's refusal at its field expect."""
    return ValidationFailed(message, code=code, extra={"fields": {field: [message]}})


class PermissionRefused(ApplicationError):
    status_code = 403
    default_code = "permission_denied"


class ReauthenticationRequired(PermissionRefused):
    """The action needs a second factor verified recently (SECOND_FACTOR_FRESH_SECONDS)."""

    default_code = "reauth_required"


class NotFound(ApplicationError):
    status_code = 404
    default_code = "not_found"


class Conflict(ApplicationError):
    status_code = 409
    default_code = "conflict"
