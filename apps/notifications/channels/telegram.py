"""The platform's Telegram bot through the Bot API over HTTPS (``requests``).

The base URL is ``TELEGRAM_API_URL`` (default https://api.telegram.org; the tests point it at
tests/fakes/fake_telegram.py) and the token ``TELEGRAM_BOT_TOKEN``; no token = the channel is
off. Methods used: ``sendMessage`` and ``getUpdates`` (polled by beat for link codes).
"""

from typing import Any

import requests
from django.conf import settings

from apps.notifications.channels import Message, PermanentDeliveryError, TemporaryDeliveryError

TIMEOUT = (3.05, 10)


def is_configured() -> bool:
    return bool(getattr(settings, "TELEGRAM_BOT_TOKEN", ""))


def _url(method: str) -> str:
    base = getattr(settings, "TELEGRAM_API_URL", "https://api.telegram.org").rstrip("/")
    return f"{base}/bot{settings.TELEGRAM_BOT_TOKEN}/{method}"


def call(method: str, payload: dict[str, Any]) -> Any:
    """Call a Bot API method; its ``result``, or a Temporary/Permanent error (the token is
    never part of an error message)."""
    if not is_configured():
        raise PermanentDeliveryError("Telegram is not configured on this platform (TELEGRAM_BOT_TOKEN).")
    try:
        response = requests.post(_url(method), json=payload, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise TemporaryDeliveryError(f"Telegram unreachable: {type(exc).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    description = str(answer.get("description") or f"HTTP {response.status_code}")[:300]
    if response.status_code == 429 or response.status_code >= 500:
        raise TemporaryDeliveryError(f"Telegram: {description}")
    if not response.ok or not answer.get("ok"):
        raise PermanentDeliveryError(f"Telegram: {description}")
    return answer.get("result")


def send_text(chat_id: str, text: str) -> None:
    call("sendMessage", {"chat_id": chat_id, "text": text[:4000], "disable_web_page_preview": True})


def send(chat_id: str, message: Message) -> None:
    if not chat_id:
        raise PermanentDeliveryError("No Telegram chat is linked.")
    send_text(chat_id, message.text())


def get_updates(offset: int) -> list[dict[str, Any]]:
    result = call("getUpdates", {"offset": offset, "timeout": 0, "allowed_updates": ["message"]})
    return list(result or [])
