"""An accepted webhook signal becomes orders the way a strategy's signal does at a tick
(apps.strategies.services.tick_orders): the engine's decision rule, a reduce-only market exit
(the position's stop / target legs cancelled) and an entry sized by the deployment's settings
with its bracket, all through ``order_submit`` with the account and deployment locked.

What differs from a tick, and why:
- client order ids come from (deployment, nonce, leg) (``webhook_order_id``), not from a bar:
  an alert is not tied to a bar, and a resent alert must find its order;
- ``size`` (base units), when given, replaces the deployment's sizing; ``price`` makes the entry
  a limit order at that price (good until cancelled), otherwise it is a market order;
- the decision price is the instrument's latest close (no strategy ran on a bar);
- an entry still working (not filled yet) on the same side counts as being in the position:
  two alerts before the first entry fills must not make two entries.
"""

import math
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, Literal

from apps.accounts.models import TradingAccount
from apps.backtests.engine.settings import EngineSettings
from apps.common.errors import ValidationFailed
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment
from apps.strategies.webhooks.payload import WebhookPayload
from apps.trades.client_ids import webhook_order_id
from apps.trades.intents import OrderIntent
from apps.trades.models import Order


@dataclass
class Placed:
    """What a signal did: its orders, and a code / message when it placed none or one was refused."""

    orders: list[Order] = field(default_factory=list)
    code: str = "ok"
    message: str = ""


def _signals(action: str) -> Any:
    from apps.strategies.services.ticks import BarSignals

    buy, sell = action == "buy", action == "sell"
    nan = float("nan")
    return BarSignals(
        enter_long=buy,
        exit_long=sell,
        enter_short=sell,
        exit_short=buy,
        stop_price=nan,
        target_price=nan,
        atr=nan,
        bar={},
    )


def webhook_orders_place(
    *,
    account: TradingAccount,
    deployment: Deployment,
    instrument: Instrument,
    payload: WebhookPayload,
) -> Placed:
    """Decide and submit the signal's orders. Call inside a transaction holding the account and
    the deployment locks (in that order); ``order_submit`` errors other than refusals (which
    come back as REJECTED orders) propagate and roll the caller back."""
    from apps.strategies.services.deployments import deployment_engine_settings
    from apps.strategies.services.tick_orders import _cancel_protective_orders
    from apps.strategies.services.ticks import decide
    from apps.trades.models import Position
    from apps.trades.services.orders import order_submit
    from apps.trades.services.positions import last_price

    position = Position.objects.filter(
        account_id=account.pk, deployment_id=deployment.pk, instrument_id=instrument.pk
    ).first()
    held = position.quantity if position is not None else Decimal(0)
    pos = 1 if held > 0 else -1 if held < 0 else 0
    settings = deployment_engine_settings(deployment=deployment, instrument=instrument)
    if payload.action == "close":
        close, enter = bool(pos), 0
    else:
        close, enter = decide(pos, _signals(payload.action), settings.allow_short)
    if not close and not enter:
        return Placed(code="no_order", message=_nothing_to_do(payload.action, pos, settings))
    if enter and not close and _working_entry(deployment, instrument, "buy" if enter == 1 else "sell"):
        # Two alerts in a row before the first entry fills: still flat, but one entry is enough.
        return Placed(code="no_order", message="An entry on this side is already working: no second one.")
    reference = payload.price or last_price(instrument_id=instrument.pk)
    if reference is None:
        raise ValidationFailed("There is no price for this instrument yet (no candles).", code="no_price")
    submit = partial(
        order_submit,
        raise_refusal=False,
        locked_account=account,
        locked_deployment=deployment,
        instrument=instrument,
        position=held,
    )
    placed = Placed()
    if close and position is not None and held:
        _cancel_protective_orders(deployment, instrument)
        exit_intent = OrderIntent(
            account_id=account.pk,
            instrument_id=instrument.pk,
            side="sell" if held > 0 else "buy",
            type="market",
            client_order_id=webhook_order_id(deployment_id=deployment.pk, nonce=payload.nonce, leg="exit"),
            source=Order.Source.WEBHOOK,
            deployment_id=deployment.pk,
            leg="exit",
            quantity=abs(held),
            reduce_only=True,
            expected_price=last_price(instrument_id=instrument.pk) or reference,
            timeframe=deployment.timeframe,
        )
        placed.orders.append(submit(intent=exit_intent))
    if enter:
        reversing = placed.orders[0] if placed.orders and placed.orders[0].status != "rejected" else None
        entry = _entry_intent(account, deployment, instrument, settings, payload, enter, position, reversing, reference)
        if isinstance(entry, str):
            placed.code, placed.message = "no_order", entry
        else:
            placed.orders.append(submit(intent=entry))
    refused = [o for o in placed.orders if o.status == Order.Status.REJECTED]
    if refused:
        placed.code, placed.message = "order_refused", refused[0].status_reason
    return placed


def _working_entry(deployment: Deployment, instrument: Instrument, side: str) -> bool:
    return Order.objects.filter(
        deployment=deployment,
        instrument=instrument,
        leg="entry",
        side=side,
        reduce_only=False,
        status__in=Order.OPEN_STATUSES,
    ).exists()


def _nothing_to_do(action: str, pos: int, settings: EngineSettings) -> str:
    if action == "close":
        return "Flat: nothing to close."
    if action == "buy":
        return "Already long: a deployment does not add to its position."
    if pos == -1:
        return "Already short: a deployment does not add to its position."
    if not settings.allow_short:
        return "Flat and shorting is off for this deployment: nothing to sell."
    return "Nothing to do."


def _stop_distance(
    settings: EngineSettings, instrument: Instrument, deployment: Deployment, price: float
) -> float | None:
    """The entry's stop distance: the stop loss fraction of the price, else (risk-per-trade
    sizing) the ATR stop over the latest candles, as the tick computes it."""
    if settings.exits.stop_loss:
        return float(settings.exits.stop_loss) * price
    if settings.sizing.mode != "risk_per_trade":
        return None
    from apps.marketdata.indicators import atr as atr_indicator
    from apps.marketdata.storage import candles_frame

    candles = candles_frame(instrument.pk, deployment.timeframe, limit=settings.sizing.atr_period * 4 + 1)
    if len(candles) <= settings.sizing.atr_period:
        return None
    value = float(atr_indicator(candles["high"], candles["low"], candles["close"], settings.sizing.atr_period).iloc[-1])
    return value * settings.sizing.atr_multiple if math.isfinite(value) else None


def _entry_intent(
    account: TradingAccount,
    deployment: Deployment,
    instrument: Instrument,
    settings: EngineSettings,
    payload: WebhookPayload,
    side: int,
    position: Any,
    reversing: Order | None,
    reference: Decimal,
) -> OrderIntent | str:
    """The entry's intent, or why there is none (it sizes below the venue's minimum)."""
    from apps.strategies.services.tick_orders import _equity, _kelly
    from apps.strategies.services.ticks import market_rules
    from apps.trades.risk.sizing import entry_quantity, entry_sizing

    price = float(reference)
    stop_distance = _stop_distance(settings, instrument, deployment, price)
    bracket: dict[str, Any] = {}
    if settings.exits.stop_loss:
        bracket["stop_loss"] = settings.exits.stop_loss
    elif stop_distance is not None:
        bracket["stop_distance"] = stop_distance
    if settings.exits.take_profit:
        bracket["take_profit"] = settings.exits.take_profit
    rules = market_rules(instrument)
    order_side: Literal["buy", "sell"] = "buy" if side == 1 else "sell"
    limit = rules.round_price(payload.price, order_side) if payload.price is not None else None
    quantity: Decimal | None = payload.size
    sizing = None
    if quantity is None:
        single = deployment.instruments.count() == 1
        kwargs: dict[str, Any] = {
            "deployment_settings": settings,
            "equity": _equity(deployment, instrument, price, position, single=single),
            "price": reference,
            "stop_distance": stop_distance,
            "kelly": _kelly(deployment, settings) if settings.sizing.mode == "kelly" else 0.0,
            "rules": rules,
        }
        if account.kind == TradingAccount.Kind.PAPER:
            sizing = entry_sizing(**kwargs)
            if reversing is not None:
                sizing["exit_client_order_id"] = reversing.client_order_id
                sizing["mark_price"] = price
        else:
            quantity = entry_quantity(**kwargs, side=order_side, is_maker=limit is not None)
            if not quantity or quantity <= 0:
                return "The entry sizes below the minimum: less than one lot or the minimum order value."
    return OrderIntent(
        account_id=account.pk,
        instrument_id=instrument.pk,
        side=order_side,
        type="limit" if limit is not None else "market",
        client_order_id=webhook_order_id(deployment_id=deployment.pk, nonce=payload.nonce, leg="entry"),
        source=Order.Source.WEBHOOK,
        deployment_id=deployment.pk,
        leg="entry",
        quantity=quantity,
        price=limit,
        expected_price=limit if limit is not None else reference,
        sizing=sizing,
        bracket=bracket or None,
        timeframe=deployment.timeframe,
    )
