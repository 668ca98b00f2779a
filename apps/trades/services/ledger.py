"""The per-deployment (or account-manual) cash journal.

Every fill posts, in the instrument's quote asset, the trade's cash flow (a buy of q at p is
-q*p, a sell +q*p) and, when the fee was charged in the quote asset, the fee (negative; see
apps.trades.services.fills for fees in other assets). A ledger's balance is its capital (the
deployment's `capital`; 0 for manual trading) plus the sum of its non-capital entries: capital
entries, if any are ever posted, record changes of allocation and are not counted twice.
Entries are append-only: a correction is a new ADJUSTMENT entry, never an edit.
"""

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum

from apps.trades.models import Fill, LedgerEntry, Order

ZERO = Decimal(0)


def of_deployment(deployment_id: int | None) -> dict[str, Any]:
    """Filter keywords for a deployment's rows, or the account's manual ones (deployment NULL)."""
    return {"deployment__isnull": True} if deployment_id is None else {"deployment_id": deployment_id}


def _require_atomic() -> None:
    # Scenario D1: money is only ever moved inside a transaction holding the account lock.
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("Ledger postings must run inside a transaction.")


def ledger_post_fill(*, fill: Fill, fee_cash: Decimal, asset: str) -> list[LedgerEntry]:
    """Post a fill's cash flow and fee. Call inside the transaction that records the fill,
    holding the account lock."""
    _require_atomic()
    signed = fill.quantity if fill.side == Order.Side.BUY else -fill.quantity
    entries = [
        LedgerEntry(
            account_id=fill.account_id,
            deployment_id=fill.deployment_id,
            fill=fill,
            kind=LedgerEntry.Kind.TRADE,
            asset=asset,
            amount=-(signed * fill.price),
            memo=f"{fill.side} {fill.quantity} @ {fill.price}"[:200],
        )
    ]
    if fee_cash:
        entries.append(
            LedgerEntry(
                account_id=fill.account_id,
                deployment_id=fill.deployment_id,
                fill=fill,
                kind=LedgerEntry.Kind.FEE,
                asset=asset,
                amount=-fee_cash,
                memo=f"fee {fill.fee} {fill.fee_currency}"[:200],
            )
        )
    return LedgerEntry.objects.bulk_create(entries)


def ledger_balance(*, account_id: int, deployment_id: int | None) -> Decimal:
    """Sum of the ledger's non-capital entries (add the deployment's capital for its cash)."""
    total = (
        LedgerEntry.objects.filter(account_id=account_id, **of_deployment(deployment_id))
        .exclude(kind=LedgerEntry.Kind.CAPITAL)
        .aggregate(total=Sum("amount"))["total"]
    )
    return total if total is not None else ZERO
