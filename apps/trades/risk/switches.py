"""The kill switches: platform (the admin's), account and deployment, each ACTIVE, REDUCE_ONLY
or HALTED.

Setting one is a short transaction: the row is locked and written, the change is audited, a
RiskEvent per affected account tells the owner (``trade.switch`` is pushed to them after
commit), and ``trades.signals.trading_halted`` is sent after commit. The risk checks
(:mod:`apps.trades.risk.checks`) read the switches on every order and ``order_send`` re-reads
them right before talking to the venue, so nothing accepted before the switch is sent after it.

On HALTED the affected open orders (new, open, partially filled, unknown; protective stops
included) are cancelled after commit through ``apps.trades.services.orders.order_cancel``:
cancels always go through, whatever the switch says (a new order is cancelled before it is sent;
one being sent is refused by ``order_send``'s re-check of the switches).

Cancelling never holds a row lock across the venue call: it runs after this transaction
commits, one order at a time, and a failure to cancel one order is logged and does not stop
the others (reconciliation finds whatever stays open).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import TradingAccount
from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import NotFound, ValidationFailed
from apps.strategies.models import Deployment
from apps.trades.models import Order, PlatformSwitch, RiskEvent
from apps.trades.signals import trading_halted

logger = logging.getLogger(__name__)

MODES = ("active", "reduce_only", "halted")
CANCELLABLE = (Order.Status.NEW, Order.Status.OPEN, Order.Status.PARTIALLY_FILLED, Order.Status.UNKNOWN)
_KIND = {"active": RiskEvent.Kind.ALERT, "reduce_only": RiskEvent.Kind.ALERT, "halted": RiskEvent.Kind.HALTED}
_LABEL = {"active": "Trading resumed", "reduce_only": "Reduce-only mode", "halted": "Trading halted"}


def _clean(mode: str, reason: str) -> tuple[str, str]:
    if mode not in MODES:
        raise ValidationFailed(
            f"Choose one of {', '.join(MODES)}.", code="invalid_mode", extra={"fields": {"mode": ["Unknown mode."]}}
        )
    return mode, (reason or "").strip()[:500]


def _cancel_after_commit(orders: QuerySet[Order], actor: Any) -> None:
    ids = list(orders.filter(status__in=CANCELLABLE).values_list("pk", flat=True))
    if ids:
        transaction.on_commit(lambda: switch_cancel_orders(order_ids=ids, actor=actor))


def switch_cancel_orders(*, order_ids: list[int], actor: Any = None) -> int:
    """Cancel these orders one by one (outside any lock): the HALTED switch's cleanup. Returns
    how many cancels were asked for. Errors are logged per order."""
    try:
        from apps.trades.services.orders import order_cancel
    except ImportError:  # execution not installed yet
        logger.error("kill switch: order_cancel is not available; %d open orders left to the venue", len(order_ids))
        return 0
    asked = 0
    for order in Order.objects.filter(pk__in=order_ids, status__in=CANCELLABLE).select_related("account"):
        try:
            # Inside a transaction order_cancel queues the venue call after commit (a task per
            # order; inline for paper): the admin's click never waits on a hundred venues.
            with transaction.atomic():
                order_cancel(order=order, actor=actor)
            asked += 1
        except Exception:  # one order's failure must not stop the others
            logger.exception("kill switch: cancelling order %s failed", order.pk)
    return asked


def _events_for_accounts(*, account_ids: list[int], mode: str, scope: str, reason: str, deployment: Any = None) -> None:
    message = f"{_LABEL[mode]} ({scope} kill switch)" + (f": {reason}" if reason else ".")
    RiskEvent.objects.bulk_create(
        [
            RiskEvent(
                account_id=account_id,
                deployment=deployment,
                kind=_KIND[mode],
                code="kill_switch",
                message=message[:500],
                details={"scope": scope, "mode": mode, "reason": reason},
            )
            for account_id in account_ids
        ],
        batch_size=500,
    )


def _announce(*, owner_ids: set[int], scope: str, mode: str, reason: str, **ids: Any) -> None:
    for owner_id in owner_ids:
        broadcast(owner_id, "trade.switch", {"scope": scope, "mode": mode, "reason": reason, **ids})


@transaction.atomic
def platform_switch_set(*, mode: str, reason: str, actor: Any) -> PlatformSwitch:
    """Set the platform-wide kill switch (the admin's): every account's orders are checked
    against it. HALTED also cancels every open order on the platform."""
    mode, reason = _clean(mode, reason)
    PlatformSwitch.objects.get_or_create(pk=1)
    switch = PlatformSwitch.objects.select_for_update().get(pk=1)
    previous = switch.mode
    switch.mode = mode
    switch.reason = reason
    switch.changed_by = actor if getattr(actor, "pk", None) else None
    switch.changed_at = timezone.now()
    switch.save()
    audit_record(
        action="trading.platform_switch",
        actor=actor if getattr(actor, "pk", None) else None,
        target=switch,
        details={"from": previous, "to": mode, "reason": reason},
    )
    if previous != mode:
        accounts = list(
            TradingAccount.objects.exclude(status=TradingAccount.Status.DISABLED).values_list("pk", "owner_id")
        )
        _events_for_accounts(account_ids=[a for a, _ in accounts], mode=mode, scope="platform", reason=reason)
        _announce(owner_ids={o for _, o in accounts}, scope="platform", mode=mode, reason=reason)
    if mode == "halted":
        _cancel_after_commit(Order.objects.all(), actor)
        transaction.on_commit(
            lambda: trading_halted.send(sender=PlatformSwitch, account_id=None, deployment_id=None, reason=reason)
        )
    return switch


@transaction.atomic
def account_switch_set(*, account_id: int, mode: str, reason: str, actor: Any) -> TradingAccount:
    """Set an account's kill switch (its trading_state, through
    apps.accounts.services.account_set_trading_state, which audits and pushes account.status).
    HALTED also cancels the account's open orders."""
    from apps.accounts.services import account_set_trading_state

    mode, reason = _clean(mode, reason)
    previous = TradingAccount.objects.filter(pk=account_id).values_list("trading_state", flat=True).first()
    if previous is None:
        raise NotFound("No such account.")
    account = account_set_trading_state(
        account_id=account_id, state=mode, reason=reason, actor=actor if getattr(actor, "pk", None) else None
    )
    if previous != mode:
        _events_for_accounts(account_ids=[account.pk], mode=mode, scope="account", reason=reason)
        _announce(owner_ids={account.owner_id}, scope="account", mode=mode, reason=reason, account=account.pk)
    if mode == "halted":
        _cancel_after_commit(Order.objects.filter(account_id=account.pk), actor)
        transaction.on_commit(
            lambda: trading_halted.send(sender=TradingAccount, account_id=account.pk, deployment_id=None, reason=reason)
        )
    return account


@transaction.atomic
def deployment_switch_set(*, deployment_id: int, mode: str, reason: str, actor: Any) -> Deployment:
    """Set a deployment's kill switch. HALTED: status ``halted`` (the owner must resume it),
    its open orders cancelled. REDUCE_ONLY: ``is_reduce_only`` (exits only). ACTIVE: clears
    reduce-only; a halted deployment becomes ``paused`` (resuming it is the owner's call).
    Raises the deployment's ``fence`` so a tick in flight notices."""
    mode, reason = _clean(mode, reason)
    deployment = Deployment.objects.select_for_update().filter(pk=deployment_id).first()
    if deployment is None:
        raise NotFound("No such deployment.")
    before = {"status": deployment.status, "is_reduce_only": deployment.is_reduce_only}
    if mode == "halted":
        deployment.status = Deployment.Status.HALTED
        deployment.status_reason = reason or "Halted by the kill switch."
    elif mode == "reduce_only":
        deployment.is_reduce_only = True
    else:
        deployment.is_reduce_only = False
        if deployment.status == Deployment.Status.HALTED:
            deployment.status = Deployment.Status.PAUSED
            deployment.status_reason = reason or "Kill switch released; resume the deployment to trade again."
    after = {"status": deployment.status, "is_reduce_only": deployment.is_reduce_only}
    if after != before:
        deployment.fence += 1
        deployment.save(update_fields=["status", "status_reason", "is_reduce_only", "fence", "updated_at"])
        _events_for_accounts(
            account_ids=[deployment.account_id], mode=mode, scope="deployment", reason=reason, deployment=deployment
        )
        _announce(
            owner_ids={deployment.owner_id},
            scope="deployment",
            mode=mode,
            reason=reason,
            deployment=deployment.pk,
            status=deployment.status,
        )
    audit_record(
        action="deployment.switch",
        actor=actor if getattr(actor, "pk", None) else None,
        user=deployment.owner,
        target=deployment,
        details={"from": before, "to": after, "mode": mode, "reason": reason},
    )
    if mode == "halted":
        _cancel_after_commit(Order.objects.filter(deployment_id=deployment.pk), actor)
        dep_id, acc_id = deployment.pk, deployment.account_id
        transaction.on_commit(
            lambda: trading_halted.send(sender=Deployment, account_id=acc_id, deployment_id=dep_id, reason=reason)
        )
    return deployment
