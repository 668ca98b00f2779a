"""Reads of trading accounts that leave the app. Owner scoping lives here: another user's
account does not exist for you (NotFound, 404). Disabled accounts are left out unless asked for
(their orders keep pointing at them)."""

from typing import Any

from django.db.models import QuerySet

from apps.accounts.models import TradingAccount
from apps.common.errors import NotFound


def _pk(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def account_list_for_user(
    *, user: Any, kind: str | None = None, include_disabled: bool = False
) -> QuerySet[TradingAccount]:
    """The user's trading accounts by name. ``kind``: paper / ccxt / ib."""
    queryset = TradingAccount.objects.filter(owner=user).defer("credentials_encrypted").order_by("name", "pk")
    if not include_disabled:
        queryset = queryset.exclude(status=TradingAccount.Status.DISABLED)
    if kind:
        queryset = queryset.filter(kind=kind)
    return queryset


def account_get_for_user(*, user: Any, account_id: Any, include_disabled: bool = False) -> TradingAccount:
    """One of the user's accounts, or NotFound (also for another user's and, unless
    ``include_disabled``, for a disabled one)."""
    key = _pk(account_id)
    account = (
        account_list_for_user(user=user, include_disabled=include_disabled).filter(pk=key).first()
        if key is not None and getattr(user, "is_authenticated", False)
        else None
    )
    if account is None:
        raise NotFound("No such account.")
    return account
