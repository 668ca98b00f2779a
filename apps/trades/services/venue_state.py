"""Recording what a venue says about our orders: its state and fills (``order_apply_state``),
the orders it holds that we had no row for (``order_adopt``: bracket legs the venue placed
natively, orders of ours found by reconciliation), and what follows an entry's fill (adopting
native bracket legs, or handing the bracket to the emulation in apps.trades.services.algos).
The venue's word wins: its status, its fills (idempotent per trade id), its size when it
decided it."""

import logging

from django.db import transaction

from apps.accounts.brokers.base import Broker, BrokerError, OrderNotFoundError, OrderState
from apps.accounts.models import TradingAccount
from apps.accounts.services import account_lock
from apps.audit.services import audit_record
from apps.marketdata.models import Instrument
from apps.trades.models import Order, RiskEvent
from apps.trades.risk.checks import risk_event_record
from apps.trades.services import events
from apps.trades.services.fills import fill_record

logger = logging.getLogger(__name__)

S = Order.Status
_VENUE_STATUSES = {s.value for s in (S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED)}


def venue_symbol(order: Order) -> str:
    """The symbol the order's venue knows it by: the paper venue takes ``symbol@venue``, so an
    instrument listed on several venues is never mistaken for another."""
    if order.account.kind == TradingAccount.Kind.PAPER:
        return f"{order.symbol}@{order.instrument.venue}"
    return order.symbol


@transaction.atomic
def order_apply_state(*, order_id: int, state: OrderState) -> Order:
    """Record what the venue says about an order: its fills (idempotent), exchange id, status
    (the venue's), and its size when the venue decided it. Resets the not-found count."""
    account_id = Order.objects.values_list("account_id", flat=True).get(pk=order_id)
    account_lock(account_id=account_id)
    for report in state.fills:
        fill_record(order_id=order_id, report=report)
    order = Order.objects.select_for_update(of=("self",)).select_related("account").get(pk=order_id)
    before = (order.status, order.exchange_order_id, order.quantity)
    if state.exchange_order_id:
        order.exchange_order_id = state.exchange_order_id[:64]
    if order.quantity == 0 and state.quantity:
        order.quantity = state.quantity
    if state.status in _VENUE_STATUSES:
        order.status = state.status
    if state.status in (S.REJECTED, S.EXPIRED, S.CANCELLED) and state.reason:
        order.status_reason = state.reason[:500]
    elif before[0] in (S.UNKNOWN, S.NEW, S.SENDING) and order.status not in (S.UNKNOWN, S.NEW, S.SENDING):
        order.status_reason = ""
    order.not_found_count = 0
    order.first_not_found_at = None
    order.next_check_at = None
    order.save()
    if (order.status, order.exchange_order_id, order.quantity) != before:
        events.announce_order(order, order.account.owner_id)
        if order.status == S.REJECTED and before[0] != S.REJECTED:
            risk_event_record(
                account=order.account,
                deployment=order.deployment,
                order=order,
                kind=RiskEvent.Kind.REFUSED,
                code="venue_rejected",
                message=order.status_reason or "The venue rejected the order.",
            )
    return order


def _after_state(order: Order, broker: Broker) -> None:
    """Work that follows a state change and needs the venue: adopt the bracket children the venue
    placed natively when the entry filled; otherwise hand the bracket to the emulation."""
    if not order.bracket or order.filled_quantity <= 0:
        return
    if broker.capabilities.native_oco:
        _adopt_children(order, broker)
        return
    try:
        from apps.trades.services import algos
    except ImportError:  # the emulation is not installed
        return
    hook = getattr(algos, "bracket_after_fill", None)
    if hook is not None:
        hook(order_id=order.pk)


def _adopt_children(entry: Order, broker: Broker) -> None:
    bracket = entry.bracket or {}
    for leg in ("stop", "target"):
        client_order_id = bracket.get(f"{leg}_client_order_id")
        if (
            not client_order_id
            or Order.objects.filter(account_id=entry.account_id, client_order_id=client_order_id).exists()
        ):
            continue
        try:
            state = broker.fetch_order(client_order_id, venue_symbol(entry))
        except OrderNotFoundError:
            continue  # not placed (yet): the next sync of the entry adopts it
        except BrokerError:
            logger.warning("could not fetch bracket leg %s of %s", client_order_id, entry.client_order_id)
            continue
        child = order_adopt(
            account_id=entry.account_id,
            state=state,
            parent_id=entry.pk,
            leg=leg,
            source=Order.Source.EXIT,
            oco_group=f"oco:{entry.client_order_id}",
        )
        if child is not None:
            order_apply_state(order_id=child.pk, state=state)


@transaction.atomic
def order_adopt(
    *,
    account_id: int,
    state: OrderState,
    parent_id: int | None = None,
    leg: str = "",
    source: str | None = None,
    oco_group: str = "",
    deployment_id: int | None = None,
    instrument: Instrument | None = None,
) -> Order | None:
    """Create our Order row for an order the venue has and we do not (a bracket leg the venue
    placed, or an order of ours found by reconciliation). Fills are recorded by the caller with
    ``order_apply_state``. None if the instrument cannot be identified."""
    account = account_lock(account_id=account_id)
    existing = Order.objects.filter(account_id=account_id, client_order_id=state.client_order_id).first()
    if existing is not None:
        return existing
    parent = Order.objects.filter(pk=parent_id).first() if parent_id is not None else None
    if parent is not None:
        instrument = parent.instrument
        deployment_id = parent.deployment_id
    if instrument is None:
        instrument = _instrument_for(account, state.symbol)
    if instrument is None:
        return None
    order = Order.objects.create(
        account=account,
        deployment_id=deployment_id,
        instrument=instrument,
        symbol=state.symbol or instrument.symbol,
        client_order_id=state.client_order_id,
        exchange_order_id=state.exchange_order_id[:64],
        source=source or source_for_client_id(state.client_order_id),
        leg=leg,
        bar_ts=parent.bar_ts if parent is not None else None,
        side=state.side or (Order.Side.SELL if parent and parent.side == Order.Side.BUY else Order.Side.BUY),
        type=state.type if state.type in Order.Type.values else Order.Type.MARKET,
        quantity=state.quantity,
        price=state.price,
        stop_price=state.stop_price,
        reduce_only=parent is not None,
        parent=parent,
        oco_group=oco_group,
        status=S.OPEN,
    )
    audit_record(
        action="order.adopted",
        user=account.owner,
        target=order,
        details={"status": state.status, "parent": parent.client_order_id if parent is not None else ""},
    )
    events.announce_order(order, account.owner_id)
    return order


def _instrument_for(account: TradingAccount, symbol: str) -> Instrument | None:
    if not symbol:
        return None
    venue = account.exchange_id or ""
    return (
        Instrument.objects.filter(symbol=symbol, venue=venue).first()
        or Instrument.objects.filter(symbol=symbol).order_by("pk").first()
    )


def source_for_client_id(client_order_id: str) -> str:
    """Which kind of our orders a client id belongs to, from its shape (apps.trades.client_ids)."""
    if "/" in client_order_id or client_order_id.startswith("tpa"):
        return Order.Source.ALGO
    if client_order_id.startswith("tpm"):
        return Order.Source.MANUAL
    if client_order_id.startswith("tpc"):
        return Order.Source.COPY
    return Order.Source.STRATEGY
