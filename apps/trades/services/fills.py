"""Recording venue fills: idempotent per (order, trade id), exact in Decimal.

A fill updates, in one transaction: the Fill row, its Order (filled quantity, average price,
fees, status), the Position (signed quantity, average entry, realised P&L) and the ledger
(cash flow and fee). Locks, in the platform's order: account -> order -> position (the
deployment row is not written here, so it is not locked: a tick holding its deployment may
submit while fills are recorded without a lock cycle).

Fees. A fee in the quote asset is posted to the ledger. A fee in the base asset (Binance takes
a spot buy's fee from the coins bought) is paid in quantity: the position changes by the filled
quantity less that fee, exactly what the venue's balance does, and no cash entry is posted
(the smaller holding is the cost). A fee in a third asset (BNB) stays on the Fill row only.
Order.fees and Position.fees count every fee valued in the quote asset, for reporting.
"""

import logging
from decimal import Decimal

from django.db import IntegrityError, transaction

from apps.accounts.brokers.base import FillReport
from apps.accounts.services import account_lock
from apps.audit.services import audit_record
from apps.trades.models import Fill, Order
from apps.trades.services import events
from apps.trades.services.ledger import ledger_post_fill
from apps.trades.services.positions import position_apply_fill, position_lock

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
_BPS = Decimal(10000)
_SLIPPAGE_PLACES = Decimal("0.000001")
_FILLABLE = (
    Order.Status.NEW,
    Order.Status.SENDING,
    Order.Status.OPEN,
    Order.Status.PARTIALLY_FILLED,
    Order.Status.UNKNOWN,
)


def slippage_bps(*, side: str, expected: Decimal | None, price: Decimal) -> Decimal | None:
    """Basis points against the trader: a buy above, or a sell below, the expected price is
    positive."""
    if expected is None or expected <= 0:
        return None
    diff = price - expected if side == Order.Side.BUY else expected - price
    return (diff / expected * _BPS).quantize(_SLIPPAGE_PLACES)


def _fee_split(report: FillReport, base: str, quote: str) -> tuple[Decimal, Decimal, Decimal]:
    """(fee paid in base units, fee to post as quote cash, fee valued in quote for reporting)."""
    currency = (report.fee_currency or "").upper()
    if not report.fee:
        return ZERO, ZERO, ZERO
    if base and currency == base.upper():
        return report.fee, ZERO, report.fee * report.price
    if not currency or not quote or currency == quote.upper():
        return ZERO, report.fee, report.fee
    return ZERO, ZERO, ZERO


@transaction.atomic
def fill_record(*, order_id: int, report: FillReport) -> Fill | None:
    """Record one venue fill of an order; None if that trade id was recorded already.

    Side effects after commit: `fill_recorded`, `order_changed`, and `trade.fill`,
    `trade.order`, `trade.position` to the account's owner; an audit row is written with it.
    """
    account_id = Order.objects.values_list("account_id", flat=True).get(pk=order_id)
    account = account_lock(account_id=account_id)
    order = Order.objects.select_for_update(of=("self",)).select_related("instrument").get(pk=order_id)
    if Fill.objects.filter(order_id=order.pk, trade_id=report.trade_id).exists():
        return None
    quote = order.instrument.quote or account.base_currency
    fee_base, fee_cash, fee_value = _fee_split(report, order.instrument.base, quote)
    try:
        with transaction.atomic():
            fill = Fill.objects.create(
                order=order,
                account_id=order.account_id,
                deployment_id=order.deployment_id,
                instrument_id=order.instrument_id,
                trade_id=report.trade_id,
                side=order.side,
                quantity=report.quantity,
                price=report.price,
                fee=report.fee,
                fee_currency=report.fee_currency,
                is_maker=report.is_maker,
                expected_price=order.expected_price,
                slippage_bps=slippage_bps(side=order.side, expected=order.expected_price, price=report.price),
                filled_at=report.at,
            )
    except IntegrityError:
        return None  # recorded by a concurrent writer that did not take the account lock
    position = position_lock(
        account_id=order.account_id,
        deployment_id=order.deployment_id,
        instrument_id=order.instrument_id,
        symbol=order.symbol,
    )
    fill.realized_pnl = position_apply_fill(
        position=position, order=order, fill=fill, fee_base=fee_base, fee_value=fee_value, at=report.at
    )
    fill.save(update_fields=["realized_pnl"])
    ledger_post_fill(fill=fill, fee_cash=fee_cash, asset=quote)

    filled = order.filled_quantity + report.quantity
    previous_value = order.filled_quantity * (order.average_price or ZERO)
    order.average_price = (previous_value + report.quantity * report.price) / filled
    order.filled_quantity = filled
    order.fees += fee_value
    if order.status in _FILLABLE:
        complete = order.quantity > 0 and filled >= order.quantity
        order.status = Order.Status.FILLED if complete else Order.Status.PARTIALLY_FILLED
    order.save(update_fields=["filled_quantity", "average_price", "fees", "status", "updated_at"])

    audit_record(
        action="order.fill",
        user=account.owner,
        target=order,
        details={
            "trade_id": report.trade_id,
            "quantity": str(report.quantity),
            "price": str(report.price),
            "fee": str(report.fee),
            "fee_currency": report.fee_currency,
        },
    )
    events.announce_fill(fill, order, position, account.owner_id)
    logger.info("fill %s recorded for order %s", report.trade_id, order.client_order_id)
    return fill
