"""Reads of the trades app that leave it. Owner scoping lives here: every `*_for_user` selector
filters through the account's owner, so another user's id finds nothing (NotFound, never 403).
The `*_for_deployment` selectors take a deployment the caller has already scoped to its owner
(apps.strategies selectors) and only filter by it."""

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from apps.common.errors import NotFound
from apps.trades.models import Fill, LedgerEntry, Order, Position, RiskEvent


def order_list_for_user(
    *,
    user: Any,
    account_id: int | None = None,
    deployment_id: int | None = None,
    status: str | list[str] | None = None,
    instrument_id: int | None = None,
    since: datetime | None = None,
) -> QuerySet[Order]:
    queryset = Order.objects.filter(account__owner=user).select_related("account", "deployment", "instrument")
    if account_id is not None:
        queryset = queryset.filter(account_id=account_id)
    if deployment_id is not None:
        queryset = queryset.filter(deployment_id=deployment_id)
    if instrument_id is not None:
        queryset = queryset.filter(instrument_id=instrument_id)
    if status:
        queryset = queryset.filter(status__in=[status] if isinstance(status, str) else status)
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    return queryset.order_by("-created_at", "-pk")


def order_get_for_user(*, user: Any, order_id: Any) -> Order:
    try:
        pk = int(order_id)
    except (TypeError, ValueError):
        raise NotFound("No such order.") from None
    order = (
        Order.objects.filter(pk=pk, account__owner=user).select_related("account", "deployment", "instrument").first()
    )
    if order is None:
        raise NotFound("No such order.")
    return order


def order_fills(*, order: Order) -> QuerySet[Fill]:
    return order.fills.order_by("filled_at", "pk")


def fill_list_for_user(
    *,
    user: Any,
    account_id: int | None = None,
    deployment_id: int | None = None,
    order_id: int | None = None,
    since: datetime | None = None,
) -> QuerySet[Fill]:
    queryset = Fill.objects.filter(account__owner=user).select_related("order", "instrument")
    if account_id is not None:
        queryset = queryset.filter(account_id=account_id)
    if deployment_id is not None:
        queryset = queryset.filter(deployment_id=deployment_id)
    if order_id is not None:
        queryset = queryset.filter(order_id=order_id)
    if since is not None:
        queryset = queryset.filter(filled_at__gte=since)
    return queryset.order_by("-filled_at", "-pk")


def fill_get_for_user(*, user: Any, fill_id: Any) -> Fill:
    try:
        pk = int(fill_id)
    except (TypeError, ValueError):
        raise NotFound("No such fill.") from None
    fill = Fill.objects.filter(pk=pk, account__owner=user).select_related("order", "instrument").first()
    if fill is None:
        raise NotFound("No such fill.")
    return fill


def position_list_for_user(
    *,
    user: Any,
    account_id: int | None = None,
    deployment_id: int | None = None,
    open_only: bool = False,
) -> QuerySet[Position]:
    queryset = Position.objects.filter(account__owner=user).select_related("account", "deployment", "instrument")
    if account_id is not None:
        queryset = queryset.filter(account_id=account_id)
    if deployment_id is not None:
        queryset = queryset.filter(deployment_id=deployment_id)
    if open_only:
        queryset = queryset.exclude(quantity=0)
    return queryset.order_by("account_id", "symbol", "pk")


def position_get_for_user(*, user: Any, position_id: Any) -> Position:
    try:
        pk = int(position_id)
    except (TypeError, ValueError):
        raise NotFound("No such position.") from None
    position = (
        Position.objects.filter(pk=pk, account__owner=user)
        .select_related("account", "deployment", "instrument")
        .first()
    )
    if position is None:
        raise NotFound("No such position.")
    return position


def risk_event_list_for_user(
    *, user: Any, account_id: int | None = None, deployment_id: int | None = None, kind: str | None = None
) -> QuerySet[RiskEvent]:
    queryset = RiskEvent.objects.filter(account__owner=user).select_related("account", "deployment", "order")
    if account_id is not None:
        queryset = queryset.filter(account_id=account_id)
    if deployment_id is not None:
        queryset = queryset.filter(deployment_id=deployment_id)
    if kind:
        queryset = queryset.filter(kind=kind)
    return queryset.order_by("-created_at", "-pk")


def ledger_list_for_user(
    *, user: Any, account_id: int | None = None, deployment_id: int | None = None
) -> QuerySet[LedgerEntry]:
    queryset = LedgerEntry.objects.filter(account__owner=user)
    if account_id is not None:
        queryset = queryset.filter(account_id=account_id)
    if deployment_id is not None:
        queryset = queryset.filter(deployment_id=deployment_id)
    return queryset.order_by("-pk")


# --- by deployment (the caller scoped the deployment to its owner) --------------------------------


def orders_for_deployment(*, deployment_id: int, limit: int | None = None) -> QuerySet[Order]:
    queryset = (
        Order.objects.filter(deployment_id=deployment_id).select_related("instrument").order_by("-created_at", "-pk")
    )
    return queryset[:limit] if limit else queryset


def open_orders_for_deployment(*, deployment_id: int) -> QuerySet[Order]:
    return Order.objects.filter(deployment_id=deployment_id, status__in=Order.OPEN_STATUSES).order_by("pk")


def fills_for_deployment(*, deployment_id: int, limit: int | None = None) -> QuerySet[Fill]:
    queryset = Fill.objects.filter(deployment_id=deployment_id).select_related("order").order_by("-filled_at", "-pk")
    return queryset[:limit] if limit else queryset


def positions_for_deployment(*, deployment_id: int, open_only: bool = False) -> QuerySet[Position]:
    queryset = Position.objects.filter(deployment_id=deployment_id).select_related("instrument")
    if open_only:
        queryset = queryset.exclude(quantity=0)
    return queryset.order_by("symbol", "pk")


def position_for_deployment(*, deployment_id: int, instrument_id: int) -> Position | None:
    return Position.objects.filter(deployment_id=deployment_id, instrument_id=instrument_id).first()


def risk_events_for_deployment(*, deployment_id: int, limit: int | None = None) -> QuerySet[RiskEvent]:
    queryset = RiskEvent.objects.filter(deployment_id=deployment_id).order_by("-created_at", "-pk")
    return queryset[:limit] if limit else queryset


def orders_open_for_account(*, account_id: int) -> QuerySet[Order]:
    return Order.objects.filter(account_id=account_id, status__in=Order.OPEN_STATUSES).order_by("pk")
