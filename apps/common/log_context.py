"""Request and task ids on every log line, and no secrets on any.

- ``RequestIdMiddleware`` gives each HTTP request an id: the caller's ``X-Request-ID`` when it
  is well formed (1-128 of ``A-Z a-z 0-9 . _ : -``; a proxy or load balancer sets one), else a
  new one; it is echoed back in the response's ``X-Request-ID`` and, with the user's id once
  the session says who it is, set in a context variable for the request's duration.
- Celery's ``task_prerun`` / ``task_postrun`` (tradingplatform.celery) set and clear the task's
  id and name the same way (``task_started`` / ``task_finished``).
- ``ContextFilter`` copies them onto each log record (``request_id``, ``task_id``,
  ``task_name``, ``user_id``; absent when unknown), so the JSON formatter
  (apps.common.log_format) writes them.
- ``RedactSecretsFilter`` replaces the value of every key named like a secret (secret,
  passphrase, password, token, api_key, ...) in the message's arguments and ``extra``, and
  ``key=value`` text of such keys in the message, by ``[redacted]``. It is attached to the
  console handler in every settings module.

Context variables follow the code through ``sync_to_async`` / ``async_to_sync`` and are per
thread, so the worker threads of embedded mode keep their tasks apart.
"""

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
user_id_var: ContextVar[int | None] = ContextVar("user_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)
task_name_var: ContextVar[str | None] = ContextVar("task_name", default=None)


def request_id_from(header: str | None) -> str:
    """The caller's request id when well formed, else a new one."""
    if header and _REQUEST_ID_RE.match(header):
        return header
    return uuid.uuid4().hex


def current() -> dict[str, Any]:
    """The ids known here (only those that are set)."""
    values = {
        "request_id": request_id_var.get(),
        "user_id": user_id_var.get(),
        "task_id": task_id_var.get(),
        "task_name": task_name_var.get(),
    }
    return {key: value for key, value in values.items() if value is not None}


class RequestIdMiddleware:
    """Sets the request id (and the user id, known after authentication) for the request's log
    lines and echoes the id in the response. Put it first: every later line then carries it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        tokens = self._enter(request)
        try:
            response = self.get_response(request)
        finally:
            self._exit(tokens)
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        tokens = self._enter(request)
        try:
            response = await self.get_response(request)
        finally:
            self._exit(tokens)
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        return response

    def _enter(self, request: HttpRequest) -> tuple[Token[str | None], Token[int | None]]:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id_var.set(request_id), user_id_var.set(None)

    @staticmethod
    def _exit(tokens: tuple[Token[str | None], Token[int | None]]) -> None:
        request_id_var.reset(tokens[0])
        user_id_var.reset(tokens[1])

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        # Authentication middleware has run by now; the view reads the user anyway.
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            user_id_var.set(user.pk)


def user_identified(user_id: int | None) -> None:
    """Name the user of the current request (an API token authenticated in the view)."""
    user_id_var.set(user_id)


def task_started(task_id: str | None, task_name: str | None) -> tuple[Token[str | None], Token[str | None]]:
    return task_id_var.set(task_id), task_name_var.set(task_name)


def task_finished(tokens: tuple[Token[str | None], Token[str | None]] | None) -> None:
    if tokens is None:
        task_id_var.set(None)
        task_name_var.set(None)
        return
    try:
        task_id_var.reset(tokens[0])
        task_name_var.reset(tokens[1])
    except ValueError:  # set in another context (a pool thread): just clear ours
        task_id_var.set(None)
        task_name_var.set(None)


class ContextFilter(logging.Filter):
    """Adds the request / task / user ids of the current context to each record. Django logs a
    4xx / 5xx response after the middleware has returned, with the request in ``extra``: its
    id is taken from there."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "request_id"):
            request_id = getattr(getattr(record, "request", None), "request_id", None)
            if isinstance(request_id, str):
                record.request_id = request_id
        return True


# --- secrets ----------------------------------------------------------------------------------

REDACTED = "[redacted]"
_SECRET_KEY_RE = re.compile(
    r"(secret|passphrase|passwd|password|token|api[_-]?key|apikey|private[_-]?key|credential|authorization|signature)",
    re.IGNORECASE,
)
# key=value / key: value / "key": "value" in free text (a value redacted already stays as it is:
# a record may pass several handlers).
_SECRET_TEXT_RE = re.compile(
    r"""(?P<key>["']?[A-Za-z0-9_-]*(?:secret|passphrase|passwd|password|token|api[_-]?key|apikey|private[_-]?key)"""
    r"""[A-Za-z0-9_-]*["']?\s*[=:]\s*)(?P<value>\[redacted\]|"[^"]*"|'[^']*'|[^\s,;&}\]]+)""",
    re.IGNORECASE,
)
# LogRecord's own attributes; anything else on a record came from ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_MAX_DEPTH = 6


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY_RE.search(key))


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with the values of secret-named keys replaced, recursively (a copy; the
    original is left as it was)."""
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_key(k) else redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [redact(v, depth + 1) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, str) and len(value) < 100_000:
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """``password=...`` style pairs in free text, with the value replaced."""
    return _SECRET_TEXT_RE.sub(lambda m: m.group("key") + REDACTED, text)


class RedactSecretsFilter(logging.Filter):
    """No secret reaches a log line: secret-named keys in the arguments and ``extra`` and
    ``key=value`` pairs in the message lose their values (module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            if isinstance(record.args, Mapping):
                record.args = redact(record.args)
            else:
                record.args = tuple(redact(arg) for arg in record.args)
        # The message is formatted here, its args already redacted, and the text redacted as a
        # whole: a "password=%s" template redacted on its own would lose its placeholder.
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when it formats the record
            return True
        record.msg, record.args = redact_text(message), None
        for key in list(vars(record)):
            if key in _RECORD_FIELDS:
                continue
            if is_secret_key(key):
                setattr(record, key, REDACTED)
            else:
                setattr(record, key, redact(getattr(record, key)))
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra`` (and context) fields."""
    return {key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS}
