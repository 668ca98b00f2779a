"""Refusals of the trades app. Each carries a stable ``code`` the API returns and the
RiskEvent records."""

from apps.common.errors import ApplicationError, Conflict, ValidationFailed


class RiskRefusedError(ApplicationError):
    """The risk manager refused the order: a limit, a kill switch, a paused deployment.
    ``code``: max_position, max_exposure, max_symbol_exposure, max_open_positions,
    max_order_notional, daily_loss, max_drawdown, kill_switch, reduce_only, deployment_not_running,
    insufficient_balance, …"""

    status_code = 422
    default_code = "risk_refused"


class TradingHaltedError(RiskRefusedError):
    """A kill switch (platform, account or deployment) is HALTED: nothing may be sent."""

    default_code = "kill_switch"


class OrderRefusedError(ValidationFailed):
    """The order breaks a venue rule before it is sent (quantity below the minimum, an unknown
    symbol, an order type the venue does not offer)."""

    default_code = "order_invalid"


class OrderStateError(Conflict):
    """The order is not in a state that allows this (cancelling a filled order)."""

    default_code = "order_state"
