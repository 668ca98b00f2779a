"""Domain signals of the trades app, sent by its services after commit.

- ``fill_recorded(fill_id, order_id, account_id, deployment_id)``: a venue fill was recorded
  (once per fill). The marketplace's copy fan-out and notifications connect to it.
- ``order_changed(order_id, account_id, deployment_id, status)``: an order changed state.
- ``trading_halted(account_id, deployment_id, reason)``: risk halted or paused trading.
"""

from django.dispatch import Signal

fill_recorded = Signal()
order_changed = Signal()
trading_halted = Signal()
