"""Log lines carry the request's and the task's ids (apps.common.log_context), the production
JSON formatter writes them (apps.common.log_format), and no secret reaches any line."""

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from cryptography.fernet import Fernet
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from apps.common import log_context
from apps.common.log_context import ContextFilter, RedactSecretsFilter, RequestIdMiddleware
from apps.common.log_format import JsonFormatter

REPO = Path(__file__).resolve().parents[2]
CANARY = "canary-Sup3rS3cret-9f8e7d"


class Captured:
    def __init__(self, stream: io.StringIO):
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture
def json_log() -> Iterator[Captured]:
    """The production handler (JSON formatter, context and redaction filters) on the root
    logger, writing to a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactSecretsFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


logger = logging.getLogger("tests.log_context")


# --- request ids ----------------------------------------------------------------------------


def test_a_well_formed_request_id_is_kept_and_echoed(client: Any) -> None:
    response = client.get("/metrics", headers={"X-Request-ID": "lb-7f3a:9c.e_1-2"})

    assert response["X-Request-ID"] == "lb-7f3a:9c.e_1-2"


@pytest.mark.parametrize(
    "header",
    ["has spaces", "x" * 129, "semi;colon", "new\\nline", "<script>", "ünïcode"],
)
def test_a_malformed_request_id_is_replaced(client: Any, header: str) -> None:
    response = client.get("/metrics", headers={"X-Request-ID": header})

    assert response["X-Request-ID"] != header
    assert len(response["X-Request-ID"]) == 32 and int(response["X-Request-ID"], 16) >= 0


def test_without_a_header_each_request_gets_its_own_id(client: Any) -> None:
    first = client.get("/metrics")["X-Request-ID"]
    second = client.get("/metrics")["X-Request-ID"]

    assert first != second


def test_lines_logged_during_a_request_carry_its_id_and_user(json_log: Captured) -> None:
    seen: dict[str, Any] = {}

    def view(request: HttpRequest) -> HttpResponse:
        middleware.process_view(request, view, (), {})
        logger.info("handling it")
        seen.update(log_context.current())
        return HttpResponse("ok")

    middleware = RequestIdMiddleware(view)
    request = RequestFactory().get("/", headers={"X-Request-ID": "req-42"})
    request.user = type("U", (), {"is_authenticated": True, "pk": 7})()  # type: ignore[assignment]

    response = middleware(request)

    [line] = [line for line in json_log.lines() if line["message"] == "handling it"]
    assert line["request_id"] == "req-42" and line["user_id"] == 7
    assert response["X-Request-ID"] == "req-42"
    assert seen == {"request_id": "req-42", "user_id": 7}
    assert log_context.current() == {}  # nothing left behind for the next request


async def test_the_middleware_works_in_async_chains_too(json_log: Captured) -> None:
    async def view(request: HttpRequest) -> HttpResponse:
        logger.info("async handling")
        return HttpResponse("ok")

    middleware = RequestIdMiddleware(view)
    response = await middleware(RequestFactory().get("/", headers={"X-Request-ID": "async-1"}))

    assert response["X-Request-ID"] == "async-1"
    [line] = [line for line in json_log.lines() if line["message"] == "async handling"]
    assert line["request_id"] == "async-1"


@pytest.mark.django_db
def test_djangos_own_line_about_a_404_carries_the_request_id(client: Any, json_log: Captured) -> None:
    client.get("/api/v1/no-such-thing/", headers={"X-Request-ID": "req-404"})

    [line] = [line for line in json_log.lines() if line["logger"] == "django.request"]
    assert line["request_id"] == "req-404"
    assert line["level"] == "WARNING"


# --- task ids -------------------------------------------------------------------------------


@current_app.task(name="tests.common.test_log_context.logs_something", ignore_result=True)
def logs_something() -> None:
    logging.getLogger("tests.log_context").info("inside the task")


def test_lines_logged_by_a_task_carry_its_id_and_name(json_log: Captured) -> None:
    result = logs_something.apply()

    [line] = [line for line in json_log.lines() if line["message"] == "inside the task"]
    assert line["task_id"] == result.id
    assert line["task_name"] == "tests.common.test_log_context.logs_something"
    assert "task_id" not in log_context.current()


# --- secrets --------------------------------------------------------------------------------


def test_secret_values_in_arguments_never_reach_the_line(json_log: Captured) -> None:
    logger.info("connecting with %s", {"api_key": CANARY, "secret": CANARY, "exchange": "binance"})
    logger.info("login password=%s for %s", CANARY, "alice@example.com")
    logger.info("token %(token)s for %(user)s", {"token": CANARY, "user": "alice"})
    logger.warning("credentials %r", [{"passphrase": CANARY}, ("nested", {"private_key": CANARY})])

    assert CANARY not in json_log.text
    messages = [line["message"] for line in json_log.lines()]
    assert "binance" in messages[0] and "[redacted]" in messages[0]
    assert messages[1] == "login password=[redacted] for alice@example.com"
    assert messages[2] == "token [redacted] for alice"


def test_secret_values_in_extra_never_reach_the_line(json_log: Captured) -> None:
    logger.info(
        "account connected",
        extra={"api_secret": CANARY, "account_id": 12, "payload": {"apiKey": CANARY, "symbol": "BTC/USDT"}},
    )

    assert CANARY not in json_log.text
    [line] = json_log.lines()
    assert line["api_secret"] == "[redacted]"
    assert line["account_id"] == 12
    assert line["payload"] == {"apiKey": "[redacted]", "symbol": "BTC/USDT"}


def test_secret_values_in_messages_and_exceptions_are_redacted(json_log: Captured) -> None:
    logger.info(f'venue said {{"secret": "{CANARY}", "code": -2010}}')
    try:
        raise RuntimeError(f"handshake failed: api_key={CANARY}")
    except RuntimeError:
        logger.exception("venue call failed")

    assert CANARY not in json_log.text
    lines = json_log.lines()
    assert "-2010" in lines[0]["message"]
    assert "handshake failed: api_key=[redacted]" in lines[1]["exc"]


def test_every_settings_module_puts_the_filters_on_the_console() -> None:
    handler = settings.LOGGING["handlers"]["console"]
    assert handler["filters"] == ["context", "redact"]
    assert settings.LOGGING["filters"]["redact"]["()"] == "apps.common.log_context.RedactSecretsFilter"
    assert "apps.common.log_context.RequestIdMiddleware" in settings.MIDDLEWARE


# --- production, end to end -----------------------------------------------------------------

_PROD_CHILD = """
import logging

import environ

environ.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)

import django

django.setup()
from apps.common import log_context

log_context.task_started("task-123", "apps.strategies.tasks.deployment_tick")
logging.getLogger("apps.accounts").warning("stored key %s", {"api_key": "CANARY", "name": "Main"})
logging.getLogger("apps.accounts").info("connected", extra={"password": "CANARY", "account_id": 5})
"""


def test_production_logs_are_json_lines_with_ids_and_no_secrets(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "tradingplatform.settings.prod",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "example.com",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "LOG_LEVEL": "INFO",
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROD_CHILD.replace("CANARY", CANARY)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert CANARY not in result.stderr + result.stdout
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line["logger"] == "apps.accounts"]
    assert [line["level"] for line in ours] == ["WARNING", "INFO"]
    assert all(line["task_id"] == "task-123" for line in ours)
    assert all(line["task_name"] == "apps.strategies.tasks.deployment_tick" for line in ours)
    assert "api_key': [redacted]" in ours[0]["message"] and "Main" in ours[0]["message"]
    assert ours[1]["password"] == "[redacted]" and ours[1]["account_id"] == 5
