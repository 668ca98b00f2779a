"""Writes about trading accounts: connect (paper, ccxt exchange, Interactive Brokers), update,
disable, the account-level trading state, needs-reconnect, and "test connection".

Secrets: an exchange key arrives in plaintext once (the connect call), is checked against the
venue, encrypted (apps.accounts.crypto) and never returned, logged, audited or broadcast again;
``credentials_hint`` ("key …a1b2") is what every page shows. Workers decrypt it in
apps.accounts.broker_factory, nowhere else.

Live accounts (every kind but paper) need a second factor verified in this session within
SECOND_FACTOR_FRESH_SECONDS, like creating an API token: a caller authenticated by an API token
alone has no session, so it cannot connect a live account (403 ``reauth_required``); connect it
in the portal, or from a session verified with the second factor.

Withdrawals: an exchange key the venue reports as able to withdraw is refused, and nothing is
stored. A venue that does not report the key's permissions is accepted (and the test result
says so). Interactive Brokers: not applicable — the TWS / Gateway API this platform uses cannot
withdraw funds (withdrawals are only possible in IB's Client Portal), and IB accounts store no
secret at all (the gateway holds the login).

Network calls (checking a key, testing a connection) are made outside any transaction; rows are
locked only for the short write after.

Modules: ``inputs`` (field checks), ``connect`` (connect / reconnect), ``state`` (lock, update,
disable, trading state, needs-reconnect), ``connection_test`` (test connection). Import from
``apps.accounts.services``.
"""

from apps.accounts.services.connect import (
    NO_TRADE_REFUSED,
    WITHDRAW_REASON,
    WITHDRAW_REFUSED,
    account_connect_exchange,
    account_connect_ib,
    account_connect_paper,
    account_reconnect_exchange,
    exchange_broker,
)
from apps.accounts.services.connection_test import (
    IB_PERMISSIONS_NOTE,
    account_test_connection,
    account_test_request,
)
from apps.accounts.services.state import (
    account_disable,
    account_lock,
    account_mark_needs_reconnect,
    account_set_trading_state,
    account_update,
)

__all__ = [
    "IB_PERMISSIONS_NOTE",
    "NO_TRADE_REFUSED",
    "WITHDRAW_REASON",
    "WITHDRAW_REFUSED",
    "account_connect_exchange",
    "account_connect_ib",
    "account_connect_paper",
    "account_disable",
    "account_lock",
    "account_mark_needs_reconnect",
    "account_reconnect_exchange",
    "account_set_trading_state",
    "account_test_connection",
    "account_test_request",
    "account_update",
    "exchange_broker",
]
