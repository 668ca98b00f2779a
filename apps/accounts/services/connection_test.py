"""Test connection: queued by the owner (or an operator), run in a worker of the "orders"
queue (it decrypts the key through apps.accounts.broker_factory), stored in ``last_test`` and
pushed to the owner as ``account.tested``."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.brokers.base import Balance, BrokerError, ConnectionReport
from apps.accounts.models import TradingAccount
from apps.accounts.services.connect import WITHDRAW_REASON, permissions_json
from apps.accounts.services.state import account_lock, account_mark_needs_reconnect, announce_status
from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict

MAX_TEST_BALANCES = 200
IB_PERMISSIONS_NOTE = (
    "Not applicable: the IB API cannot withdraw funds (withdrawals need IB's Client Portal), and no secret is stored."
)


def _balance_json(balance: Balance) -> dict[str, str]:
    return {"asset": balance.asset, "free": str(balance.free), "locked": str(balance.locked)}


def _report_json(report: ConnectionReport, *, at: datetime) -> dict[str, Any]:
    balances = [b for b in report.balances if b.free or b.locked]
    return {
        "ok": report.ok,
        "message": report.message[:500],
        "balances": [_balance_json(b) for b in balances[:MAX_TEST_BALANCES]],
        "balances_total": len(balances),
        "permissions": permissions_json(report.permissions),
        "tested_at": at.isoformat(),
    }


@transaction.atomic
def account_test_request(*, account: TradingAccount, actor: Any, request: HttpRequest | None = None) -> None:
    """Queue a connection test (task ``account_test_connection``, queue "orders") after commit.
    The result lands in ``last_test`` and reaches the owner as an ``account.tested`` event."""
    if account.status == TradingAccount.Status.DISABLED:
        raise Conflict("This account is disabled.", code="account_disabled")
    audit_record(action="account.test_requested", actor=actor, user=account.owner, target=account, request=request)
    account_id = account.pk

    def _enqueue() -> None:
        from apps.accounts import tasks

        tasks.account_test_connection.delay(account_id)

    transaction.on_commit(_enqueue)


def _run_test(account: TradingAccount) -> ConnectionReport:
    from apps.accounts.broker_factory import broker_for

    try:
        broker = broker_for(account)
    except BrokerError as exc:
        return ConnectionReport(ok=False, message=exc.message)
    try:
        return broker.test_connection()
    except BrokerError as exc:  # adapters report instead of raising; never lose the answer
        return ConnectionReport(ok=False, message=exc.message)
    finally:
        broker.close()


def account_test_connection(*, account_id: int) -> dict[str, Any]:
    """Fetch balances and permissions from the venue (in a worker: it decrypts the key) and
    store the result in ``last_test`` / ``last_tested_at``; broadcast ``account.tested`` to the
    owner. A key that now reports withdrawals marks the account needs_reconnect; a working key
    on an account that needed reconnecting makes it active again. Returns the stored result
    (empty for a missing or disabled account)."""
    account = TradingAccount.objects.filter(pk=account_id).first()
    if account is None or account.status == TradingAccount.Status.DISABLED:
        return {}
    report = _run_test(account)  # network: no transaction, no lock
    now = timezone.now()
    result = _report_json(report, at=now)
    if account.kind == TradingAccount.Kind.IB:
        result["permissions"]["detail"] = result["permissions"].get("detail") or IB_PERMISSIONS_NOTE
    elif report.ok and report.permissions.can_withdraw is None:
        result["message"] = (
            result["message"] + " The venue does not report whether this key can withdraw: make sure it cannot."
        ).strip()
    with transaction.atomic():
        account = account_lock(account_id=account_id)
        if account.status == TradingAccount.Status.DISABLED:
            return {}
        account.last_test = result
        account.last_tested_at = now
        account.save(update_fields=["last_test", "last_tested_at", "updated_at"])
        audit_record(
            action="account.tested",
            user=account.owner,
            target=account,
            details={"ok": report.ok, "message": result["message"]},
        )
        if report.ok and report.permissions.can_withdraw:
            account = account_mark_needs_reconnect(account_id=account.pk, reason=WITHDRAW_REASON)
        elif report.ok and account.status == TradingAccount.Status.NEEDS_RECONNECT:
            account.status = TradingAccount.Status.ACTIVE
            account.status_reason = ""
            account.save(update_fields=["status", "status_reason", "updated_at"])
            audit_record(action="account.reconnected", user=account.owner, target=account, details={"by": "test"})
            announce_status(account)
        broadcast(account.owner_id, "account.tested", {"account_id": account.pk, "status": account.status, **result})
    return result
