"""The account's lifecycle after connecting: lock, update (name, risk limits), disable, the
account kill switch (trading_state) and needs-reconnect. Status changes are audited, announced
to the owner (``account.status``) and, after commit, sent as ``account_status_changed``."""

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from apps.accounts.models import TradingAccount
from apps.accounts.services.inputs import clean_name, clean_risk_limits, field_error
from apps.accounts.signals import account_status_changed
from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict, NotFound

logger = logging.getLogger(__name__)

# Deployments in these states hold (or may hold) positions on the account.
DEPLOYMENT_ACTIVE_STATES = ("paper", "live", "paused", "halted")
ORDER_OPEN_STATES = ("new", "sending", "open", "partially_filled", "unknown")


def account_event(account: TradingAccount) -> dict[str, Any]:
    return {
        "account_id": account.pk,
        "status": account.status,
        "status_reason": account.status_reason,
        "trading_state": account.trading_state,
        "trading_state_reason": account.trading_state_reason,
    }


def announce_status(account: TradingAccount) -> None:
    account_id, status, reason = account.pk, account.status, account.status_reason
    transaction.on_commit(
        lambda: account_status_changed.send(sender=TradingAccount, account_id=account_id, status=status, reason=reason)
    )
    broadcast(account.owner_id, "account.status", account_event(account))


def account_lock(*, account_id: int) -> TradingAccount:
    """The account row, locked (SELECT ... FOR UPDATE) until the surrounding transaction ends.

    Call inside ``transaction.atomic``. Lock order: user -> trading account -> deployment ->
    order. Never make a network call while holding it."""
    account = TradingAccount.objects.select_for_update().filter(pk=account_id).first()
    if account is None:
        raise NotFound("No such account.")
    return account


@transaction.atomic
def account_update(
    *,
    account: TradingAccount,
    actor: Any,
    name: str | None = None,
    risk_limits: Mapping[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> TradingAccount:
    """Rename the account and/or replace its risk limits (validated by
    apps.trades.risk.limits.AccountLimits). ``None`` leaves a field as it is."""
    account = account_lock(account_id=account.pk)
    if account.status == TradingAccount.Status.DISABLED:
        raise Conflict("This account is disabled.", code="account_disabled")
    changed: dict[str, Any] = {}
    if name is not None:
        cleaned = clean_name(owner=account.owner, name=name, exclude_pk=account.pk)
        if cleaned != account.name:
            changed["name"] = {"from": account.name, "to": cleaned}
            account.name = cleaned
    if risk_limits is not None:
        limits = clean_risk_limits(risk_limits)
        if limits != account.risk_limits:
            changed["risk_limits"] = {"from": account.risk_limits, "to": limits}
            account.risk_limits = limits
    if not changed:
        return account
    account.full_clean(validate_unique=False, validate_constraints=False)
    account.save(update_fields=[*changed, "updated_at"])
    audit_record(
        action="account.updated", actor=actor, user=account.owner, target=account, request=request, details=changed
    )
    broadcast(account.owner_id, "account.status", account_event(account))
    return account


@transaction.atomic
def account_disable(*, account: TradingAccount, actor: Any, request: HttpRequest | None = None) -> TradingAccount:
    """Disable (the API's DELETE): refused while a deployment on the account is running,
    paused or halted, or while it has orders that may be open. The stored secret is wiped (a
    disabled account never trades again; connect a new one), trading is halted, and the name
    is freed (renamed "<name> (disabled #id)"). The row stays for the history of its orders."""
    account = account_lock(account_id=account.pk)
    if account.status == TradingAccount.Status.DISABLED:
        return account
    if account.deployments.filter(status__in=DEPLOYMENT_ACTIVE_STATES).exists():
        raise Conflict(
            "Stop the deployments on this account first (running, paused or halted ones still hold it).",
            code="deployments_running",
        )
    if account.orders.filter(status__in=ORDER_OPEN_STATES).exists():
        raise Conflict("Cancel this account's open orders first.", code="orders_open")
    suffix = f" (disabled #{account.pk})"
    account.name = account.name[: 80 - len(suffix)] + suffix
    account.status = TradingAccount.Status.DISABLED
    account.status_reason = "Disabled by its owner."
    account.trading_state = TradingAccount.TradingState.HALTED
    account.trading_state_reason = "Account disabled."
    account.credentials_encrypted = ""
    account.save(
        update_fields=[
            "name",
            "status",
            "status_reason",
            "trading_state",
            "trading_state_reason",
            "credentials_encrypted",
            "updated_at",
        ]
    )
    audit_record(action="account.disabled", actor=actor, user=account.owner, target=account, request=request)
    announce_status(account)
    return account


@transaction.atomic
def account_set_trading_state(
    *, account_id: int, state: str, reason: str, actor: Any = None, request: HttpRequest | None = None
) -> TradingAccount:
    """Set the account's kill switch: active, reduce_only or halted (checked by the risk checks
    of every order). This only records the state; cancelling open orders on HALTED is
    apps.trades.risk.switches.account_switch_set's job, which calls this."""
    if state not in TradingAccount.TradingState.values:
        raise field_error("state", f"Choose one of {', '.join(TradingAccount.TradingState.values)}.")
    account = account_lock(account_id=account_id)
    reason = (reason or "").strip()[:500]
    if account.trading_state == state and account.trading_state_reason == reason:
        return account
    previous = account.trading_state
    account.trading_state = state
    account.trading_state_reason = reason
    account.save(update_fields=["trading_state", "trading_state_reason", "updated_at"])
    audit_record(
        action="account.trading_state_changed",
        actor=actor,
        user=account.owner,
        target=account,
        request=request,
        details={"from": previous, "to": state, "reason": reason},
    )
    broadcast(account.owner_id, "account.status", account_event(account))
    return account


@transaction.atomic
def account_mark_needs_reconnect(*, account_id: int, reason: str) -> TradingAccount:
    """Mark an active account as needing its owner to reconnect it (revoked key, unreadable
    credentials, a key that became able to withdraw). Idempotent; a disabled account stays
    disabled. After commit: ``account_status_changed`` and an ``account.status`` event.

    Called from workers; inside a caller's transaction the mark commits (or rolls back) with it.
    """
    account = account_lock(account_id=account_id)
    if account.status != TradingAccount.Status.ACTIVE:
        return account
    account.status = TradingAccount.Status.NEEDS_RECONNECT
    account.status_reason = (reason or "Reconnect this account.")[:500]
    account.save(update_fields=["status", "status_reason", "updated_at"])
    audit_record(
        action="account.needs_reconnect",
        user=account.owner,
        target=account,
        details={"reason": account.status_reason},
    )
    logger.warning("account needs reconnect", extra={"account_id": account.pk, "reason": account.status_reason})
    announce_status(account)
    return account
