"""Connecting accounts: paper (funded through apps.accounts.paper), ccxt exchanges (the key
checked with the venue first: refused when it can withdraw, cannot trade, or is rejected;
nothing stored then) and Interactive Brokers (no secret stored). A connection test is queued
after commit."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts import crypto
from apps.accounts.brokers.base import AuthenticationBrokerError, Broker, BrokerError, Permissions, TemporaryBrokerError
from apps.accounts.models import TradingAccount
from apps.accounts.services.inputs import (
    clean_asset,
    clean_balances,
    clean_costs,
    clean_ib,
    clean_name,
    field_error,
    known_exchanges,
    require_fresh_factor,
)
from apps.accounts.services.state import account_event, account_lock, announce_status
from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict, ValidationFailed

WITHDRAW_REASON = "This key can withdraw funds; create a trade-only key (withdrawals disabled) and connect that one."
WITHDRAW_REFUSED = f"{WITHDRAW_REASON} Nothing was saved."
NO_TRADE_REFUSED = "This key cannot trade; enable spot (or futures) trading on it. Nothing was saved."


def _api_url(exchange_id: str) -> str | None:
    # Settings only (tests point a venue at a local server): never user input, so no SSRF.
    overrides: Mapping[str, str] = getattr(settings, "CCXT_API_URL_OVERRIDES", {}) or {}
    return overrides.get(exchange_id)


def _exchange_credentials(api_key: str, secret: str, password: str) -> dict[str, str]:
    credentials = {"api_key": api_key, "secret": secret}
    if password:
        credentials["password"] = password
    return credentials


def exchange_broker(*, exchange_id: str, credentials: Mapping[str, str], market_type: str, is_testnet: bool) -> Broker:
    """A CcxtBroker for these (plaintext) credentials. Used by the connect check here and by
    apps.accounts.broker_factory; nothing else builds one with secrets."""
    from apps.accounts.brokers.ccxt import CcxtBroker

    return CcxtBroker(
        exchange_id, dict(credentials), market_type=market_type, sandbox=is_testnet, api_url=_api_url(exchange_id)
    )


def _check_exchange_key(
    *, exchange_id: str, credentials: Mapping[str, str], market_type: str, is_testnet: bool
) -> Permissions:
    """Ask the venue what the key may do. Refuses (ValidationFailed, nothing stored) a key the
    venue rejects, a key that can withdraw, and a key that cannot trade."""
    try:
        broker = exchange_broker(
            exchange_id=exchange_id, credentials=credentials, market_type=market_type, is_testnet=is_testnet
        )
    except BrokerError as exc:
        raise ValidationFailed(f"{exchange_id}: {exc.message}", code="venue_unsupported") from None
    try:
        permissions = broker.fetch_permissions()
    except AuthenticationBrokerError as exc:
        message = f"The exchange refused this key ({exc.message}). Check the key and secret. Nothing was saved."
        raise field_error("api_key", message, code="invalid_credentials") from None
    except TemporaryBrokerError as exc:
        raise ValidationFailed(
            f"{exchange_id} did not answer ({exc.message}); try again in a moment. Nothing was saved.",
            code="venue_unavailable",
        ) from None
    except BrokerError as exc:
        raise ValidationFailed(
            f"{exchange_id} refused the check ({exc.message}). Nothing was saved.", code="venue_refused"
        ) from None
    finally:
        broker.close()
    if permissions.can_withdraw:
        raise field_error("api_key", WITHDRAW_REFUSED, code="withdraw_permission")
    if permissions.can_trade is False:
        raise field_error("api_key", NO_TRADE_REFUSED, code="trade_permission")
    return permissions


def permissions_json(permissions: Permissions) -> dict[str, Any]:
    return dataclasses.asdict(permissions)


def _after_connect(account: TradingAccount) -> None:
    account_id = account.pk

    def _enqueue() -> None:
        from apps.accounts import tasks

        tasks.account_test_connection.delay(account_id)

    transaction.on_commit(_enqueue)
    broadcast(account.owner_id, "account.status", account_event(account))


def _create(account: TradingAccount) -> TradingAccount:
    # Name uniqueness was checked (and a race ends in IntegrityError below, with the same message).
    account.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            account.save()
    except IntegrityError:
        raise field_error("name", "You already have an account with this name.", code="duplicate_name") from None
    return account


@transaction.atomic
def account_connect_paper(
    *,
    owner: Any,
    name: str,
    balances: Mapping[str, Any],
    base_currency: str = "USDT",
    costs: Mapping[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> TradingAccount:
    """Open a paper account with the given starting balances (asset -> amount, e.g.
    {"USDT": Decimal("10000")}) and the engine's cost settings (fee, maker_fee, fee_fixed,
    slippage...; defaults as in backtests). No second factor: no money is at stake."""
    from apps.accounts.paper import paper_account_fund

    account = TradingAccount(
        owner=owner,
        name=clean_name(owner=owner, name=name),
        kind=TradingAccount.Kind.PAPER,
        exchange_id="paper",
        market_type=TradingAccount.MarketType.SPOT,
        base_currency=clean_asset(base_currency, "base_currency"),
        connection={"costs": clean_costs(costs), "allow_short": True},
        credentials_hint="",
    )
    cleaned = clean_balances(balances)
    _create(account)
    paper_account_fund(account=account, balances=cleaned)
    audit_record(
        action="account.connected",
        actor=owner,
        target=account,
        request=request,
        details={"kind": "paper", "balances": {asset: str(amount) for asset, amount in cleaned.items()}},
    )
    _after_connect(account)
    return account


def account_connect_exchange(
    *,
    owner: Any,
    request: HttpRequest | None,
    name: str,
    exchange_id: str,
    api_key: str,
    secret: str,
    password: str = "",
    market_type: str = TradingAccount.MarketType.SPOT,
    is_testnet: bool = False,
) -> TradingAccount:
    """Connect an exchange through ccxt.

    Needs a fresh second factor (ReauthenticationRequired otherwise). The key is checked with
    the venue first, outside any transaction: a key the venue refuses, one that can withdraw,
    or one that cannot trade is refused with a ValidationFailed naming why, and nothing is
    stored. Then the credentials are encrypted and stored; only the masked hint is kept in the
    clear. A connection test is queued after commit (balances appear on the account's page).
    """
    require_fresh_factor(request, owner, "Connecting a live account")
    name = clean_name(owner=owner, name=name)
    exchange_id = (exchange_id or "").strip().lower()
    if exchange_id not in known_exchanges():
        raise field_error("exchange_id", f'"{exchange_id}" is not an exchange ccxt supports.', code="unknown_exchange")
    if market_type not in TradingAccount.MarketType.values:
        raise field_error("market_type", f"Choose one of {', '.join(TradingAccount.MarketType.values)}.")
    api_key, secret, password = (api_key or "").strip(), (secret or "").strip(), (password or "").strip()
    for field, value in (("api_key", api_key), ("secret", secret)):
        if not value:
            raise field_error(field, "This field is required.")
        if len(value) > 512:
            raise field_error(field, "Too long.")
    if len(password) > 512:
        raise field_error("password", "Too long.")
    credentials = _exchange_credentials(api_key, secret, password)
    permissions = _check_exchange_key(
        exchange_id=exchange_id, credentials=credentials, market_type=market_type, is_testnet=is_testnet
    )
    now = timezone.now()
    with transaction.atomic():
        account = _create(
            TradingAccount(
                owner=owner,
                name=name,
                kind=TradingAccount.Kind.CCXT,
                exchange_id=exchange_id,
                market_type=market_type,
                is_testnet=bool(is_testnet),
                credentials_encrypted=crypto.encrypt_credentials(credentials),
                credentials_hint=crypto.mask(api_key),
                last_test={
                    "ok": True,
                    "message": "Key checked when connected; balances follow with the first test.",
                    "balances": [],
                    "balances_total": 0,
                    "permissions": permissions_json(permissions),
                    "tested_at": now.isoformat(),
                },
                last_tested_at=now,
            )
        )
        audit_record(
            action="account.connected",
            actor=owner,
            target=account,
            request=request,
            details={
                "kind": "ccxt",
                "exchange_id": exchange_id,
                "market_type": market_type,
                "is_testnet": bool(is_testnet),
                "hint": account.credentials_hint,
                "can_withdraw": permissions.can_withdraw,
            },
        )
        _after_connect(account)
    return account


def account_reconnect_exchange(
    *, account: TradingAccount, request: HttpRequest | None, api_key: str, secret: str, password: str = ""
) -> TradingAccount:
    """Replace an exchange account's key (after a revoked key, a rotation at the venue, or
    unreadable credentials). The same checks as connecting; on success the account is active."""
    if account.kind != TradingAccount.Kind.CCXT:
        raise ValidationFailed("Only exchange accounts have a key to replace.")
    if account.status == TradingAccount.Status.DISABLED:
        raise Conflict("This account is disabled; connect a new one.", code="account_disabled")
    require_fresh_factor(request, account.owner, "Replacing a live account's key")
    api_key, secret, password = (api_key or "").strip(), (secret or "").strip(), (password or "").strip()
    for field, value in (("api_key", api_key), ("secret", secret)):
        if not value:
            raise field_error(field, "This field is required.")
    credentials = _exchange_credentials(api_key, secret, password)
    permissions = _check_exchange_key(
        exchange_id=account.exchange_id,
        credentials=credentials,
        market_type=account.market_type,
        is_testnet=account.is_testnet,
    )
    with transaction.atomic():
        account = account_lock(account_id=account.pk)
        previous = account.status
        account.credentials_encrypted = crypto.encrypt_credentials(credentials)
        account.credentials_hint = crypto.mask(api_key)
        account.status = TradingAccount.Status.ACTIVE
        account.status_reason = ""
        account.save(
            update_fields=["credentials_encrypted", "credentials_hint", "status", "status_reason", "updated_at"]
        )
        audit_record(
            action="account.reconnected",
            actor=account.owner,
            target=account,
            request=request,
            details={"hint": account.credentials_hint, "can_withdraw": permissions.can_withdraw},
        )
        if previous != account.status:
            announce_status(account)
        _after_connect(account)
    return account


def account_connect_ib(
    *,
    owner: Any,
    request: HttpRequest | None,
    name: str,
    host: str,
    port: int,
    client_id: int,
    account_code: str,
    base_currency: str = "USD",
) -> TradingAccount:
    """Connect Interactive Brokers through TWS / IB Gateway (ib_async). Needs a fresh second
    factor. No secret is stored (the gateway holds the login); the withdraw-permission check
    does not apply (the API cannot withdraw). Hosts are limited to settings.IB_ALLOWED_HOSTS.
    A connection test is queued after commit."""
    require_fresh_factor(request, owner, "Connecting a live account")
    name = clean_name(owner=owner, name=name)
    connection = clean_ib(host=host, port=port, client_id=client_id, account_code=account_code)
    with transaction.atomic():
        account = _create(
            TradingAccount(
                owner=owner,
                name=name,
                kind=TradingAccount.Kind.IB,
                exchange_id="ib",
                base_currency=clean_asset(base_currency, "base_currency"),
                connection=connection,
                credentials_hint=f"{connection['account_code']} at {connection['host']}:{connection['port']}",
            )
        )
        audit_record(
            action="account.connected",
            actor=owner,
            target=account,
            request=request,
            details={"kind": "ib", **connection},
        )
        _after_connect(account)
    return account
