r"""The copy fan-out: a leader's fill becomes one order per active follower, exactly once.

Flow. ``trades`` announces ``fill_recorded`` after the fill commits; the receiver calls
``copy_fanout_start``, which (for a fill of a listed deployment) splits the active
subscriptions that started before the fill into chunks of MARKETPLACE_FANOUT_CHUNK and queues
one ``copy_fanout_chunk`` task per chunk on the orders queue. A chunk sizes each follower's copy
(``copy_plan``), puts every order through the follower's own risk checks and writes a CopyTrade
per subscription: the order, or why there is none.

Exactly once. Each copy order's client order id is ``tpc<leader fill>.<subscription>``, unique
per account, and each CopyTrade is UNIQUE(leader fill, subscription): a redelivered chunk, a
chunk run twice at the same time, or the sweep re-queuing finds the rows and adds nothing. Paper
followers go through ``orders_execute_paper_batch`` (the venue's side and ours in one
transaction: no order in flight); others through ``order_submit`` one by one (written first,
sent after commit, asked about, never resent). ``copy_fanout_sweep`` (beat, and at worker start)
re-queues the subscriptions a fill has no CopyTrade for yet (a worker killed mid-fan-out); a copy
older than MARKETPLACE_COPY_MAX_AGE_SECONDS is not placed any more but recorded as skipped.

Isolation. One follower's refusal (funds, limits, a paused account) is that follower's CopyTrade
and RiskEvent; the batch goes on for the others. A follower on a venue that fails is sent after
commit by its own task.

Sizing (``copy_plan``). A leader fill that opens or adds is copied per the subscription's mode:
``multiplier`` x the leader's quantity, ``equity_ratio`` x follower copy-book equity / leader
deployment equity, or ``fixed_notional`` / price; capped so the copy book's exposure stays within
the allocation and the maximum position; rounded down to the lot. A fill that reduces is copied
in proportion (the follower sells the same fraction of its copied position; a close closes it
all); one that reverses closes and opens. The price-deviation guard (skip when the price now is
more than X % from the leader's fill) and a suspended listing skip what would open or add, never
what reduces. A copy book whose loss reaches the maximum loss stops copying and is closed.
"""

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DecimalField, F, Sum, When
from django.utils import timezone

from apps.accounts.brokers.base import MarketRules
from apps.accounts.models import TradingAccount
from apps.common.broadcast import send_now
from apps.common.bulk import bulk_insert
from apps.common.metrics import COPIES, COPY_FANOUT_CHUNK_SECONDS
from apps.common.presence import users_online
from apps.marketdata.models import Instrument
from apps.marketplace.models import CopyTrade, Listing, Subscription
from apps.strategies.models import Deployment
from apps.trades.client_ids import copy_join_order_id, copy_order_id
from apps.trades.intents import OrderIntent
from apps.trades.models import Fill, LedgerEntry, Order, Position
from apps.trades.services.batch import orders_execute_paper_batch
from apps.trades.services.orders import market_rules_for, order_submit
from apps.trades.services.positions import last_price

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
HUNDRED = Decimal(100)
TEN_DP = Decimal("1e-10")
# A listing's followers copy what opens or adds while it is approved, or back in review after a
# change of its terms (they subscribed to it approved); whatever its status, reductions and
# closes are copied, so no follower is left holding what the leader has closed.
OPENING = (Listing.Status.APPROVED, Listing.Status.PENDING)
# How often, and how long apart, a chunk waits for the copies of a leader's earlier fills
# before copying a later one (copies follow the leader's fills in order, per follower).
DEFER_SECONDS = 2.0
MAX_DEFERRALS = 30


def _chunk_size() -> int:
    return int(getattr(settings, "MARKETPLACE_FANOUT_CHUNK", 500))


def _max_age() -> float:
    return float(getattr(settings, "MARKETPLACE_COPY_MAX_AGE_SECONDS", 900))


# Copy books can never be listed (a listing needs a strategy deployment): their fills, thousands
# per leader fill, are told apart without a query once seen. Ids only ever enter.
_copy_books: set[int] = set()
_COPY_BOOKS_MAX = 200_000


def copy_books_forget() -> None:
    """Empty this process's set of known copy books (tests: a fresh database reuses ids)."""
    _copy_books.clear()


def _remember_copy_books(ids: Iterable[int]) -> None:
    if len(_copy_books) > _COPY_BOOKS_MAX:
        _copy_books.clear()
    _copy_books.update(ids)


# --- the leader's trade --------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderTrade:
    """A leader fill as the fan-out sees it. ``before`` / ``after``: the leader deployment's
    signed position in the instrument just before and after the fill."""

    fill: Fill
    listing_id: int
    listing_status: str
    leader_deployment_id: int
    instrument: Instrument
    side: str
    quantity: Decimal
    price: Decimal
    before: Decimal
    after: Decimal

    @property
    def sign(self) -> int:
        return 1 if self.side == Order.Side.BUY else -1


def _signed_fills(deployment_id: int, instrument_id: int, **bounds: Any) -> Decimal:
    signed = Case(
        When(side=Order.Side.BUY, then=F("quantity")),
        default=-F("quantity"),
        output_field=DecimalField(max_digits=28, decimal_places=10),
    )
    total = Fill.objects.filter(deployment_id=deployment_id, instrument_id=instrument_id, **bounds).aggregate(
        total=Sum(signed)
    )["total"]
    return total if total is not None else ZERO


def leader_trade(*, leader_fill_id: int) -> LeaderTrade | None:
    """The fill with its listing and the leader's position around it; None when the fill's
    deployment is not listed."""
    fill = Fill.objects.select_related("instrument").filter(pk=leader_fill_id).first()
    if fill is None or fill.deployment_id is None:
        return None
    listing = Listing.objects.filter(deployment_id=fill.deployment_id).values("pk", "status").first()
    if listing is None:
        return None
    before = _signed_fills(fill.deployment_id, fill.instrument_id, pk__lt=fill.pk)
    delta = fill.quantity if fill.side == Order.Side.BUY else -fill.quantity
    return LeaderTrade(
        fill=fill,
        listing_id=listing["pk"],
        listing_status=listing["status"],
        leader_deployment_id=fill.deployment_id,
        instrument=fill.instrument,
        side=fill.side,
        quantity=fill.quantity,
        price=fill.price,
        before=before,
        after=before + delta,
    )


# --- start, sweep --------------------------------------------------------------------------------


def _eligible(listing_id: int, fill: Fill) -> list[int]:
    """Active subscriptions copying since before the fill, with no copy of it yet."""
    done = CopyTrade.objects.filter(leader_fill_id=fill.pk).values("subscription_id")
    return list(
        Subscription.objects.filter(
            listing_id=listing_id, status=Subscription.Status.ACTIVE, copying_since__lte=fill.recorded_at
        )
        .exclude(pk__in=done)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _enqueue(leader_fill_id: int, subscription_ids: Sequence[int], *, deferrals: int = 0) -> int:
    from apps.marketplace import tasks

    size = _chunk_size()
    chunks = [list(subscription_ids[i : i + size]) for i in range(0, len(subscription_ids), size)]
    if not chunks:
        return 0
    # A deferred chunk waits a little; a first one goes out at once (no ETA to hold in a worker).
    options: dict[str, Any] = {"countdown": DEFER_SECONDS} if deferrals else {}
    with tasks.copy_fanout_chunk.app.producer_or_acquire() as producer:
        for chunk in chunks:
            tasks.copy_fanout_chunk.apply_async((leader_fill_id, chunk, deferrals), producer=producer, **options)
    return len(chunks)


def copy_fanout_start(*, leader_fill_id: int, deployment_id: int) -> int:
    """Queue the fan-out of a fill (after it committed). Returns how many subscriptions it
    covers (0 for a fill of an unlisted deployment: one indexed query, none for a copy book)."""
    if deployment_id in _copy_books:
        return 0
    listing = Listing.objects.filter(deployment_id=deployment_id).values("pk", "status").first()
    if listing is None:
        kind = Deployment.objects.filter(pk=deployment_id).values_list("kind", flat=True).first()
        if kind == Deployment.Kind.COPY:
            _remember_copy_books([deployment_id])
        return 0
    from apps.marketplace import tasks

    listing_id = listing["pk"]
    tasks.listing_stats_refresh.delay(listing_id)
    fill = Fill.objects.filter(pk=leader_fill_id).only("pk", "recorded_at").first()
    if fill is None:
        return 0
    ids = _eligible(listing_id, fill)
    _enqueue(leader_fill_id, ids)
    logger.info("copy fan-out of fill %s: %d followers of listing %s", leader_fill_id, len(ids), listing_id)
    return len(ids)


def copy_fanout_sweep(*, within_seconds: float | None = None) -> int:
    """Re-queue what recent leader fills of copied listings have not copied yet (a worker died
    mid-fan-out, a message was lost). Returns how many subscriptions were re-queued."""
    since = timezone.now() - timedelta(seconds=within_seconds if within_seconds is not None else _max_age() * 2)
    listed = dict(Listing.objects.values_list("deployment_id", "pk"))
    queued = 0
    for fill in Fill.objects.filter(deployment_id__in=list(listed), recorded_at__gte=since).only(
        "pk", "deployment_id", "recorded_at"
    ):
        ids = _eligible(listed[fill.deployment_id], fill)  # type: ignore[index]
        if ids:
            _enqueue(fill.pk, ids)
            queued += len(ids)
    if queued:
        logger.warning("copy fan-out sweep re-queued %d copies", queued)
    return queued


def copy_fanout_run(*, leader_fill_id: int) -> int:
    """The whole fan-out of one fill inline, chunk by chunk (management, tests, the demo)."""
    trade = leader_trade(leader_fill_id=leader_fill_id)
    if trade is None:
        return 0
    ids = _eligible(trade.listing_id, trade.fill)
    size = _chunk_size()
    for i in range(0, len(ids), size):
        copy_fanout_chunk(leader_fill_id=leader_fill_id, subscription_ids=ids[i : i + size], defer=False)
    return len(ids)


# --- sizing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyPlan:
    """The follower's order for one leader trade (quantity 0: none, with the code and reason)."""

    side: str
    quantity: Decimal
    reduce_only: bool
    code: str = ""
    reason: str = ""
    stop: bool = False  # the maximum loss is reached: stop copying and close


@dataclass(frozen=True)
class Book:
    """A copy book as the plan needs it: position in the traded instrument, equity, and the
    exposure of its other positions (marked at the newest closes)."""

    position: Decimal
    equity: Decimal
    other_exposure: Decimal


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')).normalize():f}"


def _open_size(
    sub: Subscription, trade_quantity: Decimal, price: Decimal, book: Book, leader_equity: Decimal
) -> tuple[Decimal, str, str]:
    """The quantity that copies opening ``trade_quantity``, before the caps."""
    mode = sub.sizing_mode
    if mode == Subscription.Sizing.MULTIPLIER:
        return trade_quantity * sub.multiplier, "", ""
    if mode == Subscription.Sizing.FIXED_NOTIONAL:
        return (sub.fixed_notional or ZERO) / price, "", ""
    if leader_equity <= 0 or book.equity <= 0:
        return ZERO, "no_equity", "The equity ratio cannot be computed (no equity left)."
    return trade_quantity * book.equity / leader_equity, "", ""


def copy_plan(
    *,
    sub: Subscription,
    trade: LeaderTrade,
    book: Book,
    price: Decimal,
    leader_equity: Decimal,
    rules: MarketRules,
) -> CopyPlan:
    """The follower's copy of ``trade`` (module docstring, Sizing). ``price``: the price now."""
    side = trade.side
    if sub.max_loss is not None and book.equity - sub.allocation <= -sub.max_loss:
        return CopyPlan(
            side,
            ZERO,
            False,
            "max_loss",
            f"The copy's loss reached the maximum of {_money(sub.max_loss)}: copying stopped.",
            stop=True,
        )
    before = trade.before
    reducing = before != 0 and (before > 0) != (trade.sign > 0)
    close_qty = open_qty = ZERO
    if reducing:
        held_like_leader = book.position != 0 and (book.position > 0) == (before > 0)
        if trade.quantity >= abs(before):
            close_qty = abs(book.position) if held_like_leader else ZERO
            open_qty = trade.quantity - abs(before)
        elif held_like_leader:
            close_qty = abs(book.position) * trade.quantity / abs(before)
    else:
        open_qty = trade.quantity
    code = reason = ""
    size = ZERO
    if open_qty > 0:
        deviation = abs(price - trade.price) / trade.price * HUNDRED if trade.price else ZERO
        if trade.listing_status not in OPENING:
            code = "listing_suspended" if trade.listing_status == Listing.Status.SUSPENDED else "listing_not_approved"
            reason = f"The listing is {trade.listing_status}: only reductions are copied."
        elif sub.max_price_deviation_pct is not None and deviation > sub.max_price_deviation_pct:
            code = "price_deviation"
            reason = (
                f"The price moved {deviation.quantize(Decimal('0.01'))}% from the leader's fill "
                f"(guard {sub.max_price_deviation_pct.normalize():f}%)."
            )
        else:
            size, code, reason = _open_size(sub, open_qty, price, book, leader_equity)
            remaining = book.position + (-close_qty if book.position > 0 else close_qty)
            held = abs(remaining) * price if (remaining > 0) == (trade.sign > 0) else ZERO
            room = sub.allocation - book.other_exposure - held
            if sub.max_position_notional is not None:
                room = min(room, sub.max_position_notional - held)
            cap = room / price if room > 0 else ZERO
            if size > cap:
                size = cap
                if cap <= 0:
                    code, reason = "allocation_full", "The allocation (or the maximum position) is used up."
    total = close_qty + size
    # Down to the lot, and to the 10 places an Order holds when the venue has no lot.
    total = rules.round_quantity(total.quantize(TEN_DP, rounding=ROUND_DOWN)) if total > 0 else ZERO
    if total <= 0:
        if not code:
            code, reason = (
                ("nothing_to_reduce", "No copied position to reduce.")
                if reducing and open_qty == 0
                else ("too_small", "The copy rounds to nothing at the venue's lot size.")
            )
        return CopyPlan(side, ZERO, False, code, reason)
    problem = rules.check(total, price)
    if problem is not None:
        return CopyPlan(side, ZERO, False, "below_minimum", problem)
    return CopyPlan(side, total, reduce_only=size <= 0)


# --- the chunk ----------------------------------------------------------------------------------


def _mark(price: Decimal | None, average: Decimal) -> Decimal:
    return price if price is not None else average


def _books(subs: Sequence[Subscription], instrument_id: int) -> dict[int, Book]:
    """Each copy book's position in the instrument, equity and other exposure, in three queries."""
    book_ids = [s.deployment_id for s in subs]
    cash = dict(
        LedgerEntry.objects.filter(deployment_id__in=book_ids)
        .exclude(kind=LedgerEntry.Kind.CAPITAL)
        .values("deployment_id")
        .annotate(total=Sum("amount"))
        .values_list("deployment_id", "total")
    )
    held: dict[int, list[tuple[int, Decimal, Decimal]]] = {}
    for dep_id, inst_id, qty, average in (
        Position.objects.filter(deployment_id__in=book_ids)
        .exclude(quantity=0)
        .values_list("deployment_id", "instrument_id", "quantity", "average_price")
    ):
        held.setdefault(dep_id, []).append((inst_id, qty, average or ZERO))
    # Orders still working (a live venue's copies fill after commit) count as exposure already:
    # two leader fills in a row must not each size up to the whole allocation.
    pending: dict[int, Decimal] = {}
    for dep_id, qty, filled, expected in Order.objects.filter(
        deployment_id__in=book_ids, status__in=Order.OPEN_STATUSES, reduce_only=False
    ).values_list("deployment_id", "quantity", "filled_quantity", "expected_price"):
        pending[dep_id] = pending.get(dep_id, ZERO) + max(qty - filled, ZERO) * (expected or ZERO)
    marks: dict[int, Decimal | None] = {}
    for inst_id in {i for rows in held.values() for i, _, _ in rows}:
        marks[inst_id] = last_price(instrument_id=inst_id)
    books = {}
    for sub in subs:
        rows = held.get(sub.deployment_id, [])
        # A position without a price yet is marked at its average entry, as deployment_equity does.
        marked_rows = [(i, q, _mark(marks[i], average)) for i, q, average in rows]
        position = sum((q for i, q, _ in marked_rows if i == instrument_id), ZERO)
        other = sum((abs(q) * mark for i, q, mark in marked_rows if i != instrument_id), ZERO)
        marked = sum((q * mark for _, q, mark in marked_rows), ZERO)
        equity = sub.deployment.capital + (cash.get(sub.deployment_id) or ZERO) + marked
        books[sub.pk] = Book(
            position=position, equity=equity, other_exposure=other + pending.get(sub.deployment_id, ZERO)
        )
    return books


def _leader_equity(trade: LeaderTrade) -> Decimal:
    from apps.trades.services.positions import deployment_equity

    leader = Deployment.objects.get(pk=trade.leader_deployment_id)
    prices = {}
    for inst_id in (
        Position.objects.filter(deployment=leader).exclude(quantity=0).values_list("instrument_id", flat=True)
    ):
        price = last_price(instrument_id=inst_id)
        if price is not None:
            prices[inst_id] = price
    return deployment_equity(deployment=leader, prices=prices)


def _skip(sub: Subscription, trade: LeaderTrade, code: str, reason: str, price: Decimal | None) -> CopyTrade:
    return CopyTrade(
        subscription=sub,
        leader_fill=trade.fill,
        status=CopyTrade.Status.SKIPPED,
        code=code[:40],
        reason=reason[:500],
        side=trade.side,
        leader_quantity=trade.quantity,
        leader_price=trade.price,
        reference_price=price,
    )


def _copy_of(sub: Subscription, trade: LeaderTrade, plan: CopyPlan, order: Order, price: Decimal) -> CopyTrade:
    status, code, reason = CopyTrade.Status.ORDERED, "", ""
    if order.status == Order.Status.REJECTED:
        status = CopyTrade.Status.REFUSED
        code, _, reason = order.status_reason.partition(": ")
        if not reason:
            code, reason = "refused", order.status_reason
    elif order.status == Order.Status.EXPIRED:
        status, code, reason = CopyTrade.Status.FAILED, "not_filled", order.status_reason
    return CopyTrade(
        subscription=sub,
        leader_fill=trade.fill,
        order=order,
        status=status,
        code=code[:40],
        reason=reason[:500],
        side=plan.side,
        leader_quantity=trade.quantity,
        leader_price=trade.price,
        quantity=order.quantity,
        reference_price=price,
    )


def _intent(sub: Subscription, trade: LeaderTrade, plan: CopyPlan, client_order_id: str) -> OrderIntent:
    return OrderIntent(
        account_id=sub.account_id,
        instrument_id=trade.instrument.pk,
        deployment_id=sub.deployment_id,
        side=plan.side,
        type=Order.Type.MARKET,
        client_order_id=client_order_id,
        source=Order.Source.COPY,
        leg="reduce" if plan.reduce_only else "entry",
        quantity=plan.quantity,
        reduce_only=plan.reduce_only,
        # Slippage is measured against the leader's price: the copy's slippage is the follower's.
        expected_price=trade.price,
        timeframe=sub.deployment.timeframe,
    )


def copy_fanout_chunk(
    *, leader_fill_id: int, subscription_ids: Sequence[int], deferrals: int = 0, defer: bool = True
) -> dict[str, int]:
    """Copy one leader fill for these subscriptions (module docstring). Safe to run twice.
    A subscription still missing the copy of an earlier fill of the same leader is put back
    (``defer``; after MAX_DEFERRALS tries it goes ahead). Returns counts by CopyTrade status."""
    started = time.monotonic()
    trade = leader_trade(leader_fill_id=leader_fill_id)
    if trade is None:
        return {}
    done = set(
        CopyTrade.objects.filter(leader_fill_id=leader_fill_id, subscription_id__in=subscription_ids).values_list(
            "subscription_id", flat=True
        )
    )
    subs = [
        s
        for s in Subscription.objects.filter(
            pk__in=subscription_ids, listing_id=trade.listing_id, status=Subscription.Status.ACTIVE
        )
        .select_related("deployment", "account")
        .order_by("pk")
        if s.pk not in done
    ]
    if not subs:
        return {}
    _remember_copy_books(s.deployment_id for s in subs)
    age = (timezone.now() - trade.fill.recorded_at).total_seconds()
    price = last_price(instrument_id=trade.instrument.pk)
    if age > _max_age() or price is None:
        code, reason = (
            ("too_late", f"The leader's fill is {int(age)} s old: too late to copy.")
            if price is not None
            else ("no_price", "No price to copy at.")
        )
        rows = [_skip(s, trade, code, reason, price) for s in subs]
        _save(rows, [])
        COPIES.labels(status=CopyTrade.Status.SKIPPED).inc(len(rows))
        return {CopyTrade.Status.SKIPPED: len(rows)}
    if defer and deferrals < MAX_DEFERRALS:
        waiting = _waiting_for_earlier(trade, subs)
        if waiting:
            _enqueue(leader_fill_id, sorted(waiting), deferrals=deferrals + 1)
            subs = [s for s in subs if s.pk not in waiting]
    rules = market_rules_for(trade.instrument)
    leader_equity = _leader_equity(trade)
    paper = [s for s in subs if s.account.kind == TradingAccount.Kind.PAPER]
    stops = _copy_paper(trade, paper, price, rules, leader_equity) if paper else []
    for sub in subs:
        if sub.account.kind != TradingAccount.Kind.PAPER:
            stops += _copy_one(trade, sub, price, rules, leader_equity)
    for sub, reason in stops:
        _stop_for_loss(sub, reason)
    counts: dict[str, int] = {}
    for row in CopyTrade.objects.filter(leader_fill_id=leader_fill_id, subscription_id__in=[s.pk for s in subs]):
        counts[row.status] = counts.get(row.status, 0) + 1
    for status, count in counts.items():
        COPIES.labels(status=status).inc(count)
    COPY_FANOUT_CHUNK_SECONDS.observe(time.monotonic() - started)
    logger.info(
        "copy fan-out chunk of fill %s: %d subscriptions in %.0f ms %s",
        leader_fill_id,
        len(subs),
        (time.monotonic() - started) * 1000,
        counts,
    )
    return counts


def _waiting_for_earlier(trade: LeaderTrade, subs: Sequence[Subscription]) -> set[int]:
    """The subscriptions for which an earlier fill of the leader (recorded while they were
    copying, recently enough to be copied still) has no copy yet: a chunk of it is queued,
    running, or was lost with a killed worker (the sweep re-queues it). Copying this fill first
    would apply the leader's trades out of order (a close before the open it closes)."""
    since = timezone.now() - timedelta(seconds=_max_age())
    earlier = list(
        Fill.objects.filter(
            deployment_id=trade.leader_deployment_id, pk__lt=trade.fill.pk, recorded_at__gte=since
        ).values_list("pk", "recorded_at")
    )
    if not earlier:
        return set()
    have = set(
        CopyTrade.objects.filter(
            leader_fill_id__in=[pk for pk, _ in earlier], subscription_id__in=[s.pk for s in subs]
        ).values_list("subscription_id", "leader_fill_id")
    )
    return {
        s.pk
        for s in subs
        if any(
            s.copying_since is not None and recorded >= s.copying_since and (s.pk, pk) not in have
            for pk, recorded in earlier
        )
    }


def _lock_books(subs: Sequence[Subscription]) -> None:
    """Lock the followers' accounts, then their copy books, each in pk order (the house order)."""
    account_ids = sorted({s.account_id for s in subs})
    list(TradingAccount.objects.select_for_update().filter(pk__in=account_ids).order_by("pk").values_list("pk"))
    book_ids = sorted({s.deployment_id for s in subs})
    list(Deployment.objects.select_for_update().filter(pk__in=book_ids).order_by("pk").values_list("pk"))


def _copy_paper(
    trade: LeaderTrade, subs: list[Subscription], price: Decimal, rules: MarketRules, leader_equity: Decimal
) -> list[tuple[Subscription, str]]:
    """The paper followers of a chunk in one transaction: the books are read under their
    locks, so the sizing's allocation cap holds against a concurrent fan-out of another fill."""
    stops: list[tuple[Subscription, str]] = []
    with transaction.atomic():
        _lock_books(subs)
        books = _books(subs, trade.instrument.pk)
        copies: list[CopyTrade] = []
        placing: list[tuple[Subscription, CopyPlan, OrderIntent]] = []
        for sub in subs:
            plan = copy_plan(
                sub=sub, trade=trade, book=books[sub.pk], price=price, leader_equity=leader_equity, rules=rules
            )
            if plan.quantity <= 0:
                copies.append(_skip(sub, trade, plan.code, plan.reason, price))
                if plan.stop:
                    stops.append((sub, plan.reason))
                continue
            client_order_id = copy_order_id(leader_fill_id=trade.fill.pk, subscription_id=sub.pk)
            placing.append((sub, plan, _intent(sub, trade, plan, client_order_id)))
        if placing:
            outcomes = orders_execute_paper_batch(intents=[i for _, _, i in placing], instrument=trade.instrument)
            copies += [
                _copy_of(sub, trade, plan, o.order, price) for (sub, plan, _), o in zip(placing, outcomes, strict=True)
            ]
        _save(copies, subs)
    return stops


def _copy_one(
    trade: LeaderTrade, sub: Subscription, price: Decimal, rules: MarketRules, leader_equity: Decimal
) -> list[tuple[Subscription, str]]:
    """A follower on a real venue, in its own transaction (one venue's trouble stays its own):
    sized under its locks, written first, sent after commit by the execution service."""
    try:
        with transaction.atomic():
            account = TradingAccount.objects.select_for_update().get(pk=sub.account_id)
            book_row = Deployment.objects.select_for_update().get(pk=sub.deployment_id)
            plan = copy_plan(
                sub=sub,
                trade=trade,
                book=_books([sub], trade.instrument.pk)[sub.pk],
                price=price,
                leader_equity=leader_equity,
                rules=rules,
            )
            if plan.quantity <= 0:
                _save([_skip(sub, trade, plan.code, plan.reason, price)], [sub])
                return [(sub, plan.reason)] if plan.stop else []
            intent = _intent(sub, trade, plan, copy_order_id(leader_fill_id=trade.fill.pk, subscription_id=sub.pk))
            order = order_submit(intent=intent, raise_refusal=False, locked_account=account, locked_deployment=book_row)
            _save([_copy_of(sub, trade, plan, order, price)], [sub])
    except Exception as exc:  # a malformed intent, a vanished row: that follower's failure only
        logger.exception("copy of fill %s for subscription %s failed", trade.fill.pk, sub.pk)
        _save([_skip(sub, trade, "failed", f"The copy could not be placed: {exc}", price)], [sub], failed=True)
    return []


def _save(copies: list[CopyTrade], subs: Sequence[Subscription], *, failed: bool = False) -> None:
    """Write the CopyTrades (a row that exists already wins: ON CONFLICT DO NOTHING) and tell
    each follower after commit."""
    if failed:
        for row in copies:
            row.status = CopyTrade.Status.FAILED
    now = timezone.now()
    for row in copies:
        row.created_at = now
    with transaction.atomic():
        bulk_insert(CopyTrade, copies, ignore_conflicts=True)
        followers = {s.pk: s.follower_id for s in subs} | {
            c.subscription.pk: c.subscription.follower_id for c in copies
        }
        fill_ids = {c.leader_fill_id for c in copies}
        sub_ids = [c.subscription.pk for c in copies]
        transaction.on_commit(lambda: _announce(fill_ids, sub_ids, followers))
        failures = [
            (followers[c.subscription.pk], c.subscription.pk, c.leader_fill_id, c.status, c.reason)
            for c in copies
            if c.status in (CopyTrade.Status.FAILED, CopyTrade.Status.REFUSED)
        ]
        if failures:
            from apps.marketplace.receivers import notify_copies_failed

            transaction.on_commit(lambda: notify_copies_failed(items=failures))


def _announce(fill_ids: set[int], sub_ids: list[int], followers: dict[int, int]) -> None:
    from apps.marketplace.services.events import copy_trade_payload

    online = users_online(followers.values())
    wanted = [s for s in sub_ids if followers[s] in online]
    if not wanted:
        return
    rows = CopyTrade.objects.filter(leader_fill_id__in=fill_ids, subscription_id__in=wanted).select_related(
        "leader_fill", "order"
    )
    for row in rows:
        send_now(followers[row.subscription_id], "copy.trade", copy_trade_payload(row))


def _stop_for_loss(sub: Subscription, reason: str) -> None:
    from apps.marketplace.services.subscriptions import subscription_stop

    try:
        subscription_stop(subscription=sub, reason=reason, code="max_loss", close_positions=True)
    except Exception:
        logger.exception("stopping subscription %s at its maximum loss failed", sub.pk)


# --- joining ------------------------------------------------------------------------------------


def copy_open_existing(*, subscription_id: int) -> int:
    """Open the leader's positions as they were when the subscription started copying, for a
    subscription that asked to on joining: each sized as a copy of a trade opening that whole
    position at the leader's average price, with client order id ``tpj<subscription>.<instrument>``
    (once per subscription and instrument). Fills the leader made after the subscription started
    are copied by their own fan-out, not here. Returns how many orders were placed."""
    sub = (
        Subscription.objects.select_related("listing", "deployment", "account")
        .filter(pk=subscription_id, status=Subscription.Status.ACTIVE, open_existing=True)
        .first()
    )
    if sub is None or sub.listing.status != Listing.Status.APPROVED or sub.copying_since is None:
        return 0
    leader_id = sub.listing.deployment_id
    placed = 0
    for position in Position.objects.filter(deployment_id=leader_id).select_related("instrument"):
        instrument_id = position.instrument_id
        held = _signed_fills(leader_id, instrument_id, recorded_at__lte=sub.copying_since)
        fill = (
            Fill.objects.filter(
                deployment_id=leader_id, instrument_id=instrument_id, recorded_at__lte=sub.copying_since
            )
            .order_by("-pk")
            .first()
        )
        price = last_price(instrument_id=instrument_id)
        if held == 0 or fill is None or price is None:
            continue
        trade = LeaderTrade(
            fill=fill,
            listing_id=sub.listing_id,
            listing_status=sub.listing.status,
            leader_deployment_id=leader_id,
            instrument=position.instrument,
            side=Order.Side.BUY if held > 0 else Order.Side.SELL,
            quantity=abs(held),
            price=position.average_price or fill.price,
            before=ZERO,
            after=held,
        )
        placed += 1 if _open_one(sub, trade, price) is not None else 0
    return placed


def _open_one(sub: Subscription, trade: LeaderTrade, price: Decimal) -> Order | None:
    rules = market_rules_for(trade.instrument)
    leader_equity = _leader_equity(trade)
    with transaction.atomic():
        _lock_books([sub])
        book = _books([sub], trade.instrument.pk)[sub.pk]
        plan = copy_plan(sub=sub, trade=trade, book=book, price=price, leader_equity=leader_equity, rules=rules)
        if plan.quantity <= 0:
            logger.info("joining copy of %s for subscription %s skipped: %s", trade.instrument, sub.pk, plan.reason)
            return None
        client_order_id = copy_join_order_id(subscription_id=sub.pk, instrument_id=trade.instrument.pk)
        intent = _intent(sub, trade, plan, client_order_id)
        if sub.account.kind == TradingAccount.Kind.PAPER:
            order = orders_execute_paper_batch(intents=[intent], instrument=trade.instrument)[0].order
        else:
            order = order_submit(intent=intent, raise_refusal=False)
        # Shown beside the leader's position as a copied trade (the leader's price: its average entry).
        _save([_copy_of(sub, trade, plan, order, price)], [sub])
    return order
