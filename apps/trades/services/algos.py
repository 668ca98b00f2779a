"""Execution algorithms the venues do not do for us: emulated brackets, trailing / break-even
stops, TWAP and iceberg.

Bracket emulation (venues without ``native_oco``; the paper venue places its own OCO pair):
the **stop leg rests at the venue** as a reduce-only stop order, and the **target is watched**
here on every closed bar. The stop is the leg that protects capital, so it is the one that must
survive an outage of this platform; a missed target only costs an opportunity. Two resting
reduce-only orders would also both reserve the same base balance on a spot venue, which most
refuse. When a bar reaches the target (:func:`algos_bar_closed`), the resting stop is cancelled
and a reduce-only limit at the target closes the position (a limit past the market fills at
once, never worse than the target). When the stop fills, the position is flat and the watched
target is dropped. A close sent after the stop already filled is refused by the risk checks
("would not reduce"), so the two legs can never both execute.

Trailing stop and break-even (:func:`trailing_update`), on each closed bar while a position is
open, with the engine's rules: the extreme price since entry moves with the bar, the stop
becomes the better of the current stop, ``extreme * (1 - trailing)`` (rounded to the nearest
tick) and, once the extreme is ``breakeven_after`` beyond the entry, the entry price. A better
stop is moved in place on the paper venue (``paper_replace_stop``, same client id) and by
cancel + new stop (a new deterministic child id) elsewhere.

TWAP (:func:`twap_start`) and iceberg (:func:`iceberg_start`): a parent Order (``algo`` twap /
iceberg, status open, never sent to a venue itself) is risk-checked for its whole quantity;
:func:`algo_step` (task ``apps.trades.tasks.algo_step(parent_id, n)``) submits child ``n``
through ``order_submit`` with ``client_ids.child_order_id(parent, n)`` — a redelivered step
finds the child it already made — and schedules step n + 1 after commit.
TWAP: ``slices`` equal children ``interval_seconds`` apart. Iceberg: one ``visible``-sized
child at a time, the next once the previous is filled (checked every ALGO_POLL_SECONDS).
Both stop when the parent is cancelled (:func:`algo_cancel`) or nothing remains; the
parent's filled quantity is the sum of its children's, and it ends filled (or cancelled with what was filled).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import TradingAccount
from apps.audit.services import audit_record
from apps.common.errors import ValidationFailed
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment
from apps.trades import client_ids
from apps.trades.errors import OrderStateError, RiskRefusedError
from apps.trades.intents import OrderIntent
from apps.trades.models import Order, Position
from apps.trades.risk.checks import risk_check, risk_refusal_record

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
S = Order.Status
OPEN = (S.NEW, S.SENDING, S.OPEN, S.PARTIALLY_FILLED, S.UNKNOWN)
ALGO_PARENTS = (Order.Algo.TWAP, Order.Algo.ICEBERG)
MAX_SLICES = 500


def _poll_seconds() -> float:
    return float(getattr(settings, "ALGO_POLL_SECONDS", 5))


def _d(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        out = Decimal(str(value))
    except ArithmeticError:
        return None
    return out if out.is_finite() else None


def _tick_nearest(price: Decimal, tick: Decimal | None) -> Decimal:
    if not tick or tick <= 0:
        return price
    return ((price / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick).normalize()


def _step_down(quantity: Decimal, step: Decimal | None) -> Decimal:
    if not step or step <= 0:
        return quantity
    return ((quantity / step).to_integral_value(rounding=ROUND_DOWN) * step).normalize()


def _submit(intent: OrderIntent, *, parent: Order | None = None, oco_group: str = "") -> Order:
    from apps.trades.services.orders import order_submit

    order = order_submit(intent=intent, raise_refusal=False)
    fields: dict[str, Any] = {}
    if parent is not None and order.parent_id is None:
        fields["parent"] = parent
    if oco_group and not order.oco_group:
        fields["oco_group"] = oco_group
    if fields:
        Order.objects.filter(pk=order.pk).update(**fields)
        for name, value in fields.items():
            setattr(order, name, value)
    return order


def _cancel(order: Order, actor: Any = None) -> None:
    from apps.trades.services.orders import order_cancel

    try:
        with transaction.atomic():  # queued after commit: no venue call from here
            order_cancel(order=order, actor=actor)
    except OrderStateError as exc:
        logger.info("not cancelled %s: %s", order.client_order_id, exc.message)


# --- brackets --------------------------------------------------------------------------------------


def _bracket_levels(entry: Order) -> tuple[Decimal | None, Decimal | None]:
    bracket = entry.bracket or {}
    fill = entry.average_price or entry.price or entry.expected_price
    sign = Decimal(1) if entry.side == Order.Side.BUY else Decimal(-1)
    tick = entry.instrument.tick_size
    stop = _d(bracket.get("stop_price"))
    if stop is None and fill is not None and _d(bracket.get("stop_loss")):
        stop = _tick_nearest(fill * (1 - sign * _d(bracket["stop_loss"])), tick)  # type: ignore[operator]
    target = _d(bracket.get("target_price"))
    if target is None and fill is not None and _d(bracket.get("take_profit")):
        target = _tick_nearest(fill * (1 + sign * _d(bracket["take_profit"])), tick)  # type: ignore[operator]
    return stop, target


def bracket_after_fill(*, order_id: int) -> Order | None:
    """Emulate an entry's bracket once the entry is done filling (venues without native OCO):
    place the reduce-only stop at the venue and record the target to watch on the position.
    Idempotent (the stop's client id is the bracket's ``stop_client_order_id``); returns the
    stop order, or None when there is nothing (yet) to do."""
    entry = Order.objects.select_related("instrument").filter(pk=order_id).first()
    if entry is None or not entry.bracket or entry.filled_quantity <= 0 or entry.reduce_only:
        return None
    if entry.status not in (S.FILLED, S.CANCELLED, S.EXPIRED):
        return None  # still filling: the legs cover the whole fill once it is done
    stop, target = _bracket_levels(entry)
    exit_side = Order.Side.SELL if entry.side == Order.Side.BUY else Order.Side.BUY
    group = f"oco:{entry.client_order_id}"[:40]
    Position.objects.filter(  # type: ignore[misc]
        account_id=entry.account_id, deployment_id=entry.deployment_id, instrument_id=entry.instrument_id
    ).exclude(quantity=0).update(
        stop_price=stop, target_price=target, extreme_price=entry.average_price, updated_at=timezone.now()
    )
    if stop is None:
        return None
    stop_id = (entry.bracket or {}).get("stop_client_order_id") or client_ids.child_order_id(
        parent_id=entry.client_order_id, n=1
    )
    existing = Order.objects.filter(account_id=entry.account_id, client_order_id=stop_id).first()
    if existing is not None:
        return existing
    return _submit(
        OrderIntent(
            account_id=entry.account_id,
            instrument_id=entry.instrument_id,
            deployment_id=entry.deployment_id,
            side=exit_side,
            type=Order.Type.STOP,
            client_order_id=stop_id,
            source=Order.Source.EXIT,
            leg="stop",
            bar_ts=entry.bar_ts,
            quantity=entry.filled_quantity,
            stop_price=stop,
            reduce_only=True,
            expected_price=stop,
            timeframe=entry.timeframe or None,
        ),
        parent=entry,
        oco_group=group,
    )


def _resting_stops(position: Position) -> list[Order]:
    return list(
        Order.objects.filter(  # type: ignore[misc]
            account_id=position.account_id,
            deployment_id=position.deployment_id,
            instrument_id=position.instrument_id,
            reduce_only=True,
            type__in=(Order.Type.STOP, Order.Type.STOP_LIMIT),
            status__in=OPEN,
        ).order_by("-pk")
    )


def _target_hit(position: Position, target: Decimal, bar_ts: Any = None) -> Order | None:
    for stop in _resting_stops(position):
        _cancel(stop)
    entry = (
        Order.objects.filter(  # type: ignore[misc]
            account_id=position.account_id,
            deployment_id=position.deployment_id,
            instrument_id=position.instrument_id,
            reduce_only=False,
            filled_quantity__gt=0,
        )
        .exclude(bracket__isnull=True)
        .order_by("-pk")
        .first()
    )
    target_id = ((entry.bracket or {}).get("target_client_order_id") if entry else None) or client_ids.child_order_id(
        parent_id=f"tpt{client_ids.base36(position.pk)}", n=int(timezone.now().timestamp())
    )
    Position.objects.filter(pk=position.pk).update(target_price=None, updated_at=timezone.now())
    return _submit(
        OrderIntent(
            account_id=position.account_id,
            instrument_id=position.instrument_id,
            deployment_id=position.deployment_id,
            side=Order.Side.SELL if position.quantity > 0 else Order.Side.BUY,
            type=Order.Type.LIMIT,
            client_order_id=target_id,
            source=Order.Source.EXIT,
            leg="target",
            bar_ts=entry.bar_ts if entry is not None else None,
            quantity=abs(position.quantity),
            price=target,
            reduce_only=True,
            expected_price=target,
        ),
        parent=entry,
        oco_group=f"oco:{entry.client_order_id}"[:40] if entry is not None else "",
    )


def algos_bar_closed(*, instrument_id: int, timeframe: str, ts: Any, bar: Mapping[str, float]) -> int:
    """Watch the emulated bracket targets of one instrument against a closed bar (non-paper
    accounts; the paper venue matches its own OCO pairs). Returns how many targets fired.
    Wire it to marketdata's candle_closed (after paper_bar_closed)."""
    Position.objects.filter(instrument_id=instrument_id, quantity=0, target_price__isnull=False).update(
        target_price=None
    )
    high, low = _d(bar.get("high")), _d(bar.get("low"))
    if high is None or low is None:
        return 0
    fired = 0
    watched = (
        Position.objects.filter(instrument_id=instrument_id, target_price__isnull=False)
        .exclude(quantity=0)
        .exclude(account__kind=TradingAccount.Kind.PAPER)
    )
    for position in watched:
        target = position.target_price
        assert target is not None
        if (position.quantity > 0 and high >= target) or (position.quantity < 0 and low <= target):
            try:
                _target_hit(position, target, ts)
                fired += 1
            except Exception:
                logger.exception("bracket target of position %s could not be sent", position.pk)
    return fired


# --- trailing stop / break-even --------------------------------------------------------------------


def _exit_settings(deployment: Deployment | None) -> tuple[float, float]:
    if deployment is None:
        return 0.0, 0.0
    exits = (deployment.settings or {}).get("exits") or {}
    trailing = exits.get("trailing_stop") or 0.0
    breakeven = exits.get("breakeven_after") or 0.0
    try:
        return float(trailing), float(breakeven)
    except (TypeError, ValueError):
        return 0.0, 0.0


def trailing_stop_level(
    *,
    side: int,
    entry: Decimal,
    extreme: Decimal,
    current: Decimal | None,
    trailing: float,
    breakeven: float,
    tick: Decimal | None,
) -> Decimal | None:
    """The engine's stop level for the next bar: the best of the current stop, the trail from
    the extreme (nearest tick) and, once the extreme is ``breakeven`` beyond the entry, the entry."""
    sign = Decimal(side)
    level = current
    if trailing > 0:
        trail = _tick_nearest(extreme * (1 - sign * Decimal(repr(trailing))), tick)
        if level is None or sign * (trail - level) > 0:
            level = trail
    armed = breakeven > 0 and sign * (extreme - entry) >= Decimal(repr(breakeven)) * entry
    if armed and (level is None or sign * (entry - level) > 0):
        level = entry
    return level


def trailing_update(*, deployment: Deployment | None, position: Position, bar: Mapping[str, float]) -> Decimal | None:
    """Move the position's stop after a closed bar (trailing stop / break-even, engine rules);
    returns the new stop level, or None when it did not move. Paper: the resting stop is
    amended in place (``paper_replace_stop``); elsewhere it is cancelled and a new reduce-only
    stop is placed with the next child id. A position without a resting stop gets one."""
    trailing, breakeven = _exit_settings(deployment)
    position = Position.objects.select_related("account", "instrument").get(pk=position.pk)
    if position.quantity == 0 or position.average_price is None or not (trailing > 0 or breakeven > 0):
        return None
    high, low = _d(bar.get("high")), _d(bar.get("low"))
    if high is None or low is None:
        return None
    side = 1 if position.quantity > 0 else -1
    entry = position.average_price
    extreme = position.extreme_price or entry
    extreme = max(extreme, high) if side == 1 else min(extreme, low)
    stops = _resting_stops(position)
    current = position.stop_price or (stops[0].stop_price if stops else None)
    level = trailing_stop_level(
        side=side,
        entry=entry,
        extreme=extreme,
        current=current,
        trailing=trailing,
        breakeven=breakeven,
        tick=position.instrument.tick_size,
    )
    moved = level is not None and (current is None or Decimal(side) * (level - current) > 0)
    Position.objects.filter(pk=position.pk).update(
        extreme_price=extreme, stop_price=level if moved else current, updated_at=timezone.now()
    )
    if not moved or level is None:
        return None
    if stops and position.account.kind == TradingAccount.Kind.PAPER:
        from apps.accounts.paper import paper_replace_stop

        stop = stops[0]
        if stop.status in (S.OPEN, S.PARTIALLY_FILLED):
            paper_replace_stop(account_id=position.account_id, client_order_id=stop.client_order_id, stop_price=level)
            Order.objects.filter(pk=stop.pk).update(stop_price=level, updated_at=timezone.now())
            return level
    for stop in stops:
        _cancel(stop)
    base = stops[-1].client_order_id if stops else f"tpt{client_ids.base36(position.pk)}"
    n = (
        Order.objects.filter(  # type: ignore[misc]
            account_id=position.account_id,
            deployment_id=position.deployment_id,
            instrument_id=position.instrument_id,
            leg="stop",
        ).count()
        + 1
    )
    _submit(
        OrderIntent(
            account_id=position.account_id,
            instrument_id=position.instrument_id,
            deployment_id=position.deployment_id,
            side=Order.Side.SELL if side == 1 else Order.Side.BUY,
            type=Order.Type.STOP,
            client_order_id=client_ids.child_order_id(parent_id=base, n=n),
            source=Order.Source.EXIT,
            leg="stop",
            quantity=abs(position.quantity),
            stop_price=level,
            reduce_only=True,
            expected_price=level,
            timeframe=deployment.timeframe if deployment is not None else None,
        ),
        parent=stops[0].parent if stops else None,
    )
    return level


# --- TWAP / iceberg --------------------------------------------------------------------------------


def _algo_parent(*, intent: OrderIntent, algo: str, params: dict[str, Any]) -> Order:
    from apps.accounts.services import account_lock
    from apps.trades.services.orders import market_rules_for

    if intent.quantity is None or intent.quantity <= 0:
        raise ValidationFailed(
            "An algo order needs a quantity.", code="quantity_required", extra={"fields": {"quantity": ["Required."]}}
        )
    if intent.reduce_only:
        raise ValidationFailed("Algo orders cannot be reduce-only.", code="invalid_algo")
    with transaction.atomic():
        account = account_lock(account_id=intent.account_id)  # account, then deployment
        deployment = None
        if intent.deployment_id is not None:
            deployment = Deployment.objects.select_for_update().get(pk=intent.deployment_id)
        instrument = Instrument.objects.get(pk=intent.instrument_id)
        rules = market_rules_for(instrument)
        client_order_id = intent.client_order_id or client_ids.manual_order_id()
        existing = Order.objects.filter(account=account, client_order_id=client_order_id).first()
        if existing is not None:
            return existing
        from apps.trades.services.positions import last_price

        reference = intent.expected_price or intent.price or last_price(instrument_id=instrument.pk)
        if reference is None:
            raise ValidationFailed("There is no price to check this order against yet.", code="no_price")
        intent = replace(intent, client_order_id=client_order_id)
        refusal: RiskRefusedError | None = None
        try:
            risk_check(account=account, deployment=deployment, intent=intent, price=reference, rules=rules)
        except RiskRefusedError as exc:
            refusal = exc
        parent = Order.objects.create(  # type: ignore[misc]
            account=account,
            deployment=deployment,
            instrument=instrument,
            symbol=instrument.symbol,
            client_order_id=client_order_id,
            source=intent.source,
            leg="entry",
            side=intent.side,
            type=intent.type,
            quantity=intent.quantity,
            price=intent.price,
            expected_price=reference,
            algo=algo,
            algo_params=params,
            timeframe=intent.timeframe or "",
            status=S.REJECTED if refusal else S.OPEN,
            status_reason=f"{refusal.code}: {refusal.message}"[:500] if refusal else "",
            created_by_id=intent.created_by_id,
        )
        audit_record(
            action="order.algo_started" if refusal is None else "order.rejected",
            user=account.owner,
            target=parent,
            details={"algo": algo, **params},
        )
        if refusal is not None:
            risk_refusal_record(account=account, deployment=deployment, order=parent, error=refusal)
        else:
            _schedule(parent.pk, 0, 0.0)
    if refusal is not None:
        raise refusal
    return parent


def twap_start(*, intent: OrderIntent, slices: int, interval_seconds: float) -> Order:
    """Start a TWAP: ``slices`` equal children, ``interval_seconds`` apart, of ``intent``'s
    quantity. Risk-checked for the whole quantity now (RiskRefusedError: the parent is recorded
    REJECTED and the error raised). Returns the parent Order (algo twap)."""
    if not isinstance(slices, int) or not 2 <= slices <= MAX_SLICES:
        raise ValidationFailed(
            f"slices must be between 2 and {MAX_SLICES}.",
            code="invalid_algo",
            extra={"fields": {"algo.slices": ["Out of range."]}},
        )
    if not math.isfinite(interval_seconds) or not 1 <= interval_seconds <= 86_400:
        raise ValidationFailed(
            "interval_seconds must be between 1 and 86400.",
            code="invalid_algo",
            extra={"fields": {"algo.interval_seconds": ["Out of range."]}},
        )
    return _algo_parent(
        intent=intent, algo=Order.Algo.TWAP, params={"slices": slices, "interval_seconds": float(interval_seconds)}
    )


def iceberg_start(*, intent: OrderIntent, visible: Decimal) -> Order:
    """Start an iceberg: children of ``visible`` quantity, one at a time, the next once the
    previous filled. Returns the parent Order (algo iceberg)."""
    if intent.quantity is None or not visible or visible <= 0 or visible >= intent.quantity:
        raise ValidationFailed(
            "visible must be positive and smaller than the quantity.",
            code="invalid_algo",
            extra={"fields": {"algo.visible": ["Must be positive and below the quantity."]}},
        )
    if intent.quantity / visible > MAX_SLICES:
        raise ValidationFailed(
            f"That makes more than {MAX_SLICES} slices; show more.",
            code="invalid_algo",
            extra={"fields": {"algo.visible": ["Too small."]}},
        )
    return _algo_parent(intent=intent, algo=Order.Algo.ICEBERG, params={"visible": str(visible)})


def _schedule(parent_id: int, n: int, countdown: float) -> None:
    """Queue step ``n`` of the parent after commit, ``countdown`` seconds later."""

    def send() -> None:
        try:
            from apps.trades.tasks import algo_step as task
        except ImportError:
            logger.error("algo_step task missing; step %s of %s not scheduled", n, parent_id)
            return
        task.apply_async(args=(parent_id, n), countdown=max(0.0, countdown))

    transaction.on_commit(send)


def _children(parent: Order) -> Any:
    return Order.objects.filter(parent=parent)


def _refresh_parent(parent: Order) -> Order:
    totals = _children(parent).aggregate(filled=Sum("filled_quantity"))
    filled = totals["filled"] or ZERO
    if filled != parent.filled_quantity:
        Order.objects.filter(pk=parent.pk).update(filled_quantity=filled, updated_at=timezone.now())
        parent.filled_quantity = filled
    return parent


def _finish(parent: Order, status: str, reason: str = "") -> None:
    Order.objects.filter(pk=parent.pk, status=S.OPEN).update(
        status=status, status_reason=reason[:500], next_check_at=None, updated_at=timezone.now()
    )


def _next(parent: Order, n: int, seconds: float) -> float:
    Order.objects.filter(pk=parent.pk).update(next_check_at=timezone.now() + timedelta(seconds=seconds))
    _schedule(parent.pk, n, seconds)
    return seconds


@transaction.atomic
def algo_step(*, parent_id: int, n: int) -> float | None:
    """Step ``n`` of an algo parent (task ``algo_step(parent_id, n)``): submit child ``n``
    through order_submit with ``child_order_id(parent, n)`` and schedule the next step after
    commit. Returns the next step's countdown, or None when the algo is done.

    Idempotent: a redelivered step finds child ``n`` already made and only re-schedules the
    next step when none is pending (``next_check_at`` passed: the first run died before
    scheduling). TWAP: a slice every ``interval_seconds``; iceberg: the next ``visible`` slice
    once the last one is done (polled every ALGO_POLL_SECONDS). Stops when the parent is
    cancelled or nothing remains; the parent ends filled, or cancelled with what was filled."""
    parent = Order.objects.select_related("instrument").filter(pk=parent_id).first()
    if parent is None or parent.algo not in ALGO_PARENTS or parent.status != S.OPEN:
        return None
    parent = _refresh_parent(parent)
    child_id = client_ids.child_order_id(parent_id=parent.client_order_id, n=n)
    if Order.objects.filter(account_id=parent.account_id, client_order_id=child_id).exists():
        now = timezone.now()
        if parent.next_check_at is not None and parent.next_check_at > now:
            return None  # a duplicate delivery: the next step is already scheduled
        return _next(parent, n + 1, 0.0)
    children = list(_children(parent).order_by("pk"))
    live = [c for c in children if c.status in OPEN]
    committed = sum((c.filled_quantity if c.is_terminal else c.quantity for c in children), ZERO)
    remaining = parent.quantity - committed
    if parent.filled_quantity >= parent.quantity:
        _finish(parent, S.FILLED)
        return None
    done = f"Done: {parent.filled_quantity.normalize()} of {parent.quantity.normalize()} filled."
    if parent.algo == Order.Algo.ICEBERG:
        if live:
            return _next(parent, n, _poll_seconds())  # the visible slice is still working
        quantity = min(Decimal(str(parent.algo_params.get("visible"))), remaining)
        countdown = _poll_seconds()
    else:
        slices = int(parent.algo_params.get("slices", 1))
        if n >= slices:
            if live:
                return _next(parent, n, _poll_seconds())
            _finish(parent, S.FILLED if parent.filled_quantity >= parent.quantity else S.CANCELLED, done)
            return None
        quantity = remaining if n == slices - 1 else min(remaining, parent.quantity / slices)
        countdown = float(parent.algo_params.get("interval_seconds", 60))
    quantity = _step_down(quantity, parent.instrument.lot_size)
    if quantity <= 0:
        if live:
            return _next(parent, n, _poll_seconds())
        _finish(parent, S.CANCELLED, done)
        return None
    child = _submit(
        OrderIntent(
            account_id=parent.account_id,
            instrument_id=parent.instrument_id,
            deployment_id=parent.deployment_id,
            side=parent.side,
            type=parent.type,
            client_order_id=child_id,
            source=Order.Source.ALGO,
            leg=f"child-{n}",
            quantity=quantity,
            price=parent.price,
            expected_price=parent.price or parent.expected_price,
            timeframe=parent.timeframe or None,
            algo_params={"parent_id": parent.pk, "slice": n},
            created_by_id=parent.created_by_id,
        ),
        parent=parent,
    )
    if child.status == S.REJECTED:
        _finish(parent, S.CANCELLED, f"Stopped: slice {n} was refused ({child.status_reason})")
        return None
    return _next(parent, n + 1, countdown)


def algo_cancel(*, order: Order, actor: Any = None) -> Order:
    """Cancel an algo parent: no more children; the working ones are cancelled (cancels always
    go through). Idempotent."""
    parent = Order.objects.get(pk=order.pk)
    if parent.algo not in ALGO_PARENTS:
        raise OrderStateError("This is not an algo order.", code="not_algo")
    with transaction.atomic():
        updated = Order.objects.filter(pk=parent.pk, status=S.OPEN).update(
            status=S.CANCELLED, status_reason="Cancelled by its owner.", updated_at=timezone.now()
        )
        if updated:
            audit_record(action="order.cancel_requested", actor=actor, user=parent.account.owner, target=parent)
        for child in _children(parent).filter(status__in=OPEN):
            _cancel(child, actor)
    parent.refresh_from_db()
    _refresh_parent(parent)
    return parent
