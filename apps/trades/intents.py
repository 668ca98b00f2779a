"""OrderIntent: what a strategy tick, a manual order, a copy or a webhook wants traded, before
risk checks and before an Order row exists. Built by the caller, consumed by
`apps.trades.services.orders.order_submit`."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class OrderIntent:
    """One order to place.

    - ``quantity``: base units, or None when ``quote_quantity`` / ``sizing`` decide the size
      (an entry sized from the deployment's equity: see apps.trades.risk.sizing).
    - ``reduce_only``: only ever lowers the position it applies to (exits, stops, closes).
    - ``expected_price``: the price the decision was taken at (the signal bar's close for a
      market order, the limit for a limit): each fill's slippage is measured against it.
    - ``bracket``: exits attached to an entry: {"stop_loss": 0.02, "take_profit": 0.04} as
      fractions of the fill price, or {"stop_price": .., "target_price": ..}; ``trailing_stop``
      and ``breakeven_after`` fractions are emulated on each tick.
    - ``algo``: "twap" or "iceberg" with ``algo_params`` ({"slices": 5, "interval_s": 60} /
      {"visible": "0.1"}): the parent schedules child orders.
    """

    account_id: int
    instrument_id: int
    side: str  # buy | sell
    type: str = "market"  # market | limit | stop | stop_limit
    client_order_id: str = ""
    source: str = "strategy"
    deployment_id: int | None = None
    leg: str = "entry"
    bar_ts: datetime | None = None
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    reduce_only: bool = False
    expected_price: Decimal | None = None
    sizing: dict[str, Any] | None = None
    bracket: dict[str, Any] | None = None
    algo: str = ""
    algo_params: dict[str, Any] = field(default_factory=dict)
    timeframe: str | None = None
    created_by_id: int | None = None
