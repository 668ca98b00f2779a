"""Writes of webhooks: the owner's enable / disable / rotate, and ``webhook_receive`` (one
request to the public endpoint: checks, the order, the record of the attempt).

Settings (getattr defaults): WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS 300, WEBHOOK_BODY_MAX_BYTES
10000, WEBHOOK_RATE_PER_MINUTE 30 (a new webhook's limit), WEBHOOK_RATE_MAX_PER_MINUTE 600.
"""

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.crypto import decrypt_credentials, encrypt_credentials
from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import ApplicationError, NotFound, ValidationFailed
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment, DeploymentWebhook, WebhookSignal
from apps.strategies.webhooks import payload as wire
from apps.strategies.webhooks.orders import webhook_orders_place
from apps.strategies.webhooks.payload import WebhookPayload, WebhookRefusal
from apps.strategies.webhooks.ratelimit import first_refusal_this_minute, rate_allow, rate_forget

logger = logging.getLogger(__name__)

SECRET_PREFIX = "tvwh_"  # noqa: S105 (a prefix that tells the secret apart, not a secret)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- the owner's configuration ------------------------------------------------------------------


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_secret(*, webhook: DeploymentWebhook) -> str:
    return decrypt_credentials(webhook.secret_encrypted)["secret"]


def _rate(value: int | None) -> int | None:
    if value is None:
        return None
    top = int(_setting("WEBHOOK_RATE_MAX_PER_MINUTE", 600))
    if not 1 <= value <= top:
        message = f"Between 1 and {top} requests a minute."
        raise ValidationFailed(
            message, code="invalid_rate_limit", extra={"fields": {"rate_limit_per_minute": [message]}}
        )
    return value


def _locked(deployment: Deployment) -> Deployment:
    locked = Deployment.objects.select_for_update().filter(pk=deployment.pk, kind=Deployment.Kind.STRATEGY).first()
    if locked is None:
        raise NotFound("No such deployment.")
    return locked


@transaction.atomic
def webhook_enable(
    *, deployment: Deployment, actor: Any, rate_limit_per_minute: int | None = None
) -> tuple[DeploymentWebhook, str | None]:
    """Turn the deployment's webhook on. The first time, a URL token and a secret are made and
    the secret is returned (the only time it is: it is stored encrypted); later, the webhook is
    switched back on with its secret unchanged and None is returned. Call with a deployment the
    caller scoped to ``actor``."""
    rate = _rate(rate_limit_per_minute)
    deployment = _locked(deployment)
    webhook = DeploymentWebhook.objects.filter(deployment=deployment).first()
    secret = None
    if webhook is None:
        secret = _new_secret()
        webhook = DeploymentWebhook(
            deployment=deployment,
            token=secrets.token_urlsafe(24),
            secret_encrypted=encrypt_credentials({"secret": secret}),
            secret_rotated_at=timezone.now(),
            rate_limit_per_minute=rate or int(_setting("WEBHOOK_RATE_PER_MINUTE", 30)),
        )
    else:
        webhook.is_enabled = True
        if rate is not None:
            webhook.rate_limit_per_minute = rate
    webhook.full_clean(exclude=["deployment"])
    webhook.save()
    if secret is not None:
        rate_forget(webhook_id=webhook.pk)  # ids can be reused (SQLite after a rollback)
    audit_record(
        action="webhook.enabled",
        actor=actor,
        target=deployment,
        details={"webhook": webhook.pk, "rate_limit_per_minute": webhook.rate_limit_per_minute},
    )
    return webhook, secret


def _existing(deployment: Deployment) -> DeploymentWebhook:
    webhook = DeploymentWebhook.objects.select_for_update().filter(deployment=deployment).first()
    if webhook is None:
        raise NotFound("This deployment has no webhook: enable it first.", code="webhook_not_enabled")
    return webhook


@transaction.atomic
def webhook_disable(*, deployment: Deployment, actor: Any) -> DeploymentWebhook:
    """Refuse every signal (403) until enabled again; the URL and secret are kept."""
    deployment = _locked(deployment)
    webhook = _existing(deployment)
    webhook.is_enabled = False
    webhook.save(update_fields=["is_enabled", "updated_at"])
    audit_record(action="webhook.disabled", actor=actor, target=deployment, details={"webhook": webhook.pk})
    return webhook


@transaction.atomic
def webhook_rotate(*, deployment: Deployment, actor: Any) -> tuple[DeploymentWebhook, str]:
    """A new secret, returned this once; the old one is refused from this commit on (a signal
    being accepted holds the deployment lock, so it finishes under the secret it was checked
    with or is refused)."""
    deployment = _locked(deployment)
    webhook = _existing(deployment)
    secret = _new_secret()
    webhook.secret_encrypted = encrypt_credentials({"secret": secret})
    webhook.secret_rotated_at = timezone.now()
    webhook.save(update_fields=["secret_encrypted", "secret_rotated_at", "updated_at"])
    audit_record(action="webhook.rotated", actor=actor, target=deployment, details={"webhook": webhook.pk})
    return webhook, secret


# --- one request --------------------------------------------------------------------------------


@dataclass
class WebhookAnswer:
    """The HTTP answer to a webhook request, and the attempt's record (None: not recorded)."""

    status: int
    body: dict[str, Any]
    signal: WebhookSignal | None = None


@dataclass
class _Attempt:
    remote_addr: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    parsed: WebhookPayload | None = None


def webhook_receive(
    *, token: str, body: bytes, signature: str | None, remote_addr: str | None = None, now: datetime | None = None
) -> WebhookAnswer:
    """Check one request to ``/hooks/tradingview/<token>/`` and act on it (module docstring of
    apps.strategies.webhooks). Every outcome for a known token is recorded and pushed to the
    owner; an unknown token is a 404 recorded nowhere (it names no owner). Only ever acts on
    the deployment the token names."""
    webhook = DeploymentWebhook.objects.select_related("deployment").filter(token=token).first()
    if webhook is None:
        logger.info("webhook_unknown_token", extra={"event": "webhook_unknown_token", "remote_addr": remote_addr})
        return WebhookAnswer(404, {"error": {"code": "unknown_webhook", "message": "No such webhook."}})
    now = now or timezone.now()
    attempt = _Attempt(remote_addr=remote_addr)
    try:
        secret_encrypted = _check(webhook, body, signature, now, attempt)
        return _accept(webhook, attempt, secret_encrypted, now)
    except WebhookRefusal as exc:
        return _refuse(webhook, attempt, exc, now)


def _check(webhook: DeploymentWebhook, body: bytes, signature: str | None, now: datetime, attempt: _Attempt) -> str:
    """Everything that can be checked before the locks; returns the secret (encrypted) checked.
    The rate comes first: every other refusal writes a row, and a flood must not."""
    if not rate_allow(webhook_id=webhook.pk, per_minute=webhook.rate_limit_per_minute, now=now.timestamp()):
        raise WebhookRefusal(
            f"Over {webhook.rate_limit_per_minute} requests a minute: slow down.", code="rate_limited", status=429
        )
    if not webhook.is_enabled:
        raise WebhookRefusal("This webhook is disabled.", code="disabled", status=403)
    max_bytes = int(_setting("WEBHOOK_BODY_MAX_BYTES", 10_000))
    if len(body) > max_bytes:
        raise WebhookRefusal(f"The body is over {max_bytes} bytes.", code="body_too_large", status=413)
    secret = webhook_secret(webhook=webhook)
    if signature:
        wire.check_signature(body, signature, secret)
    data = wire.parse_body(body, max_bytes=max_bytes)
    attempt.payload = wire.recorded(data)
    if not signature:
        wire.check_secret(data, secret)
    attempt.parsed = wire.validate(
        data, now=now, tolerance_seconds=float(_setting("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", 300))
    )
    return webhook.secret_encrypted


def _instrument(deployment: Deployment, symbol: str) -> Instrument:
    key = wire.symbol_key(symbol)
    instruments = list(deployment.instruments.all().order_by("pk"))
    for instrument in instruments:
        if wire.symbol_key(instrument.symbol) == key:
            return instrument
    names = ", ".join(i.symbol for i in instruments) or "none"
    raise WebhookRefusal(
        f"{symbol} is not one of this deployment's instruments ({names}).", code="unknown_symbol", status=422
    )


def _accept(webhook: DeploymentWebhook, attempt: _Attempt, secret_encrypted: str, now: datetime) -> WebhookAnswer:
    """Under the account then the deployment lock: still running, same secret, a new nonce;
    the orders; the accepted record. A replay or an error rolls it all back (refused after)."""
    from apps.accounts.services import account_lock

    payload = attempt.parsed
    assert payload is not None
    deployment = webhook.deployment
    if WebhookSignal.objects.filter(deployment=deployment, nonce=payload.nonce, status="accepted").exists():
        raise _replay()
    try:
        with transaction.atomic():
            account = account_lock(account_id=deployment.account_id)
            deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
            current = DeploymentWebhook.objects.filter(pk=webhook.pk).values_list("secret_encrypted", "is_enabled")
            row = current.first()
            if row is None or row[0] != secret_encrypted:
                raise WebhookRefusal("The secret was rotated.", code="bad_secret", status=401)
            if not row[1]:
                raise WebhookRefusal("This webhook is disabled.", code="disabled", status=403)
            if not deployment.is_running:
                raise WebhookRefusal(
                    f"The deployment is {deployment.get_status_display().lower()}: start it to trade on signals.",
                    code="not_running",
                    status=409,
                )
            instrument = _instrument(deployment, payload.symbol)
            try:
                with transaction.atomic():
                    signal = _record(webhook, attempt, status="accepted", code="ok", http_status=200, message="")
            except IntegrityError:
                raise _replay() from None
            placed = webhook_orders_place(
                account=account, deployment=deployment, instrument=instrument, payload=payload
            )
            signal.code = placed.code
            signal.message = placed.message[:500]
            signal.order = placed.orders[-1] if placed.orders else None
            signal.order_ids = [o.pk for o in placed.orders]
            signal.save(update_fields=["code", "message", "order", "order_ids"])
            DeploymentWebhook.objects.filter(pk=webhook.pk).update(last_signal_at=now)
            _announce(deployment, signal)
    except WebhookRefusal:
        raise
    except ApplicationError as exc:
        status = exc.status_code if exc.status_code >= 400 else 422
        raise WebhookRefusal(exc.message, code=exc.code, status=status) from None
    body: dict[str, Any] = {
        "status": "accepted",
        "signal": signal.pk,
        "code": signal.code,
        "orders": [
            {
                "id": o.pk,
                "client_order_id": o.client_order_id,
                "side": o.side,
                "type": o.type,
                "quantity": str(o.quantity),
                "status": o.status,
                "reason": o.status_reason,
            }
            for o in placed.orders
        ],
    }
    if signal.message:
        body["message"] = signal.message
    return WebhookAnswer(200, body, signal)


def _replay() -> WebhookRefusal:
    return WebhookRefusal("This nonce was already used: each alert needs a new one.", code="replayed_nonce", status=409)


def _record(
    webhook: DeploymentWebhook, attempt: _Attempt, *, status: str, code: str, http_status: int, message: str
) -> WebhookSignal:
    parsed = attempt.parsed
    payload = attempt.payload
    return WebhookSignal.objects.create(
        webhook=webhook,
        deployment_id=webhook.deployment_id,
        status=status,
        code=code[:40],
        http_status=http_status,
        message=message[:500],
        action=(parsed.action if parsed else str(payload.get("action", "")))[:8],
        symbol=(parsed.symbol if parsed else str(payload.get("symbol", "")))[:40],
        nonce=(parsed.nonce if parsed else str(payload.get("nonce", "")))[:100],
        sent_at=parsed.sent_at if parsed else None,
        payload=payload,
        remote_addr=attempt.remote_addr,
    )


def _refuse(webhook: DeploymentWebhook, attempt: _Attempt, exc: WebhookRefusal, now: datetime) -> WebhookAnswer:
    """Record the refused attempt (one a minute while rate limited) and answer with the error."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.extra:
        error.update(exc.extra)
    signal = None
    if exc.code != "rate_limited" or first_refusal_this_minute(webhook_id=webhook.pk, now=now.timestamp()):
        message = exc.message
        if exc.code == "rate_limited":
            message += " (further refusals this minute are not recorded)"
        with transaction.atomic():
            signal = _record(
                webhook, attempt, status="refused", code=exc.code, http_status=exc.status_code, message=message
            )
            _announce(webhook.deployment, signal)
    logger.info(
        "webhook_refused",
        extra={"event": "webhook_refused", "code": exc.code, "deployment_id": webhook.deployment_id},
    )
    return WebhookAnswer(exc.status_code, {"error": error}, signal)


def signal_payload(signal: WebhookSignal) -> dict[str, Any]:
    """An attempt as the page and the API show it (never the secret: it is not stored)."""
    return {
        "id": signal.pk,
        "deployment_id": signal.deployment_id,
        "status": signal.status,
        "code": signal.code,
        "http_status": signal.http_status,
        "message": signal.message,
        "action": signal.action,
        "symbol": signal.symbol,
        "nonce": signal.nonce,
        "sent_at": signal.sent_at.isoformat() if signal.sent_at else None,
        "order_id": signal.order_id,
        "order_ids": signal.order_ids,
        "created_at": (signal.created_at or timezone.now()).isoformat(),
    }


def _announce(deployment: Deployment, signal: WebhookSignal) -> None:
    broadcast(deployment.owner_id, "webhook.signal", signal_payload(signal))
