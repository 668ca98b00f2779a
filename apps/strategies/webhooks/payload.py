"""Reading a webhook request: the body, the secret or signature, the fields. Pure: no database."""

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from apps.common.errors import ApplicationError

ACTIONS = ("buy", "sell", "close")
FIELDS = ("action", "symbol", "size", "price", "timestamp", "nonce")
MAX_NONCE = 100
MAX_SYMBOL = 40
_SIGNATURE_PREFIX = "sha256="


class WebhookRefusal(ApplicationError):
    """A request the webhook refuses: ``status_code`` is the HTTP status it answers with."""

    def __init__(self, message: str, *, code: str, status: int, extra: dict[str, Any] | None = None):
        super().__init__(message, code=code, extra=extra)
        self.status_code = status


@dataclass(frozen=True)
class WebhookPayload:
    action: str
    symbol: str
    nonce: str
    sent_at: datetime
    size: Decimal | None
    price: Decimal | None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_body(body: bytes, *, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object (numbers as Decimal); 413 / 422 otherwise."""
    if len(body) > max_bytes:
        raise WebhookRefusal(f"The body is over {max_bytes} bytes.", code="body_too_large", status=413)
    try:
        data = json.loads(body.decode("utf-8"), parse_float=Decimal, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRefusal(
            'The body is not JSON: send an object such as {"action": "buy", "symbol": ..., "nonce": ...}.',
            code="malformed",
            status=422,
        ) from None
    if not isinstance(data, dict):
        raise WebhookRefusal("The body must be a JSON object.", code="malformed", status=422)
    return data


def signature_of(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(body: bytes, signature: str, secret: str) -> None:
    """``X-Signature`` is the hex HMAC-SHA256 of the raw body keyed with the secret."""
    given = signature.strip().lower()
    if given.startswith(_SIGNATURE_PREFIX):
        given = given[len(_SIGNATURE_PREFIX) :]
    if not hmac.compare_digest(signature_of(body, secret).encode(), given.encode("utf-8", "replace")):
        raise WebhookRefusal("The X-Signature does not match the body.", code="bad_signature", status=401)


def check_secret(data: dict[str, Any], secret: str) -> None:
    given = data.get("secret")
    if not isinstance(given, str) or not given:
        raise WebhookRefusal(
            'Give the webhook\'s secret in the body ("secret") or sign the body (X-Signature).',
            code="missing_secret",
            status=401,
        )
    if not hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode()):
        raise WebhookRefusal("The secret is wrong.", code="bad_secret", status=401)


def recorded(data: dict[str, Any]) -> dict[str, Any]:
    """What an attempt keeps of the body: the known fields (short strings), the names of the
    others, never the secret."""
    kept: dict[str, Any] = {}
    for name in FIELDS:
        if name in data:
            value = data[name]
            kept[name] = (
                str(value)[:MAX_NONCE] if isinstance(value, str | int | float | Decimal) else type(value).__name__
            )
    other = sorted(str(k)[:40] for k in data if k not in FIELDS and k != "secret")
    if other:
        kept["other_fields"] = other[:20]
    return kept


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | Decimal):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str):
        value = value.strip()
    try:
        number = Decimal(value) if isinstance(value, str | int | Decimal) else Decimal(repr(float(value)))
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError from None
    if not number.is_finite() or number <= 0:
        raise ValueError
    return number


def parse_timestamp(value: Any) -> datetime:
    """Unix seconds (milliseconds when over 1e11), or ISO 8601 (``{{timenow}}``); aware UTC."""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        value = Decimal(value.strip())
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
        if seconds > 1e11:
            seconds /= 1000
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str) and value.strip():
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise ValueError


def validate(data: dict[str, Any], *, now: datetime, tolerance_seconds: float) -> WebhookPayload:
    """The signal's fields, or 422 naming each bad field; then the timestamp window (422)."""
    errors: dict[str, list[str]] = {}
    action = _text(data, "action").lower()
    if action not in ACTIONS:
        errors["action"] = ["One of buy, sell, close."]
    symbol = _text(data, "symbol")
    if not symbol or len(symbol) > MAX_SYMBOL:
        errors["symbol"] = ["The instrument's symbol, e.g. BTCUSDT or BINANCE:BTCUSDT."]
    nonce = _text(data, "nonce")
    if not nonce or len(nonce) > MAX_NONCE:
        errors["nonce"] = [f"A string unique to this alert, 1 to {MAX_NONCE} characters (e.g. {{{{timenow}}}})."]
    sent_at = None
    try:
        sent_at = parse_timestamp(data.get("timestamp"))
    except (ValueError, OverflowError, OSError):
        errors["timestamp"] = ["Unix seconds or an ISO 8601 time, e.g. {{timenow}}."]
    numbers: dict[str, Decimal | None] = {}
    for name in ("size", "price"):
        raw = data.get(name)
        if raw is None or raw == "":
            numbers[name] = None
            continue
        try:
            numbers[name] = _number(raw)
        except ValueError:
            errors[name] = ["A positive number."]
    if errors:
        first = next(iter(errors))
        raise WebhookRefusal(
            f"{first}: {errors[first][0]}", code="invalid_payload", status=422, extra={"fields": errors}
        )
    assert sent_at is not None
    skew = abs((now - sent_at).total_seconds())
    if skew > tolerance_seconds:
        raise WebhookRefusal(
            f"The timestamp is {skew:.0f} s away from the server's clock; the window is {tolerance_seconds:.0f} s.",
            code="stale_timestamp",
            status=422,
        )
    return WebhookPayload(
        action=action, symbol=symbol, nonce=nonce, sent_at=sent_at, size=numbers["size"], price=numbers["price"]
    )


def symbol_key(symbol: str) -> str:
    """A symbol as TradingView or a venue writes it, reduced to compare: ``BINANCE:BTCUSDT``,
    ``BTC/USDT``, ``btc-usdt`` -> ``BTCUSDT``; a perpetual's ``.P`` suffix is dropped."""
    name = symbol.rsplit(":", 1)[-1].upper()
    if name.endswith(".P"):
        name = name[:-2]
    return re.sub(r"[^A-Z0-9]", "", name)
