"""Domain signals of the accounts app, sent after commit.

- ``paper_orders_changed(account_id, client_order_ids)``: the paper venue filled, triggered
  or cancelled these orders while matching a closed bar; the execution service syncs them.
- ``account_status_changed(account_id, status, reason)``: e.g. needs_reconnect after a revoked key.
"""

from django.dispatch import Signal

paper_orders_changed = Signal()
account_status_changed = Signal()
