"""The execution services of the trades app: orders (submit, send, resolve, sync, cancel),
fills, positions and the ledger, and reconciliation. Import from the submodules; the names
other apps call are re-exported here."""

from apps.trades.services.fills import fill_record
from apps.trades.services.orders import (
    order_apply_state,
    order_cancel,
    order_resolve,
    order_send,
    order_submit,
    order_sync,
    orders_resolve_stuck,
    orders_sync_for_account,
)
from apps.trades.services.positions import (
    account_positions,
    deployment_equity,
    deployment_pnl_summary,
    position_close,
)
from apps.trades.services.reconcile import ReconcileReport, account_reconcile

__all__ = [
    "ReconcileReport",
    "account_positions",
    "account_reconcile",
    "deployment_equity",
    "deployment_pnl_summary",
    "fill_record",
    "order_apply_state",
    "order_cancel",
    "order_resolve",
    "order_send",
    "order_submit",
    "order_sync",
    "orders_resolve_stuck",
    "orders_sync_for_account",
    "position_close",
]
