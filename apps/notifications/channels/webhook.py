"""Outgoing webhooks: a JSON POST signed with the user's secret.

Headers: ``X-Timestamp`` (Unix seconds), ``X-Signature`` = hex HMAC-SHA256 over
``f"{timestamp}.{body}"`` (the raw body bytes as sent) with the user's secret, ``X-Event``.
A receiver recomputes the HMAC, compares in constant time and refuses timestamps older than a
few minutes (see the settings page). 2xx = delivered; 408/429/5xx or no answer = retried;
any other status = failed.

Private, loopback and link-local addresses are refused unless
``NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE`` (on in embedded mode, off in production): a user must
not make the workers call the platform's own network.
"""

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

from apps.notifications.channels import Message, PermanentDeliveryError, TemporaryDeliveryError

TIMEOUT = (3.05, 10)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_url(url: str) -> None:
    """Refuse a URL the workers must not call (scheme, private address): PermanentDeliveryError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentDeliveryError("The webhook URL must be http(s)://host/...")
    if getattr(settings, "NOTIFICATIONS_WEBHOOK_ALLOW_PRIVATE", False):
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise TemporaryDeliveryError(f"Cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise PermanentDeliveryError(f"The webhook host {parts.hostname} is not a public address.")


def payload(message: Message) -> dict[str, Any]:
    return {
        "event": message.event,
        "title": message.title,
        "body": message.body,
        "count": message.count,
        "notifications": message.items,
    }


def send(url: str, secret: str, message: Message) -> None:
    if not url or not secret:
        raise PermanentDeliveryError("No webhook URL or secret set.")
    check_url(url)
    body = json.dumps(payload(message), cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "trading-platform-webhook/1",
        "X-Timestamp": timestamp,
        "X-Signature": sign(secret, timestamp, body),
        "X-Event": message.event,
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        raise TemporaryDeliveryError(f"Webhook unreachable: {type(exc).__name__}") from None
    if 200 <= response.status_code < 300:
        return
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise TemporaryDeliveryError(f"Webhook answered HTTP {response.status_code}")
    raise PermanentDeliveryError(f"Webhook answered HTTP {response.status_code}")
