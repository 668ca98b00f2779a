"""Venue adapters behind one contract (base.py): CcxtBroker (brokers/ccxt.py), IbBroker
(brokers/ib.py) and the paper venue (apps/accounts/paper.py). No Django in this package.

The adapters themselves are imported from their modules (``from apps.accounts.brokers.ccxt
import CcxtBroker``) so that importing the contract does not import ccxt or ib_async.
"""

from apps.accounts.brokers.base import (
    ORDER_TYPES,
    TERMINAL_VENUE_STATUSES,
    VENUE_STATUSES,
    AmbiguousBrokerError,
    AuthenticationBrokerError,
    Balance,
    Broker,
    BrokerError,
    Capabilities,
    ConnectionReport,
    FillReport,
    InsufficientFundsError,
    InvalidOrderError,
    MarketRules,
    NotSentError,
    OrderNotFoundError,
    OrderRequest,
    OrderState,
    PermanentBrokerError,
    Permissions,
    PositionReport,
    TemporaryBrokerError,
)

__all__ = [
    "ORDER_TYPES",
    "TERMINAL_VENUE_STATUSES",
    "VENUE_STATUSES",
    "AmbiguousBrokerError",
    "AuthenticationBrokerError",
    "Balance",
    "Broker",
    "BrokerError",
    "Capabilities",
    "ConnectionReport",
    "FillReport",
    "InsufficientFundsError",
    "InvalidOrderError",
    "MarketRules",
    "NotSentError",
    "OrderNotFoundError",
    "OrderRequest",
    "OrderState",
    "PermanentBrokerError",
    "Permissions",
    "PositionReport",
    "TemporaryBrokerError",
]
