"""Pre-trade risk checks, the kill switches, and the deployment loss limits.

:func:`risk_check` is called by ``apps.trades.services.orders.order_submit`` inside its
transaction, after it locked the account row (and the deployment's): every order of an account
is checked one at a time, and an order accepted before is already an open Order row the next
check counts, so two concurrent orders cannot both pass an exposure limit (RELIABILITY 13).

Order of the checks (the first refusal wins; its ``code`` is stable):

1. Kill switches, platform (PlatformSwitch pk=1) -> account (TradingAccount.trading_state) ->
   deployment (Deployment.status / is_reduce_only). HALTED refuses every order
   (:class:`TradingHaltedError`, code ``kill_switch``); REDUCE_ONLY refuses every order that
   does not reduce its position (code ``reduce_only``). A deployment that is not running
   (draft, paused, stopped) only takes reducing orders (``deployment_not_running``). An account
   that is not active (needs reconnecting, disabled) takes none (``account_unavailable``).
   Cancels never pass through here: they always go through.
2. A reduce-only intent that would not reduce (flat, same side, or more than the position):
   ``reduce_only``.
3. Reducing orders stop here: they only ever lower risk, so no limit refuses them.
   An algo child (``source="algo"``) stops here too: its parent was checked for the whole
   quantity when the algo started, and the parent's remainder is what the limits count.
4. Limits, deployment first then account (see apps.trades.risk.limits):
   ``max_order_notional``, ``max_position``, ``max_symbol_exposure``, ``max_exposure``,
   ``max_open_positions``, ``max_orders_per_minute``, then, for non-paper accounts whose last
   known balances are stored, ``insufficient_balance`` (the venue is the final judge).

"Reducing": the order's position is the deployment's (or, for a manual order, the account's
manual position) in that instrument; a buy reduces a short and a sell a long, by no more than
the position. Open orders count at their remaining quantity on the side they would add
(conservative: a pending buy and a pending sell do not net out); reduce-only orders and algo
children (their parent counts) do not add.

Notional is quantity x ``price`` (the decision price) for the order and its position, and the
last close (:mod:`apps.trades.risk.prices`; else the average entry) for other instruments. An
intent without a quantity is sized from ``quote_quantity`` or its engine ``sizing`` inputs
(:func:`apps.trades.risk.sizing.sizing_estimate_quantity`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Subquery
from django.utils import timezone

from apps.accounts.models import TradingAccount
from apps.strategies.models import Deployment
from apps.trades.errors import RiskRefusedError, TradingHaltedError
from apps.trades.models import Order, PlatformSwitch, Position, RiskEvent
from apps.trades.risk.limits import AccountLimits, DeploymentLimits
from apps.trades.risk.prices import last_prices
from apps.trades.risk.sizing import sizing_estimate_quantity

if TYPE_CHECKING:
    from apps.accounts.brokers.base import MarketRules
    from apps.trades.intents import OrderIntent

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
Key = tuple[int | None, int]  # (deployment id, instrument id)


def platform_switch() -> PlatformSwitch:
    """The platform kill switch row (created ACTIVE on first use)."""
    switch, _ = PlatformSwitch.objects.get_or_create(pk=1)
    return switch


def _refuse(code: str, message: str, *, scope: str, **details: Any) -> RiskRefusedError:
    extra = {"scope": scope, **{k: str(v) if isinstance(v, Decimal) else v for k, v in details.items()}}
    if code == "kill_switch":
        return TradingHaltedError(message, code=code, extra=extra)
    return RiskRefusedError(message, code=code, extra=extra)


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}" if value.is_finite() else str(value)


# --- kill switches -------------------------------------------------------------------------------


def _switch_refusal(
    *,
    platform_mode: str,
    platform_reason: str,
    account_state: str,
    account_reason: str,
    account_status: str,
    deployment_status: str | None,
    deployment_reduce_only: bool,
    deployment_reason: str,
    reducing: bool,
) -> RiskRefusedError | None:
    if platform_mode == PlatformSwitch.Mode.HALTED:
        return _refuse(
            "kill_switch", _with_reason("Trading is halted platform-wide", platform_reason), scope="platform"
        )
    if account_state == TradingAccount.TradingState.HALTED:
        return _refuse(
            "kill_switch", _with_reason("Trading is halted on this account", account_reason), scope="account"
        )
    if account_status != TradingAccount.Status.ACTIVE:
        return _refuse(
            "account_unavailable",
            "This account needs reconnecting before it can trade."
            if account_status == TradingAccount.Status.NEEDS_RECONNECT
            else "This account is disabled.",
            scope="account",
        )
    if deployment_status == Deployment.Status.HALTED:
        return _refuse("kill_switch", _with_reason("This deployment is halted", deployment_reason), scope="deployment")
    if reducing:
        return None
    if platform_mode == PlatformSwitch.Mode.REDUCE_ONLY:
        return _refuse(
            "reduce_only",
            _with_reason("The platform is in reduce-only mode: only orders that reduce a position", platform_reason),
            scope="platform",
        )
    if account_state == TradingAccount.TradingState.REDUCE_ONLY:
        return _refuse(
            "reduce_only",
            _with_reason("This account is in reduce-only mode: only orders that reduce a position", account_reason),
            scope="account",
        )
    if deployment_status is not None:
        if deployment_reduce_only:
            return _refuse(
                "reduce_only",
                _with_reason(
                    "This deployment is in reduce-only mode: only orders that reduce its position", deployment_reason
                ),
                scope="deployment",
            )
        if deployment_status not in Deployment.RUNNING:
            return _refuse(
                "deployment_not_running",
                f"This deployment is {deployment_status}: only orders that reduce its position are taken.",
                scope="deployment",
            )
    return None


def _with_reason(text: str, reason: str) -> str:
    return f"{text} ({reason})." if reason else f"{text}."


def trading_blocked(*, account: TradingAccount, deployment: Deployment | None, reduce_only: bool) -> str | None:
    """Why an order may not be sent now, re-read from the database (one query: the account
    row with the platform switch and the deployment as scalar subqueries), or None. Called by
    order_send right before it talks to the venue: a kill switch set after the order was
    accepted still stops it (the caller rejects it with code kill_switch; the message says
    which level). ``reduce_only``: the order only lowers its position."""
    platform = PlatformSwitch.objects.filter(pk=1)
    # No deployment: pk IS NULL matches nothing, so its columns read as NULL.
    deployments = Deployment.objects.filter(pk=deployment.pk if deployment is not None else None)  # type: ignore[misc]
    state = (
        TradingAccount.objects.filter(pk=account.pk)
        .annotate(
            platform_mode=Subquery(platform.values("mode")[:1]),
            platform_reason=Subquery(platform.values("reason")[:1]),
            deployment_status=Subquery(deployments.values("status")[:1]),
            deployment_reduce_only=Subquery(deployments.values("is_reduce_only")[:1]),
            deployment_reason=Subquery(deployments.values("status_reason")[:1]),
        )
        .values_list(
            "trading_state",
            "trading_state_reason",
            "status",
            "platform_mode",
            "platform_reason",
            "deployment_status",
            "deployment_reduce_only",
            "deployment_reason",
        )
        .first()
    )
    if state is None:
        return "The account no longer exists."
    # No switch row yet means the platform is active (platform_switch creates it so).
    platform_mode, platform_reason = (state[3], state[4]) if state[3] is not None else ("active", "")
    dep: tuple[Any, ...] = (state[5], state[6], state[7] or "") if state[5] is not None else (None, False, "")
    refusal = _switch_refusal(
        platform_mode=platform_mode,
        platform_reason=platform_reason,
        account_state=state[0],
        account_reason=state[1],
        account_status=state[2],
        deployment_status=dep[0],
        deployment_reduce_only=bool(dep[1]),
        deployment_reason=dep[2] if dep[0] == Deployment.Status.HALTED else "",
        reducing=reduce_only,
    )
    return refusal.message if refusal is not None else None


# --- the book the checks count -------------------------------------------------------------------


@dataclass
class _Book:
    """The account's positions and open orders, by (deployment, instrument)."""

    positions: dict[Key, Decimal]
    average: dict[Key, Decimal]
    pending_buy: dict[Key, Decimal]
    pending_sell: dict[Key, Decimal]
    order_price: dict[int, Decimal]

    def held_keys(self) -> set[Key]:
        return (
            {k for k, q in self.positions.items() if q}
            | {k for k, q in self.pending_buy.items() if q > 0}
            | {k for k, q in self.pending_sell.items() if q > 0}
        )

    def gross(self, key: Key) -> Decimal:
        """|position| plus every pending adding order, in units (conservative)."""
        return abs(self.positions.get(key, ZERO)) + self.pending_buy.get(key, ZERO) + self.pending_sell.get(key, ZERO)


def _position_of(*, account_id: int, deployment_id: int | None, instrument_id: int) -> Decimal:
    qty = (
        Position.objects.filter(account_id=account_id, deployment_id=deployment_id, instrument_id=instrument_id)  # type: ignore[misc]
        .values_list("quantity", flat=True)
        .first()
    )
    return qty if qty is not None else ZERO


def _book(*, account_id: int, prices: dict[int, Decimal]) -> _Book:
    positions: dict[Key, Decimal] = {}
    average: dict[Key, Decimal] = {}
    for dep_id, inst_id, qty, avg in (
        Position.objects.filter(account_id=account_id)
        .exclude(quantity=0)
        .values_list("deployment_id", "instrument_id", "quantity", "average_price")
    ):
        positions[(dep_id, inst_id)] = qty
        if avg is not None:
            average[(dep_id, inst_id)] = avg
    pending_buy: dict[Key, Decimal] = defaultdict(lambda: ZERO)
    pending_sell: dict[Key, Decimal] = defaultdict(lambda: ZERO)
    order_price: dict[int, Decimal] = {}
    rows = (
        Order.objects.filter(account_id=account_id, status__in=Order.OPEN_STATUSES, reduce_only=False)
        .exclude(source=Order.Source.ALGO)
        .values_list(
            "deployment_id",
            "instrument_id",
            "side",
            "quantity",
            "filled_quantity",
            "quote_quantity",
            "price",
            "expected_price",
            "sizing",
        )
    )
    for dep_id, inst_id, side, qty, filled, quote_qty, limit, expected, sizing in rows:
        remaining = (qty or ZERO) - (filled or ZERO)
        if (qty or ZERO) <= 0:
            ref = limit or expected or prices.get(inst_id)
            if quote_qty and ref:
                remaining = quote_qty / ref
            elif sizing and ref:
                remaining = sizing_estimate_quantity(sizing=sizing, price=ref)
        if remaining <= 0:
            continue
        if limit or expected:
            order_price[inst_id] = limit or expected  # type: ignore[assignment]
        target = pending_buy if side == Order.Side.BUY else pending_sell
        target[(dep_id, inst_id)] += remaining
    return _Book(positions, average, dict(pending_buy), dict(pending_sell), order_price)


def _intent_quantity(intent: OrderIntent, price: Decimal, position: Decimal) -> Decimal:
    if intent.quantity is not None:
        return abs(intent.quantity)
    if intent.quote_quantity is not None and price > 0:
        return abs(intent.quote_quantity) / price
    if intent.sizing:
        return sizing_estimate_quantity(sizing=intent.sizing, price=price)
    if intent.reduce_only:
        return abs(position)
    return ZERO


def _balance_free(account: TradingAccount, asset: str) -> Decimal | None:
    """The asset's free balance from the account's last connection test, if stored."""
    balances = (account.last_test or {}).get("balances")
    if not asset or not balances:
        return None
    try:
        if isinstance(balances, dict):
            entry = balances.get(asset)
            if entry is None:
                return ZERO
            return Decimal(str(entry.get("free") if isinstance(entry, dict) else entry))
        if isinstance(balances, list):
            for entry in balances:
                if isinstance(entry, dict) and entry.get("asset") == asset:
                    return Decimal(str(entry.get("free")))
            return ZERO
    except (ArithmeticError, TypeError, ValueError):
        return None
    return None


# --- the check -----------------------------------------------------------------------------------


def risk_check(
    *,
    account: TradingAccount,
    deployment: Deployment | None,
    intent: OrderIntent,
    price: Decimal,
    rules: MarketRules,
    position: Decimal | None = None,
    platform: PlatformSwitch | None = None,
) -> None:
    """Refuse ``intent`` (raise RiskRefusedError / TradingHaltedError with a stable code) or
    return None. Must run inside the transaction that holds the account row lock (order_submit
    takes it) and that then writes the Order row. See the module docstring for the checks.
    ``position``: the signed quantity of the intent's (account, deployment, instrument) as the
    caller read it in this transaction, under that lock (else it is read here). ``platform``:
    the platform switch row as read in this transaction (a batch checks many orders with one)."""
    price = Decimal(price)
    deployment_id = deployment.pk if deployment is not None else None
    key: Key = (deployment_id, intent.instrument_id)
    if position is None:
        position = _position_of(account_id=account.pk, deployment_id=deployment_id, instrument_id=intent.instrument_id)
    quantity = _intent_quantity(intent, price, position)
    sign = Decimal(1) if intent.side == Order.Side.BUY else Decimal(-1)
    reducing = position != 0 and (position > 0) != (sign > 0) and quantity <= abs(position)

    platform = platform if platform is not None else platform_switch()
    refusal = _switch_refusal(
        platform_mode=platform.mode,
        platform_reason=platform.reason,
        account_state=account.trading_state,
        account_reason=account.trading_state_reason,
        account_status=account.status,
        deployment_status=deployment.status if deployment is not None else None,
        deployment_reduce_only=deployment.is_reduce_only if deployment is not None else False,
        deployment_reason=deployment.status_reason
        if deployment is not None and deployment.status == Deployment.Status.HALTED
        else "",
        reducing=reducing,
    )
    if refusal is not None:
        raise refusal
    if intent.reduce_only and not reducing:
        raise _refuse(
            "reduce_only",
            f"This reduce-only order would not reduce the position (holding {position.normalize()}, "
            f"{intent.side} {quantity.normalize()}).",
            scope="order",
            position=position,
        )
    if reducing or intent.source == Order.Source.ALGO:
        return

    dep_limits = DeploymentLimits.from_dict(deployment.risk or {}) if deployment is not None else DeploymentLimits()
    acc_limits = AccountLimits.from_dict(account.risk_limits or {})
    notional = quantity * price

    # Order size.
    for scope, limit in (("deployment", dep_limits.max_order_notional), ("account", acc_limits.max_order_notional)):
        if limit is not None and notional > limit:
            raise _refuse(
                "max_order_notional",
                f"The order's value {_money(notional)} is above the {scope}'s maximum per order {_money(limit)}.",
                scope=scope,
                limit=limit,
                value=notional,
            )

    needs_book = any(
        v is not None
        for v in (
            dep_limits.max_position_notional,
            dep_limits.max_exposure_notional,
            dep_limits.max_open_positions,
            acc_limits.max_position_notional,
            acc_limits.max_symbol_exposure,
            acc_limits.max_exposure_notional,
            acc_limits.max_open_positions,
        )
    )
    if needs_book:
        _check_book(
            account=account,
            key=key,
            price=price,
            quantity=quantity,
            side=intent.side,
            dep_limits=dep_limits,
            acc_limits=acc_limits,
        )

    # Order rate (the query is only built when a limit asks for it: a batch checks thousands).
    if dep_limits.max_orders_per_minute is None and acc_limits.max_orders_per_minute is None:
        recent = Order.objects.none()
    else:
        since = timezone.now() - timedelta(seconds=60)
        recent = Order.objects.filter(created_at__gte=since).exclude(status=Order.Status.REJECTED)
    if deployment is not None and dep_limits.max_orders_per_minute is not None:
        count = recent.filter(deployment_id=deployment_id).count()  # type: ignore[misc]
        if count >= dep_limits.max_orders_per_minute:
            raise _refuse(
                "max_orders_per_minute",
                f"This deployment placed {count} orders in the last minute; its limit is "
                f"{dep_limits.max_orders_per_minute}.",
                scope="deployment",
                limit=dep_limits.max_orders_per_minute,
                value=count,
            )
    if acc_limits.max_orders_per_minute is not None:
        count = recent.filter(account_id=account.pk).count()
        if count >= acc_limits.max_orders_per_minute:
            raise _refuse(
                "max_orders_per_minute",
                f"This account placed {count} orders in the last minute; its limit is "
                f"{acc_limits.max_orders_per_minute}.",
                scope="account",
                limit=acc_limits.max_orders_per_minute,
                value=count,
            )

    # Balance (non-paper accounts; from the last known balances; the venue has the last word).
    if account.kind != TradingAccount.Kind.PAPER:
        _check_balance(account=account, rules=rules, side=intent.side, quantity=quantity, notional=notional)


def _check_book(
    *,
    account: TradingAccount,
    key: Key,
    price: Decimal,
    quantity: Decimal,
    side: str,
    dep_limits: DeploymentLimits,
    acc_limits: AccountLimits,
) -> None:
    deployment_id, instrument_id = key
    book = _book(account_id=account.pk, prices={instrument_id: price})
    others = {k[1] for k in book.held_keys()} - {instrument_id}
    prices = last_prices(instrument_ids=others) if others else {}
    prices[instrument_id] = price

    sign = Decimal(1) if side == Order.Side.BUY else Decimal(-1)
    same = book.pending_buy if side == Order.Side.BUY else book.pending_sell
    opposite = book.pending_sell if side == Order.Side.BUY else book.pending_buy
    position = book.positions.get(key, ZERO)
    projected = position + sign * (same.get(key, ZERO) + quantity)
    projected_notional = abs(projected) * price

    for scope, limit in (
        ("deployment", dep_limits.max_position_notional if deployment_id is not None else None),
        ("account", acc_limits.max_position_notional),
    ):
        if limit is not None and projected_notional > limit:
            raise _refuse(
                "max_position",
                f"The position would be worth {_money(projected_notional)} (with the orders still open), "
                f"above the {scope}'s maximum per position {_money(limit)}.",
                scope=scope,
                limit=limit,
                value=projected_notional,
            )

    def mark(k: Key) -> Decimal:
        if k[1] == instrument_id:
            return price
        return prices.get(k[1]) or book.average.get(k) or book.order_price.get(k[1]) or ZERO

    def exposure(selected: set[Key]) -> Decimal:
        total = ZERO
        for k in selected:
            if k == key:
                total += projected_notional + opposite.get(k, ZERO) * price
            else:
                total += book.gross(k) * mark(k)
        return total

    keys = book.held_keys() | {key}
    if deployment_id is not None and dep_limits.max_exposure_notional is not None:
        value = exposure({k for k in keys if k[0] == deployment_id})
        if value > dep_limits.max_exposure_notional:
            raise _refuse(
                "max_exposure",
                f"The deployment's exposure would be {_money(value)}, above its maximum "
                f"{_money(dep_limits.max_exposure_notional)}.",
                scope="deployment",
                limit=dep_limits.max_exposure_notional,
                value=value,
            )
    if acc_limits.max_symbol_exposure is not None:
        value = exposure({k for k in keys if k[1] == instrument_id})
        if value > acc_limits.max_symbol_exposure:
            raise _refuse(
                "max_symbol_exposure",
                f"The account's exposure to this symbol would be {_money(value)}, above its maximum "
                f"{_money(acc_limits.max_symbol_exposure)}.",
                scope="account",
                limit=acc_limits.max_symbol_exposure,
                value=value,
            )
    if acc_limits.max_exposure_notional is not None:
        value = exposure(keys)
        if value > acc_limits.max_exposure_notional:
            raise _refuse(
                "max_exposure",
                f"The account's exposure would be {_money(value)}, above its maximum "
                f"{_money(acc_limits.max_exposure_notional)}.",
                scope="account",
                limit=acc_limits.max_exposure_notional,
                value=value,
            )

    held = book.held_keys()
    if key not in held:
        if deployment_id is not None and dep_limits.max_open_positions is not None:
            count = sum(1 for k in held if k[0] == deployment_id)
            if count >= dep_limits.max_open_positions:
                raise _refuse(
                    "max_open_positions",
                    f"The deployment already holds {count} positions (or entries pending); its limit is "
                    f"{dep_limits.max_open_positions}.",
                    scope="deployment",
                    limit=dep_limits.max_open_positions,
                    value=count,
                )
        if acc_limits.max_open_positions is not None and len(held) >= acc_limits.max_open_positions:
            raise _refuse(
                "max_open_positions",
                f"The account already holds {len(held)} positions (or entries pending); its limit is "
                f"{acc_limits.max_open_positions}.",
                scope="account",
                limit=acc_limits.max_open_positions,
                value=len(held),
            )


def _check_balance(
    *, account: TradingAccount, rules: MarketRules, side: str, quantity: Decimal, notional: Decimal
) -> None:
    if side == Order.Side.BUY:
        free = _balance_free(account, rules.quote)
        if free is not None and notional > free:
            raise _refuse(
                "insufficient_balance",
                f"The order needs {_money(notional)} {rules.quote}; the account's last known free balance is "
                f"{_money(free)}.",
                scope="account",
                limit=free,
                value=notional,
            )
    elif account.market_type == TradingAccount.MarketType.SPOT:
        free = _balance_free(account, rules.base)
        if free is not None and quantity > free:
            raise _refuse(
                "insufficient_balance",
                f"The order sells {quantity.normalize()} {rules.base}; the account's last known free balance is "
                f"{free.normalize()} (a spot account cannot sell what it does not hold).",
                scope="account",
                limit=free,
                value=quantity,
            )


# --- recording -----------------------------------------------------------------------------------


def risk_event_record(
    *,
    account: TradingAccount,
    deployment: Deployment | None,
    kind: str,
    code: str,
    message: str,
    order: Order | None = None,
    details: dict[str, Any] | None = None,
) -> RiskEvent:
    """Write one RiskEvent and push ``trade.risk_event`` to the account's owner after commit."""
    from apps.common.broadcast import broadcast

    event = RiskEvent.objects.create(
        account=account,
        deployment=deployment,
        order=order,
        kind=kind,
        code=code[:40],
        message=message[:500],
        details=details or {},
    )
    broadcast(
        account.owner_id,
        "trade.risk_event",
        {
            "id": event.pk,
            "account": account.pk,
            "deployment": deployment.pk if deployment is not None else None,
            "order": order.pk if order is not None else None,
            "kind": kind,
            "code": event.code,
            "message": event.message,
        },
    )
    return event


def risk_refusal_record(
    *, account: TradingAccount, deployment: Deployment | None, order: Order | None, error: Exception
) -> RiskEvent:
    """Record a refused order (risk refusal, venue-rule refusal) as a RiskEvent the user sees.
    Called by order_submit after writing the REJECTED Order row, in the same transaction."""
    code = getattr(error, "code", None) or "refused"
    message = getattr(error, "message", None) or str(error)
    extra = getattr(error, "extra", None) or {}
    details = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in extra.items()}
    return risk_event_record(
        account=account,
        deployment=deployment,
        order=order,
        kind=RiskEvent.Kind.REFUSED,
        code=code,
        message=message,
        details=details,
    )


# --- loss limits ---------------------------------------------------------------------------------


def deployment_loss_check(*, deployment: Deployment, equity: Decimal) -> tuple[str, str] | None:
    """Track the deployment's day-start and peak equity and say whether a loss limit is hit.

    Updates ``day_start_equity`` / ``day_started_on`` (rolled at UTC midnight: the first equity
    seen on a new UTC day starts it) and ``peak_equity`` (the highest seen). Returns
    ``("halt", reason)`` when the drawdown from the peak reaches ``max_drawdown``,
    ``("pause", reason)`` when the day's loss reaches ``daily_loss_limit`` (fraction of the
    day-start equity) or ``daily_loss_amount``, else None. The caller (the tick, holding the
    deployment's row lock) applies it: pause via the deployment service, halt via
    :func:`apps.trades.risk.switches.deployment_switch_set`.
    """
    equity = Decimal(equity)
    today = datetime.now(UTC).date()
    changed: list[str] = []
    if deployment.day_started_on != today or deployment.day_start_equity is None:
        deployment.day_started_on = today
        deployment.day_start_equity = equity
        changed += ["day_started_on", "day_start_equity"]
    if deployment.peak_equity is None or equity > deployment.peak_equity:
        deployment.peak_equity = equity
        changed.append("peak_equity")
    if changed:
        Deployment.objects.filter(pk=deployment.pk).update(**{name: getattr(deployment, name) for name in changed})

    limits = DeploymentLimits.from_dict(deployment.risk or {})
    peak = deployment.peak_equity
    if limits.max_drawdown is not None and peak and peak > 0:
        drawdown = (peak - equity) / peak
        if drawdown >= Decimal(str(limits.max_drawdown)):
            return (
                "halt",
                f"Maximum drawdown reached: equity {_money(equity)} is {drawdown:.2%} below the peak "
                f"{_money(peak)} (limit {limits.max_drawdown:.2%}).",
            )
    start = deployment.day_start_equity
    if start is not None:
        loss = start - equity
        if limits.daily_loss_amount is not None and loss >= limits.daily_loss_amount:
            return (
                "pause",
                f"Daily loss limit reached: down {_money(loss)} today (limit {_money(limits.daily_loss_amount)}).",
            )
        if limits.daily_loss_limit is not None and start > 0 and loss / start >= Decimal(str(limits.daily_loss_limit)):
            return (
                "pause",
                f"Daily loss limit reached: down {loss / start:.2%} today from {_money(start)} "
                f"(limit {limits.daily_loss_limit:.2%}).",
            )
    return None
