"""The tick's second half: from the strategy's verdict at a bar to Signals and order intents.

Called by `apps.strategies.services.ticks` inside the tick's transaction, with the account and
the deployment locked. Orders go through `apps.trades.services.orders.order_submit` with
``raise_refusal=False``: a refusal (risk, a venue rule) comes back as a REJECTED order with its
reason, recorded on the Signal and the TickRun, and the deployment carries on.

Exits mirror the backtest engine (apps.backtests.engine): exit and reverse signals are market
orders at the next bar, reduce-only; an entry carries the engine's sizing inputs (the paper venue
sizes it at the fill exactly as the engine does; other venues get the quantity at the decision
price) and its bracket (the strategy's stop/target prices at the signal bar, else stop_loss /
take_profit fractions of the fill price; risk-per-trade sizing without either places its ATR
stop at that distance from the fill price). Trailing stop and break-even are moved on each tick
(`apps.trades.services.algos.trailing_update`, from the deployment's exit settings); a time
exit closes the position so that it fills at the open of the bar ``time_exit_bars`` after the
entry bar, as in the engine.
"""

import math
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction

from apps.accounts.models import TradingAccount
from apps.backtests.engine.settings import EngineSettings
from apps.marketdata import timeframes
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment, Signal
from apps.trades.client_ids import strategy_order_id
from apps.trades.intents import OrderIntent

if TYPE_CHECKING:
    from apps.strategies.services.ticks import BarSignals, Plan, Tick
    from apps.trades.models import Order, Position


PLACES = Decimal("1e-10")  # the money columns' scale


def _decimal(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(PLACES)


def _sign(quantity: Decimal) -> int:
    return 1 if quantity > 0 else -1 if quantity < 0 else 0


def act(
    *,
    tick: "Tick",
    deployment: Deployment,
    plan: "Plan",
    instrument: Instrument,
    settings: EngineSettings,
    s: "BarSignals",
) -> str:
    """Decide, record the Signal, submit the orders, move trailing stops, check the loss limits.
    Returns the tick's outcome."""
    from apps.strategies.services.ticks import decide
    from apps.trades.models import Position

    position = Position.objects.filter(
        account_id=plan.account_id, deployment_id=deployment.pk, instrument_id=instrument.pk
    ).first()
    quantity = position.quantity if position is not None else Decimal(0)
    pos = _sign(quantity)
    close, enter = decide(pos, s, settings.allow_short)
    time_exit = False
    if pos and not close and position is not None and _time_exit_due(position, tick.bar_ts, deployment, settings):
        close, time_exit = True, True
    outcome = "no_signal"
    if close or enter:
        tick.action = _action(pos, close, enter, time_exit)
        outcome = _orders(tick, deployment, plan, instrument, settings, s, position, close, enter, time_exit)
    elif pos and position is not None and (settings.exits.trailing_stop or settings.exits.breakeven_after):
        from apps.trades.services.algos import trailing_update

        trailing_update(deployment=deployment, position=position, bar=s.bar)
    if position is not None:
        _loss_check(deployment, instrument, s)
    return outcome


def _time_exit_due(position: "Position", bar_ts: datetime, deployment: Deployment, settings: EngineSettings) -> bool:
    """Is the time exit due at this bar? The engine closes a position entered at bar e at the
    open of bar e + time_exit_bars; a market close decided now fills at the next bar's open."""
    bars = settings.exits.time_exit_bars
    if not bars:
        return False
    step = timeframes.delta(deployment.timeframe)
    if position.opened_at is not None:
        entered = timeframes.floor(position.opened_at, deployment.timeframe)  # the entry fill's bar
    elif position.entry_bar_ts is not None:
        entered = position.entry_bar_ts + step  # the signal bar; its market entry filled next bar
    else:
        return False
    held = int((bar_ts - entered) / step)
    return held >= bars - 1


def _action(pos: int, close: bool, enter: int, time_exit: bool) -> str:
    if enter == 1:
        return Signal.Action.ENTER_LONG
    if enter == -1:
        return Signal.Action.ENTER_SHORT
    if time_exit:
        return Signal.Action.STOP
    return Signal.Action.EXIT_LONG if pos == 1 else Signal.Action.EXIT_SHORT


def _orders(
    tick: "Tick",
    deployment: Deployment,
    plan: "Plan",
    instrument: Instrument,
    settings: EngineSettings,
    s: "BarSignals",
    position: "Position | None",
    close: bool,
    enter: int,
    time_exit: bool,
) -> str:
    from apps.trades.services.orders import order_submit

    details: dict[str, Any] = {"close": s.bar["close"]}
    submitted: list[Order] = []
    # Refusals come back as REJECTED orders; the rows this transaction locked and read (the
    # position too: the risk check needs the same number) are handed over, not read again.
    submit = partial(
        order_submit,
        raise_refusal=False,
        locked_account=tick.account,
        locked_deployment=deployment,
        instrument=instrument,
        position=position.quantity if position is not None else Decimal(0),
    )
    if close and position is not None and position.quantity:
        _cancel_protective_orders(deployment, instrument)
        exit_intent = OrderIntent(
            account_id=plan.account_id,
            instrument_id=instrument.pk,
            side="sell" if position.quantity > 0 else "buy",
            type="market",
            client_order_id=strategy_order_id(
                deployment_id=deployment.pk, bar_ts=tick.bar_ts, instrument_id=instrument.pk, leg="exit"
            ),
            source="exit" if time_exit else "strategy",
            deployment_id=deployment.pk,
            leg="exit",
            bar_ts=tick.bar_ts,
            quantity=abs(position.quantity),
            reduce_only=True,
            expected_price=_decimal(s.bar["close"]),
            timeframe=deployment.timeframe,
        )
        submitted.append(submit(intent=exit_intent))
        if time_exit:
            details["reason"] = "time"
    if enter:
        reversing = submitted[0] if submitted and submitted[0].status != "rejected" else None
        entry = _entry_intent(tick, deployment, plan, instrument, settings, s, enter, position, details, reversing)
        if entry is not None:
            submitted.append(submit(intent=entry))
    tick.orders = [o.pk for o in submitted]
    details["orders"] = tick.orders
    refused = [o for o in submitted if o.status == "rejected"]
    outcome = "order" if submitted else "no_signal"
    if refused:
        code = _refusal_code(refused[0])
        details["refusal"] = {"code": code, "message": refused[0].status_reason}
        outcome = f"refused:{code}"
    elif not submitted and "skipped" in details:
        outcome = "skipped"
    tick.details = details
    Signal.objects.create(
        deployment=deployment,
        instrument=instrument,
        bar_ts=tick.bar_ts,
        action=tick.action,
        price=s.bar["close"],
        details=details,
    )
    return outcome


def _entry_intent(
    tick: "Tick",
    deployment: Deployment,
    plan: "Plan",
    instrument: Instrument,
    settings: EngineSettings,
    s: "BarSignals",
    side: int,
    position: "Position | None",
    details: dict[str, Any],
    reversing: "Order | None" = None,
) -> OrderIntent | None:
    from apps.strategies.services.ticks import market_rules
    from apps.trades.risk.sizing import entry_quantity, entry_sizing

    close = s.bar["close"]
    exits = settings.exits
    stop_abs = s.stop_price if not math.isnan(s.stop_price) else None
    stop_distance: float | None
    if stop_abs is not None:
        stop_distance = side * (close - stop_abs)
    elif exits.stop_loss:
        stop_distance = exits.stop_loss * close
    elif math.isfinite(s.atr):
        stop_distance = s.atr * settings.sizing.atr_multiple
    else:
        stop_distance = None
    bracket: dict[str, Any] = {}
    if stop_abs is not None:
        bracket["stop_price"] = stop_abs
    elif exits.stop_loss:
        bracket["stop_loss"] = exits.stop_loss
    elif settings.sizing.mode == "risk_per_trade" and math.isfinite(s.atr):
        # The engine's ATR stop: this distance from the fill price.
        bracket["stop_distance"] = s.atr * settings.sizing.atr_multiple
    if not math.isnan(s.target_price):
        bracket["target_price"] = s.target_price
    elif exits.take_profit:
        bracket["take_profit"] = exits.take_profit
    details.update(bracket)
    rules = market_rules(instrument)
    equity = _equity(deployment, instrument, close, position, single=len(plan.instrument_ids) == 1)
    kwargs: dict[str, Any] = {
        "deployment_settings": settings,
        "equity": equity,
        "price": _decimal(close),
        "stop_distance": stop_distance,
        "kelly": _kelly(deployment, settings) if settings.sizing.mode == "kelly" else 0.0,
        "rules": rules,
    }
    limit = settings.entry == "limit"
    price = None
    if limit:
        offset = settings.limit_offset
        raw = _decimal(close * (1 - offset) if side == 1 else close * (1 + offset))
        price = rules.round_price(raw, "buy" if side == 1 else "sell")
    quantity = None
    sizing = None
    if plan.account_kind == TradingAccount.Kind.PAPER:
        sizing = entry_sizing(**kwargs)
        if reversing is not None:
            # The venue sizes the entry from the cash after this exit fills, as the engine
            # does; `equity` valued the exited position at this close.
            sizing["exit_client_order_id"] = reversing.client_order_id
            sizing["mark_price"] = float(close)
    else:
        quantity = entry_quantity(**kwargs, side="buy" if side == 1 else "sell", is_maker=limit)
        if not quantity or quantity <= 0:
            message = "The entry sizes below the minimum: less than one lot or the minimum order value."
            details["skipped"] = message
            _refusal_record(deployment, plan.account_id, instrument, message)
            return None
    return OrderIntent(
        account_id=plan.account_id,
        instrument_id=instrument.pk,
        side="buy" if side == 1 else "sell",
        type="limit" if limit else "market",
        client_order_id=strategy_order_id(
            deployment_id=deployment.pk, bar_ts=tick.bar_ts, instrument_id=instrument.pk, leg="entry"
        ),
        source="strategy",
        deployment_id=deployment.pk,
        leg="entry",
        bar_ts=tick.bar_ts,
        quantity=quantity,
        price=price,
        expected_price=price if price is not None else _decimal(close),
        sizing=sizing,
        bracket=bracket or None,
        timeframe=deployment.timeframe,
    )


def _equity(
    deployment: Deployment, instrument: Instrument, close: float, position: "Position | None", *, single: bool
) -> Decimal:
    """The deployment's equity now: its capital when it never traded, else capital + ledger +
    positions marked at this close (the execution service's count). ``single``: the deployment
    trades only ``instrument``, so no position row for it means it never traded (a fill is
    what creates both its position row and its ledger entries)."""
    if position is None and single:
        return deployment.capital
    if position is None:
        from apps.trades.models import Position

        if not Position.objects.filter(deployment_id=deployment.pk).exists():
            return deployment.capital
    from apps.trades.services.positions import deployment_equity

    return deployment_equity(deployment=deployment, prices={instrument.pk: _decimal(close)})


def _kelly(deployment: Deployment, settings: EngineSettings) -> float:
    """The engine's capped Kelly fraction from the deployment's closed trades (each closing fill's
    realised P&L net of its fee, over the notional it closed)."""
    from apps.backtests.engine.sizing import kelly_fraction_raw
    from apps.trades.models import Fill

    closed = wins = losses = 0
    win_sum = loss_sum = 0.0
    rows = (
        Fill.objects.filter(deployment=deployment)
        .exclude(realized_pnl=0)
        .values_list("realized_pnl", "fee", "quantity", "price")
    )
    for pnl, fee, qty, price in rows:
        notional = float(qty * price)
        if notional <= 0:
            continue
        ret = float(pnl - fee) / notional
        closed += 1
        if ret > 0:
            wins, win_sum = wins + 1, win_sum + ret
        else:
            losses, loss_sum = losses + 1, loss_sum + ret
    sz = settings.sizing
    return float(kelly_fraction_raw(closed, wins, win_sum, losses, loss_sum, sz.kelly_cap, sz.fraction))


def _cancel_protective_orders(deployment: Deployment, instrument: Instrument) -> None:
    """The position's resting stop/target legs, cancelled after commit (a venue call): the exit
    at market replaces them, as the engine's signal exit does."""
    from apps.strategies.services.deployments import deployment_orders_cancel
    from apps.trades.models import Order

    ids = list(
        Order.objects.filter(
            deployment=deployment,
            instrument=instrument,
            reduce_only=True,
            status__in=("new", "open", "partially_filled"),
        ).values_list("pk", flat=True)
    )
    if ids:
        transaction.on_commit(lambda: deployment_orders_cancel(order_ids=ids))


def _refusal_code(order: "Order") -> str:
    from apps.trades.models import RiskEvent

    code = RiskEvent.objects.filter(order=order).values_list("code", flat=True).first()
    return str(code or "rejected")[:30]


def _loss_check(deployment: Deployment, instrument: Instrument, s: "BarSignals") -> None:
    from apps.strategies.services.ticks import loss_check
    from apps.trades.services.positions import deployment_equity

    equity = deployment_equity(deployment=deployment, prices={instrument.pk: _decimal(s.bar["close"])})
    loss_check(deployment=deployment, equity=equity)


def _refusal_record(deployment: Deployment, account_id: int, instrument: Instrument, message: str) -> None:
    """Show the owner why no order was sent (a RiskEvent on the deployment); the deployment runs on."""
    from apps.trades.risk.checks import risk_event_record

    account = TradingAccount.objects.get(pk=account_id)
    code = "min_notional" if instrument.min_notional else "min_quantity"
    risk_event_record(
        account=account,
        deployment=deployment,
        kind="refused",
        code=code,
        message=message,
        details={"instrument": instrument.pk},
    )
