"""Many immediate paper orders at once: the copy fan-out's path to thousands of followers.

``orders_execute_paper_batch`` does for a batch of market intents on paper accounts what
``order_submit`` + the paper venue's IOC fill + ``fill_record`` do for one, with one statement
per table instead of a dozen per order:

- the accounts' rows are locked in pk order, then the deployments' (the house lock order);
- an intent whose (account, client order id) has a row already returns that row and does nothing
  else (a redelivered fan-out task): the deterministic client order id is the guard, as for
  ``order_submit``;
- each remaining intent is rounded to the lot and checked against the venue's rules and by
  ``risk_check`` (its own account, deployment and position, one platform switch read);
  a refusal is a REJECTED Order with a RiskEvent and an audit row, as ``order_submit`` records it;
- the accepted ones go to the paper venue as IOC market orders and fill at once
  (``apps.accounts.paper_immediate``); their Orders, Fills, Positions, ledger postings and audit
  rows are written in bulk, in the same transaction as the venue's side, so there is never an
  order in flight; what the venue could not fill is EXPIRED with its reason;
- after commit every fill is announced exactly as ``fill_record`` announces one
  (``fill_recorded``, ``trade.fill`` / ``trade.order`` / ``trade.position``).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import PaperOrder, TradingAccount
from apps.accounts.paper_immediate import IOC, last_bar, paper_fill_now
from apps.accounts.paper_matching import Fill as VenueFill
from apps.accounts.paper_matching import base_quote
from apps.audit.models import AuditEvent
from apps.audit.services import audit_event, audit_record_many
from apps.common.bulk import bulk_insert, bulk_update
from apps.common.errors import ApplicationError, ValidationFailed
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment
from apps.trades.errors import OrderRefusedError, RiskRefusedError
from apps.trades.intents import OrderIntent
from apps.trades.models import Fill, LedgerEntry, Order, Position
from apps.trades.risk.checks import platform_switch, risk_check, risk_refusal_record
from apps.trades.services import events
from apps.trades.services.fills import slippage_bps
from apps.trades.services.orders import _rule_refusal, _validate_intent, market_rules_for
from apps.trades.services.positions import position_math

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
S = Order.Status
_POSITION_FIELDS = [
    "quantity",
    "average_price",
    "realized_pnl",
    "fees",
    "opened_at",
    "entry_bar_ts",
    "extreme_price",
    "stop_price",
    "target_price",
    "updated_at",
]


@dataclass(frozen=True)
class BatchOutcome:
    """What became of one intent: its Order (new, REJECTED, EXPIRED, or the row that already
    existed: ``created`` False), and the refusal when the rules or the risk checks refused it."""

    intent: OrderIntent
    order: Order
    created: bool
    refusal: ApplicationError | None = None


def _check(intents: Sequence[OrderIntent], instrument: Instrument) -> None:
    for intent in intents:
        _validate_intent(intent)
        if intent.instrument_id != instrument.pk:
            raise ValidationFailed("A batch trades one instrument.", code="batch_instrument")
        if intent.type != Order.Type.MARKET or intent.quantity is None or intent.deployment_id is None:
            raise ValidationFailed("A batch takes market orders with a quantity and a deployment.", code="batch_intent")
        if not intent.client_order_id:
            raise ValidationFailed("A batch order needs its deterministic client order id.", code="batch_client_id")


@transaction.atomic
def orders_execute_paper_batch(*, intents: Sequence[OrderIntent], instrument: Instrument) -> list[BatchOutcome]:
    """Submit and fill ``intents`` (market, with quantity, deployment and client order id, on paper
    accounts, all for ``instrument``) as the module docstring says. Returns one outcome per intent,
    in order. Raises ValidationFailed for a malformed batch (nothing written)."""
    if not intents:
        return []
    _check(intents, instrument)
    account_ids = sorted({i.account_id for i in intents})
    accounts = {
        a.pk: a
        for a in TradingAccount.objects.select_for_update().filter(pk__in=account_ids).order_by("pk")
        if a.kind == TradingAccount.Kind.PAPER
    }
    deployment_ids = sorted({i.deployment_id for i in intents if i.deployment_id is not None})
    deployments = {d.pk: d for d in Deployment.objects.select_for_update().filter(pk__in=deployment_ids).order_by("pk")}
    existing = {
        (o.account_id, o.client_order_id): o
        for o in Order.objects.filter(
            account_id__in=account_ids, client_order_id__in=[i.client_order_id for i in intents]
        )
    }
    positions = {
        p.deployment_id: p for p in Position.objects.filter(deployment_id__in=deployment_ids, instrument=instrument)
    }
    rules = market_rules_for(instrument)
    platform = platform_switch()
    now = timezone.now()
    outcomes: dict[int, BatchOutcome] = {}
    accepted: list[tuple[int, OrderIntent, Order]] = []
    refused: list[tuple[int, OrderIntent, Order, ApplicationError]] = []
    bars: dict[str, dict | None] = {}
    for n, intent in enumerate(intents):
        account = accounts.get(intent.account_id)
        deployment = deployments.get(intent.deployment_id)  # type: ignore[arg-type]
        if account is None or deployment is None or deployment.account_id != account.pk:
            raise ValidationFailed("A batch order's account must be a paper account holding its deployment.")
        found = existing.get((account.pk, intent.client_order_id))
        if found is not None:
            outcomes[n] = BatchOutcome(intent=intent, order=found, created=False)
            continue
        timeframe = intent.timeframe or deployment.timeframe
        if timeframe not in bars:
            bars[timeframe] = last_bar(instrument=instrument, timeframe=timeframe)
        bar = bars[timeframe]
        reference = Decimal(str(bar["close"])) if bar is not None else None
        intent = replace(intent, quantity=rules.round_quantity(intent.quantity), timeframe=timeframe)  # type: ignore[arg-type]
        position = positions.get(deployment.pk)
        refusal: ApplicationError | None = _rule_refusal(rules, intent.quantity, reference)  # type: ignore[arg-type]
        if refusal is None and reference is None:
            refusal = OrderRefusedError(f"No candles of {instrument.symbol} {timeframe} to fill at.", code="no_price")
        if refusal is None:
            try:
                risk_check(
                    account=account,
                    deployment=deployment,
                    intent=intent,
                    price=reference,  # type: ignore[arg-type]
                    rules=rules,
                    position=position.quantity if position is not None else ZERO,
                    platform=platform,
                )
            except RiskRefusedError as exc:
                refusal = exc
        order = _order_row(intent, account, deployment, instrument, reference, now)
        if refusal is not None:
            order.status = S.REJECTED
            order.status_reason = f"{refusal.code}: {refusal.message}"[:500]
            refused.append((n, intent, order, refusal))
        else:
            accepted.append((n, intent, order))
    # The audit rows of the whole batch go in one call: each takes the per-user chain locks in
    # ascending order, and a second call in the same transaction could take them out of order
    # against another batch (a deadlock PostgreSQL would break by aborting one).
    audits: list[AuditEvent] = []
    if refused:
        audits += _write_refused(refused, accounts, deployments, outcomes)
    if accepted:
        audits += _execute(accepted, accounts, deployments, positions, instrument, bars, now, outcomes)
    audit_record_many(audits)
    return [outcomes[n] for n in range(len(intents))]


def _order_row(
    intent: OrderIntent,
    account: TradingAccount,
    deployment: Deployment,
    instrument: Instrument,
    reference: Decimal | None,
    now: datetime,
) -> Order:
    return Order(
        account=account,
        deployment=deployment,
        instrument=instrument,
        symbol=instrument.symbol,
        client_order_id=intent.client_order_id,
        source=intent.source,
        leg=intent.leg,
        bar_ts=intent.bar_ts,
        side=intent.side,
        type=Order.Type.MARKET,
        quantity=intent.quantity or ZERO,
        reduce_only=intent.reduce_only,
        expected_price=intent.expected_price if intent.expected_price is not None else reference,
        timeframe=intent.timeframe or "",
        status=S.NEW,
        created_by_id=intent.created_by_id,
        created_at=now,
        updated_at=now,
    )


def _write_refused(
    refused: list[tuple[int, OrderIntent, Order, ApplicationError]],
    accounts: dict[int, TradingAccount],
    deployments: dict[int, Deployment],
    outcomes: dict[int, BatchOutcome],
) -> list[AuditEvent]:
    bulk_insert(Order, [order for _, _, order, _ in refused], key=("account", "client_order_id"))
    audits: list[AuditEvent] = []
    for n, intent, order, refusal in refused:
        account = accounts[intent.account_id]
        risk_refusal_record(
            account=account, deployment=deployments.get(order.deployment_id or 0), order=order, error=refusal
        )
        audits.append(
            audit_event(
                action="order.rejected",
                user_id=account.owner_id,
                target=order,
                details={"code": refusal.code, "reason": refusal.message[:300]},
            )
        )
        events.announce_order(order, account.owner_id)
        outcomes[n] = BatchOutcome(intent=intent, order=order, created=True, refusal=refusal)
    return audits


def _execute(
    accepted: list[tuple[int, OrderIntent, Order]],
    accounts: dict[int, TradingAccount],
    deployments: dict[int, Deployment],
    positions: dict[int | None, Position],
    instrument: Instrument,
    bars: dict[str, dict | None],
    now: datetime,
    outcomes: dict[int, BatchOutcome],
) -> list[AuditEvent]:
    """The paper venue's side, then ours, for the accepted intents (one series per timeframe)."""
    base, quote = base_quote(instrument)
    venue_orders: dict[tuple[int, str], PaperOrder] = {}
    by_timeframe: dict[str, list[PaperOrder]] = {}
    for _, intent, order in accepted:
        paper = PaperOrder(
            account_id=intent.account_id,
            client_order_id=intent.client_order_id,
            instrument=instrument,
            symbol=instrument.symbol,
            side=intent.side,
            type="market",
            quantity=order.quantity,
            reduce_only=intent.reduce_only,
            timeframe=order.timeframe,
            time_in_force=IOC,
            accepted_bar_ts=bars[order.timeframe]["ts"],  # type: ignore[index]
            status=PaperOrder.Status.OPEN,
            created_at=now,
            updated_at=now,
        )
        venue_orders[(intent.account_id, intent.client_order_id)] = paper
        by_timeframe.setdefault(order.timeframe, []).append(paper)
    papers = list(venue_orders.values())
    bulk_insert(PaperOrder, papers, key=("account", "client_order_id"))
    for paper in papers:  # written with the states the matcher gives them (paper_fill_now)
        paper.exchange_order_id = f"P{paper.pk}"
    fills_by_order: dict[int, VenueFill] = {}
    for timeframe, own in by_timeframe.items():
        matcher = paper_fill_now(
            accounts=[accounts[a] for a in sorted({p.account_id for p in own})],
            orders=own,
            instrument=instrument,
            timeframe=timeframe,
            bar=bars[timeframe],  # type: ignore[arg-type]
            now=now,
        )
        for paper, venue_fill in matcher.fills:
            fills_by_order[paper.pk] = venue_fill

    orders = [order for _, _, order in accepted]
    for _, intent, order in accepted:
        paper = venue_orders[(intent.account_id, intent.client_order_id)]
        order.exchange_order_id = paper.exchange_order_id
        order.send_attempts = 1
        order.sent_at = now
        found = fills_by_order.get(paper.pk)
        if found is None:
            order.status = S.EXPIRED
            order.status_reason = (paper.reason or "The paper venue could not fill it at once.")[:500]
        else:  # written FILLED at once: the fill below is in the same transaction
            order.status = S.FILLED
            order.filled_quantity = found.quantity
            order.average_price = found.price
            order.fees = found.fee
    bulk_insert(Order, orders, key=("account", "client_order_id"))

    fills: list[Fill] = []
    touched: dict[int, Position] = {}
    created_positions: list[Position] = []
    audits: list[AuditEvent] = []
    for n, intent, order in accepted:
        account = accounts[intent.account_id]
        paper = venue_orders[(intent.account_id, intent.client_order_id)]
        audits.append(
            audit_event(
                action="order.created",
                user_id=account.owner_id,
                target=order,
                details={
                    "side": order.side,
                    "type": order.type,
                    "quantity": str(order.quantity),
                    "source": order.source,
                },
            )
        )
        outcomes[n] = BatchOutcome(intent=intent, order=order, created=True)
        done = fills_by_order.get(paper.pk)
        if done is None:
            continue
        fill = Fill(
            order=order,
            account_id=order.account_id,
            deployment_id=order.deployment_id,
            instrument=instrument,
            trade_id=f"P{paper.pk}",
            side=order.side,
            quantity=done.quantity,
            price=done.price,
            fee=done.fee,
            fee_currency=quote,
            is_maker=False,
            expected_price=order.expected_price,
            slippage_bps=slippage_bps(side=order.side, expected=order.expected_price, price=done.price),
            filled_at=now,
            recorded_at=now,
        )
        position = positions.get(order.deployment_id)
        if position is None:
            position = Position(
                account_id=order.account_id,
                deployment_id=order.deployment_id,
                instrument=instrument,
                symbol=instrument.symbol,
                created_at=now,
            )
            positions[order.deployment_id] = position
            created_positions.append(position)
        change = position_math(
            quantity=position.quantity,
            average_price=position.average_price,
            side=fill.side,
            fill_quantity=fill.quantity,
            price=fill.price,
        )
        fill.realized_pnl = change.realized
        position.quantity, position.average_price = change.quantity, change.average_price
        position.realized_pnl += change.realized
        position.fees += fill.fee
        position.updated_at = now
        if change.closed:
            position.opened_at = position.entry_bar_ts = position.extreme_price = None
            position.stop_price = position.target_price = None
        elif change.opened:
            position.opened_at, position.entry_bar_ts, position.extreme_price = now, None, fill.price
        touched[order.deployment_id] = position  # type: ignore[index]
        fills.append(fill)
        audits.append(
            audit_event(
                action="order.fill",
                user_id=account.owner_id,
                target=order,
                details={
                    "trade_id": fill.trade_id,
                    "quantity": str(fill.quantity),
                    "price": str(fill.price),
                    "fee": str(fill.fee),
                    "fee_currency": fill.fee_currency,
                },
            )
        )
    bulk_insert(Fill, fills, key=("order", "trade_id"))
    bulk_insert(Position, created_positions, key=("account", "deployment", "instrument"))
    fresh = {id(p) for p in created_positions}
    bulk_update(Position, [p for p in touched.values() if id(p) not in fresh], _POSITION_FIELDS)
    bulk_insert(LedgerEntry, _ledger(fills, quote, now))
    events.announce_fills_bulk(
        [(f, f.order, touched[f.order.deployment_id], accounts[f.order.account_id]) for f in fills]  # type: ignore[index]
    )
    logger.info("paper batch: %d orders, %d filled on %s %s", len(orders), len(fills), base, quote)
    return audits


def _ledger(fills: list[Fill], asset: str, now: datetime) -> list[LedgerEntry]:
    entries = []
    for fill in fills:
        signed = fill.quantity if fill.side == Order.Side.BUY else -fill.quantity
        entries.append(
            LedgerEntry(
                account_id=fill.account_id,
                deployment_id=fill.deployment_id,
                fill=fill,
                kind=LedgerEntry.Kind.TRADE,
                asset=asset,
                amount=-(signed * fill.price),
                memo=f"{fill.side} {fill.quantity} @ {fill.price}"[:200],
                created_at=now,
            )
        )
        if fill.fee:
            entries.append(
                LedgerEntry(
                    account_id=fill.account_id,
                    deployment_id=fill.deployment_id,
                    fill=fill,
                    kind=LedgerEntry.Kind.FEE,
                    asset=asset,
                    amount=-fill.fee,
                    memo=f"fee {fill.fee} {fill.fee_currency}"[:200],
                    created_at=now,
                )
            )
    return entries
