"""Input checks shared by the account services: each raises ValidationFailed naming the
field (``name``, ``balances.USDT``, ``costs.fee``, ``host``, ``risk_limits.max_open_positions``),
or ReauthenticationRequired when a live account is connected without a fresh second factor."""

import dataclasses
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError, ReauthenticationRequired, ValidationFailed
from apps.users.second_factor import second_factor_is_fresh

MAX_PAPER_BALANCE = Decimal("1e15")
MAX_PAPER_ASSETS = 50
ASSET_RE = re.compile(r"^[A-Z0-9]{1,20}$")
IB_ACCOUNT_RE = re.compile(r"^[A-Z0-9]{1,20}$")
HOST_RE = re.compile(r"^[A-Za-z0-9.\-:]{1,253}$")


def field_error(field: str, message: str, *, code: str | None = None) -> ValidationFailed:
    return ValidationFailed(message, code=code, extra={"fields": {field: [message]}})


def require_fresh_factor(request: HttpRequest | None, user: Any, what: str) -> None:
    from apps.users.selectors import user_has_second_factor

    if request is not None and second_factor_is_fresh(request, user):
        return
    minutes = settings.SECOND_FACTOR_FRESH_SECONDS // 60
    hint = (
        "Confirm with a current code and try again."
        if user_has_second_factor(user=user)
        else "Turn on two-factor authentication first."
    )
    raise ReauthenticationRequired(
        f"{what} needs two-factor authentication verified in the last {minutes} minutes. {hint}"
    )


def clean_name(*, owner: Any, name: str, exclude_pk: int | None = None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise field_error("name", "Give the account a name.")
    if len(name) > 80:
        raise field_error("name", "Names are at most 80 characters.")
    taken = TradingAccount.objects.filter(owner=owner, name=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise field_error("name", "You already have an account with this name.", code="duplicate_name")
    return name


def clean_asset(value: str, field: str) -> str:
    asset = (value or "").strip().upper()
    if not ASSET_RE.match(asset):
        raise field_error(field, f'"{value}" is not an asset code (letters and digits, up to 20).')
    return asset


def clean_balances(balances: Mapping[str, Any]) -> dict[str, Decimal]:
    if not isinstance(balances, Mapping) or not balances:
        raise field_error("balances", 'Give at least one starting balance, e.g. {"USDT": "10000"}.')
    if len(balances) > MAX_PAPER_ASSETS:
        raise field_error("balances", f"At most {MAX_PAPER_ASSETS} assets.")
    cleaned: dict[str, Decimal] = {}
    for raw_asset, raw_amount in balances.items():
        asset = clean_asset(str(raw_asset), "balances")
        try:
            amount = Decimal(str(raw_amount).strip())
        except (InvalidOperation, ValueError):
            raise field_error(f"balances.{asset}", "Not a number.") from None
        if not amount.is_finite() or amount < 0 or amount >= MAX_PAPER_BALANCE:
            raise field_error(f"balances.{asset}", "Must be 0 or more, below 10^15.")
        if asset in cleaned:
            raise field_error("balances", f"{asset} is given twice.")
        cleaned[asset] = amount
    if not any(amount > 0 for amount in cleaned.values()):
        raise field_error("balances", "At least one balance must be above zero.")
    return cleaned


def clean_costs(costs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The paper venue's fee and slippage settings, validated as the backtest engine's
    ``costs`` section (so a paper deployment and a backtest charge alike)."""
    from apps.backtests.engine.settings import EngineSettings, InvalidSettingsError

    try:
        engine = EngineSettings.from_dict({"costs": dict(costs or {})})
    except InvalidSettingsError as exc:
        field = exc.field.removeprefix("settings.")
        raise field_error(field, exc.reason) from None
    return dataclasses.asdict(engine.costs)


@lru_cache(maxsize=1)
def known_exchanges() -> frozenset[str]:
    import ccxt

    return frozenset(ccxt.exchanges)


def clean_ib(*, host: str, port: Any, client_id: Any, account_code: str) -> dict[str, Any]:
    host = (host or "").strip()
    if not host or not HOST_RE.match(host):
        raise field_error("host", "Enter the host name or IP address of TWS / IB Gateway.")
    allowed = getattr(settings, "IB_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "::1"])
    # The worker opens a TCP connection to this host: only hosts the operator allows (no SSRF).
    if "*" not in allowed and host.lower() not in {h.lower() for h in allowed}:
        raise field_error("host", f"This platform connects to IB Gateway on: {', '.join(allowed)}.")
    try:
        port_number = int(port)
    except (TypeError, ValueError):
        raise field_error("port", "Enter a port number.") from None
    if not 1 <= port_number <= 65535:
        raise field_error("port", "Ports are 1 to 65535.")
    try:
        client_number = int(client_id)
    except (TypeError, ValueError):
        raise field_error("client_id", "Enter a whole number.") from None
    if not 0 <= client_number <= 999_999_999:
        raise field_error("client_id", "Client ids are 0 to 999999999.")
    code = (account_code or "").strip().upper()
    if not IB_ACCOUNT_RE.match(code):
        raise field_error("account_code", "Enter the IB account code, e.g. DU1234567.")
    return {"host": host, "port": port_number, "client_id": client_number, "account_code": code}


def clean_risk_limits(data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise field_error("risk_limits", "Must be an object of limits.")
    try:
        from apps.trades.risk.limits import AccountLimits
    except ImportError:  # the risk module is not installed: never store limits nobody checked
        raise field_error("risk_limits", "Account limits cannot be validated on this installation.") from None
    try:
        AccountLimits.from_dict(dict(data))
    except ApplicationError as exc:
        fields = exc.extra.get("fields")
        if isinstance(fields, Mapping) and fields:
            prefixed = {
                (key if str(key).startswith("risk_limits") else f"risk_limits.{key}"): value
                for key, value in fields.items()
            }
            raise ValidationFailed(exc.message, code=exc.code, extra={**exc.extra, "fields": prefixed}) from None
        raise field_error("risk_limits", exc.message, code=exc.code) from None
    return dict(data)
