"""The one place a trading account becomes a Broker, and the one place its credentials are
decrypted: inside the worker about to use them (a task of the orders queue, a connection test,
reconciliation). Never from a web request, never logged.

``broker_for(account)`` builds:
- paper -> apps.accounts.paper.PaperBroker(account.id)
- ccxt  -> apps.accounts.brokers.ccxt.CcxtBroker with the decrypted key; the API host comes from
  settings.CCXT_API_URL_OVERRIDES (tests) or the venue's own, never from user input;
- ib    -> apps.accounts.brokers.ib.IbBroker(host, port, client_id, account_code).

Credentials no configured key can open (tampered, or their key was dropped before rotation):
the account is marked needs_reconnect and AuthenticationBrokerError is raised, so callers treat
it like a revoked key. A disabled account has no broker (AuthenticationBrokerError).
"""

from apps.accounts import crypto
from apps.accounts.brokers.base import AuthenticationBrokerError, Broker
from apps.accounts.models import TradingAccount

UNREADABLE_REASON = (
    "The stored credentials cannot be decrypted (the encryption key changed or the data was damaged). "
    "Reconnect the account with its key."
)


def broker_for(account: TradingAccount) -> Broker:
    """A Broker for ``account``, ready to use; the caller closes it. Raises
    AuthenticationBrokerError for a disabled account or unreadable credentials (after marking
    the account needs_reconnect, which locks the account row: call this before taking row locks
    of your own, as a network call must not run under them anyway)."""
    if account.status == TradingAccount.Status.DISABLED:
        raise AuthenticationBrokerError("This account is disabled.", code="account_disabled")
    if account.kind == TradingAccount.Kind.PAPER:
        from apps.accounts.paper import PaperBroker

        return PaperBroker(account.pk)
    if account.kind == TradingAccount.Kind.IB:
        from apps.accounts.brokers.ib import IbBroker

        connection = account.connection or {}
        return IbBroker(
            str(connection.get("host", "")),
            int(connection.get("port", 0)),
            int(connection.get("client_id", 0)),
            str(connection.get("account_code", "")),
        )
    if account.kind == TradingAccount.Kind.CCXT:
        from apps.accounts import services

        try:
            credentials = crypto.decrypt_credentials(account.credentials_encrypted)
        except crypto.CredentialsUnreadableError:
            services.account_mark_needs_reconnect(account_id=account.pk, reason=UNREADABLE_REASON)
            raise AuthenticationBrokerError(UNREADABLE_REASON, code="credentials_unreadable") from None
        return services.exchange_broker(
            exchange_id=account.exchange_id,
            credentials=credentials,
            market_type=account.market_type,
            is_testnet=account.is_testnet,
        )
    raise AuthenticationBrokerError(f"Unknown account kind {account.kind!r}.", code="unknown_kind")
