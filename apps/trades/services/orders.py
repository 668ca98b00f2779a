"""Orders: submit (write the row first), send (exactly once), resolve (ask, never resend), sync,
cancel.

The rules that keep an order from being sent twice or lost:

- ``order_submit`` writes the Order row, with its deterministic client order id, under
  UNIQUE(account, client_order_id) before anything is sent. The same intent again (a
  redelivered tick, a retried API call with the same id) finds the row and returns it; the log
  says ``duplicate_tick`` and nothing else happens.
- ``order_send`` claims NEW -> SENDING with a conditional UPDATE and commits before it calls the
  venue: a second delivery of the message claims nothing. No row lock is held during a network
  call; the venue's answer is recorded in a new transaction.
- An ambiguous outcome (a timeout or reset after the request went out, a 5xx, anything
  unexpected) makes the order UNKNOWN. It is then only ever asked about (``order_resolve``,
  fetch by client order id), never sent again. "Not found" becomes EXPIRED ("the venue never
  received it") only after ORDER_NOT_FOUND_CHECKS consecutive answers spanning at least
  ORDER_INFLIGHT_SECONDS; a found order takes the venue's state and fills.
- An order left in SENDING longer than ORDER_INFLIGHT_SECONDS (its worker died mid-send) is
  resolved the same way by the beat task ``orders_resolve_unknown``: zero or one venue order.
- The kill switches are read again right before the network call: a switch set after the order
  was accepted still stops it (REJECTED, code kill_switch), cancels excepted.
- Sends to a venue are paced per account (ORDER_RATE_PER_SECOND, see ``ratelimit``): a send over
  the limit is deferred, never dropped. A venue's 429 / a connection refused (NotSentError)
  puts the order back to NEW and it is retried after ``retry_after``; after
  ORDER_SEND_MAX_ATTEMPTS it is REJECTED "not sent".
- A revoked key: REJECTED, the account needs reconnecting and its running deployments pause;
  no retry.

Paper accounts: the venue's book is in this database, so with PAPER_SEND_INLINE (default) the
paper venue accepts the order inside ``order_submit``'s transaction, which holds the account's
row lock: the Order row (already SENT and OPEN) and the venue's order commit together or not at
all, so there is nothing in flight to resend or ask about. If the venue refuses it (funds,
rules) or fails, the savepoint around it leaves nothing at the venue, the order is written NEW
and sent right after commit by ``order_send`` in this process, which records the refusal as for
any venue. With PAPER_SEND_INLINE off, paper orders go through the queue like the others.

Settings (getattr defaults): ORDER_INFLIGHT_SECONDS 30, ORDER_NOT_FOUND_CHECKS 3,
ORDER_SEND_MAX_ATTEMPTS 8, ORDER_RETRY_MAX_COUNTDOWN 60, ORDER_STALE_SECONDS 300 (a NEW order
whose message was lost is sent again by the beat until this age, then EXPIRED "not sent"),
ORDER_RATE_PER_SECOND 10, ORDER_RATE_MAX_WAIT_SECONDS 0.5, PAPER_SEND_INLINE True.
"""

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.broker_factory import broker_for
from apps.accounts.brokers.base import (
    AmbiguousBrokerError,
    AuthenticationBrokerError,
    Broker,
    BrokerError,
    MarketRules,
    NotSentError,
    OrderNotFoundError,
    OrderRequest,
    OrderState,
    PermanentBrokerError,
    TemporaryBrokerError,
)
from apps.accounts.models import TradingAccount
from apps.accounts.services import account_lock, account_mark_needs_reconnect
from apps.audit.services import audit_event, audit_record, audit_record_many
from apps.common.errors import ApplicationError, NotFound, ValidationFailed
from apps.common.metrics import ORDER_SEND_SECONDS
from apps.marketdata.models import Instrument
from apps.strategies.models import Deployment
from apps.trades.client_ids import child_order_id, manual_order_id, strategy_order_id
from apps.trades.errors import OrderRefusedError, OrderStateError, RiskRefusedError
from apps.trades.intents import OrderIntent
from apps.trades.models import Order, Position, RiskEvent
from apps.trades.risk.checks import risk_check, risk_event_record, risk_refusal_record, trading_blocked
from apps.trades.services import events
from apps.trades.services.ledger import of_deployment
from apps.trades.services.positions import last_price
from apps.trades.services.ratelimit import rate_reserve
from apps.trades.services.venue_state import (
    _after_state,
    order_apply_state,
    venue_symbol,
)

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
S = Order.Status
_VENUE_STATUSES = {s.value for s in (S.OPEN, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED)}
NOT_SENT_REASON = "Not sent: the venue never received it."
# Parents of execution algorithms live only here (their children go to the venue).
LOCAL_ALGOS = (Order.Algo.TWAP, Order.Algo.ICEBERG)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def inflight_seconds() -> float:
    return float(_setting("ORDER_INFLIGHT_SECONDS", 30))


def _not_found_checks() -> int:
    return int(_setting("ORDER_NOT_FOUND_CHECKS", 3))


def _resolve_interval() -> float:
    """Seconds between questions about an UNKNOWN order: the not-found checks spread over the
    in-flight window."""
    return max(1.0, inflight_seconds() / max(1, _not_found_checks() - 1))


def _retry_countdown(exc: TemporaryBrokerError | None, attempts: int) -> float:
    cap = float(_setting("ORDER_RETRY_MAX_COUNTDOWN", 60))
    if exc is not None and exc.retry_after:
        return min(cap, max(0.5, float(exc.retry_after)))
    return min(cap, float(2 ** max(0, attempts - 1)))


# --- queueing (module functions, so tests can record them) -----------------------------------


def _enqueue_send(order_id: int, countdown: float | None = None) -> None:
    from apps.trades import tasks

    tasks.order_send.apply_async((order_id,), countdown=countdown)


def _enqueue_resolve(order_id: int, countdown: float | None = None) -> None:
    from apps.trades import tasks

    tasks.order_resolve.apply_async((order_id,), countdown=countdown)


def _enqueue_cancel(order_id: int) -> None:
    from apps.trades import tasks

    tasks.order_cancel.apply_async((order_id,))


def _send_inline(order_id: int) -> None:
    """Paper: send now, in this process (after commit). Never raises into the caller: an order
    it could not send stays NEW and the beat sends it (``orders_resolve_stuck``)."""
    try:
        delay = order_send(order_id=order_id)
    except Exception:
        logger.exception("inline send of order %s failed; the beat will retry it", order_id)
        return
    if delay is not None:
        _enqueue_send(order_id, countdown=delay)


def _after_commit_send(order: Order, account: TradingAccount) -> None:
    order_id = order.pk
    if account.kind == TradingAccount.Kind.PAPER and _setting("PAPER_SEND_INLINE", True):
        transaction.on_commit(lambda: _send_inline(order_id))
    else:
        transaction.on_commit(lambda: _enqueue_send(order_id))


# --- submit -------------------------------------------------------------------------------------


def market_rules_for(instrument: Instrument) -> MarketRules:
    """The venue rules we round and check against, from the instrument's stored precision."""
    return MarketRules(
        symbol=instrument.symbol,
        base=instrument.base,
        quote=instrument.quote,
        step_size=instrument.lot_size or None,
        tick_size=instrument.tick_size or None,
        min_notional=instrument.min_notional or None,
    )


def _client_order_id(intent: OrderIntent) -> str:
    if intent.deployment_id is not None and intent.bar_ts is not None:
        return strategy_order_id(
            deployment_id=intent.deployment_id, bar_ts=intent.bar_ts, instrument_id=intent.instrument_id, leg=intent.leg
        )
    return manual_order_id()


def _bracket(intent: OrderIntent, client_order_id: str) -> dict[str, Any] | None:
    """The intent's bracket with the client ids its stop and target will carry."""
    if not intent.bracket:
        return None
    bracket = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in intent.bracket.items()}
    if intent.deployment_id is not None and intent.bar_ts is not None:
        for leg in ("stop", "target"):
            bracket.setdefault(
                f"{leg}_client_order_id",
                strategy_order_id(
                    deployment_id=intent.deployment_id,
                    bar_ts=intent.bar_ts,
                    instrument_id=intent.instrument_id,
                    leg=leg,
                ),
            )
    else:
        bracket.setdefault("stop_client_order_id", child_order_id(parent_id=client_order_id, n=1))
        bracket.setdefault("target_client_order_id", child_order_id(parent_id=client_order_id, n=2))
    return bracket


def _rule_refusal(rules: MarketRules, quantity: Decimal, price: Decimal | None) -> OrderRefusedError | None:
    problem = rules.check(quantity, price)
    if problem is None:
        return None
    if quantity <= 0 or (rules.min_quantity is not None and quantity < rules.min_quantity):
        code = "min_quantity"
    elif rules.max_quantity is not None and quantity > rules.max_quantity:
        code = "max_quantity"
    else:
        code = "min_notional"
    return OrderRefusedError(problem, code=code, extra={"quantity": str(quantity), "price": str(price)})


def _validate_intent(intent: OrderIntent) -> None:
    if intent.side not in Order.Side.values:
        raise ValidationFailed("side must be buy or sell.", code="invalid_side")
    if intent.type not in Order.Type.values:
        raise ValidationFailed(f"type must be one of {', '.join(Order.Type.values)}.", code="invalid_type")
    if intent.type in (Order.Type.LIMIT, Order.Type.STOP_LIMIT) and intent.price is None:
        raise ValidationFailed("A limit order needs a price.", code="price_required")
    if intent.type in (Order.Type.STOP, Order.Type.STOP_LIMIT) and intent.stop_price is None:
        raise ValidationFailed("A stop order needs a stop price.", code="stop_price_required")
    if intent.quantity is None and intent.quote_quantity is None and not intent.sizing:
        raise ValidationFailed("Give a quantity (or a quote amount).", code="quantity_required")
    for name in ("quantity", "quote_quantity", "price", "stop_price"):
        value = getattr(intent, name)
        if value is not None and (not isinstance(value, Decimal) or not value.is_finite() or value <= 0):
            raise ValidationFailed(f"{name} must be a positive decimal number.", code=f"invalid_{name}")


def order_submit(
    *,
    intent: OrderIntent,
    raise_refusal: bool = True,
    locked_account: TradingAccount | None = None,
    locked_deployment: Deployment | None = None,
    instrument: Instrument | None = None,
    position: Decimal | None = None,
) -> Order:
    """Record an order and queue its delivery to the venue; returns the Order.

    Locks the account and then the deployment (if any), the platform's lock order (STYLE.md);
    the tick calls this already holding both (fill recording never locks the deployment).
    The same client order id again returns the existing row (``duplicate_tick`` in the log).
    Quantity and prices are rounded to the instrument's step and tick; an order breaking a venue
    rule (OrderRefusedError) or refused by ``risk_check`` (RiskRefusedError) is recorded as a
    REJECTED Order with a RiskEvent, committed, and then the error is raised
    (``raise_refusal=False``, for ticks: returned as the REJECTED order instead).
    After commit: ``order_send`` (inline for paper accounts, else the orders queue).

    ``locked_account`` / ``locked_deployment``: the intent's account and deployment rows as the
    caller read them with SELECT ... FOR UPDATE in the transaction it is still in (the tick);
    they are used as they are instead of being read and locked again; such a caller rolls its
    whole transaction back on an error, so no savepoint of ours is needed either. With them,
    ``instrument`` (the intent's instrument row) and ``position`` (the signed quantity the
    caller read in that transaction for the intent's account, deployment and instrument) spare
    two more reads.
    """
    with transaction.atomic(savepoint=locked_account is None):
        order, refusal = _order_create(
            intent=intent,
            locked_account=locked_account,
            locked_deployment=locked_deployment,
            instrument=instrument if locked_account is not None else None,
            position=position if locked_account is not None else None,
        )
    if refusal is not None and raise_refusal:
        raise refusal
    return order


def _order_create(
    *,
    intent: OrderIntent,
    locked_account: TradingAccount | None,
    locked_deployment: Deployment | None,
    instrument: Instrument | None,
    position: Decimal | None,
) -> tuple[Order, ApplicationError | None]:
    started = time.perf_counter()
    _validate_intent(intent)
    # Locks in the house order, account then deployment (STYLE.md), as the tick takes them.
    # Rows the caller locked already (the tick holds both) are not read again.
    if locked_account is not None and locked_account.pk == intent.account_id:
        account = locked_account
    else:
        account = account_lock(account_id=intent.account_id)
    deployment = None
    if locked_deployment is not None and locked_deployment.pk == intent.deployment_id:
        deployment = locked_deployment
    elif intent.deployment_id is not None:
        deployment = Deployment.objects.select_for_update().filter(pk=intent.deployment_id).first()
        if deployment is None:
            raise NotFound("No such deployment.")
    if deployment is not None and deployment.account_id != account.pk:
        raise ValidationFailed("The deployment trades on another account.", code="account_mismatch")
    client_order_id = intent.client_order_id or _client_order_id(intent)
    existing = Order.objects.filter(account_id=account.pk, client_order_id=client_order_id).first()
    if existing is not None:
        logger.info(
            "duplicate_tick: order %s already exists (status %s)",
            client_order_id,
            existing.status,
            extra={"event": "duplicate_tick", "account_id": account.pk, "client_order_id": client_order_id},
        )
        return existing, None
    if instrument is None or instrument.pk != intent.instrument_id:
        instrument = Instrument.objects.filter(pk=intent.instrument_id).first()
        if instrument is None:
            raise NotFound("No such instrument.")
    rules = market_rules_for(instrument)
    quantity = rules.round_quantity(intent.quantity) if intent.quantity is not None else None
    price = rules.round_price(intent.price, intent.side) if intent.price is not None else None  # type: ignore[arg-type]
    stop_price = (
        rules.round_price(intent.stop_price, intent.side, is_stop=True)  # type: ignore[arg-type]
        if intent.stop_price is not None
        else None
    )
    reference = intent.expected_price or price or stop_price or last_price(instrument_id=instrument.pk)
    intent = replace(intent, client_order_id=client_order_id, quantity=quantity, price=price, stop_price=stop_price)

    refusal: ApplicationError | None = None
    if quantity is not None:
        refusal = _rule_refusal(rules, quantity, reference)
    if refusal is None and reference is None:
        refusal = OrderRefusedError(
            "There is no price to check this order against (no candles for the instrument yet).", code="no_price"
        )
    if refusal is None:
        try:
            risk_check(
                account=account,
                deployment=deployment,
                intent=intent,
                price=reference,  # type: ignore[arg-type]
                rules=rules,
                position=position,
            )
        except RiskRefusedError as exc:
            refusal = exc

    order = Order(
        account=account,
        deployment=deployment,
        instrument=instrument,
        symbol=instrument.symbol,
        client_order_id=client_order_id,
        source=intent.source,
        leg=intent.leg,
        bar_ts=intent.bar_ts,
        side=intent.side,
        type=intent.type,
        quantity=quantity if quantity is not None else ZERO,
        quote_quantity=intent.quote_quantity,
        price=price,
        stop_price=stop_price,
        reduce_only=intent.reduce_only,
        expected_price=intent.expected_price if intent.expected_price is not None else reference,
        algo=intent.algo or (Order.Algo.BRACKET if intent.bracket else ""),
        algo_params=intent.algo_params or {},
        sizing=intent.sizing,
        bracket=_bracket(intent, client_order_id),
        timeframe=intent.timeframe or (deployment.timeframe if deployment is not None else ""),
        status=S.REJECTED if refusal is not None else S.NEW,
        status_reason=f"{refusal.code}: {refusal.message}"[:500] if refusal is not None else "",
        created_by_id=intent.created_by_id,
    )
    try:
        order.clean_fields(exclude=["account", "deployment", "instrument", "created_by", "parent"])
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()), code="invalid_order"
        ) from None
    accepted = None
    if refusal is None and account.kind == TradingAccount.Kind.PAPER and _setting("PAPER_SEND_INLINE", True):
        accepted = _paper_accept(order, account, instrument)
        if accepted is not None:
            order.status = accepted.status if accepted.status in _VENUE_STATUSES else S.OPEN
            if accepted.fills:  # an IOC order filled at once: its fills are recorded below
                order.status = S.OPEN
            elif accepted.reason and order.status in (S.EXPIRED, S.REJECTED, S.CANCELLED):
                order.status_reason = accepted.reason[:500]
            order.exchange_order_id = accepted.exchange_order_id[:64]
            order.send_attempts = 1
            order.sent_at = timezone.now()
            if order.quantity == 0 and accepted.quantity:
                order.quantity = accepted.quantity
    if locked_account is not None:
        # The caller holds the account lock and checked the id above under it: no other writer
        # can insert this id now (and an error rolls the caller's transaction back anyway).
        order.save()
    else:
        try:
            with transaction.atomic():
                order.save()
        except IntegrityError:
            # Only possible if a writer skipped the account lock; the row it wrote wins.
            return Order.objects.get(account_id=account.pk, client_order_id=client_order_id), None
    if refusal is not None:
        risk_refusal_record(account=account, deployment=deployment, order=order, error=refusal)
        audit_record(
            action="order.rejected",
            user=account.owner,
            target=order,
            details={"code": refusal.code, "reason": refusal.message[:300]},
        )
    else:
        created = audit_event(
            action="order.created",
            user=account.owner,
            target=order,
            details={"side": order.side, "type": order.type, "quantity": str(order.quantity), "source": order.source},
        )
        if accepted is None:
            created.save()
            _after_commit_send(order, account)
        else:
            sent = audit_event(
                action="order.sent",
                user=account.owner,
                target=order,
                details={"exchange_order_id": order.exchange_order_id, "status": order.status},
            )
            audit_record_many([created, sent])
            # Created and accepted by the paper venue in this call: that is its send latency.
            elapsed = time.perf_counter() - started
            transaction.on_commit(lambda: ORDER_SEND_SECONDS.labels(kind=account.kind).observe(elapsed))
            if accepted.fills:  # an IOC market order (a copy) filled at once
                order = order_apply_state(order_id=order.pk, state=accepted)
    events.announce_order(order, account.owner_id)
    return order, refusal


def _paper_accept(order: Order, account: TradingAccount, instrument: Instrument) -> OrderState | None:
    """The paper venue accepts ``order`` (not yet written) inside this transaction, which holds
    the account's row lock (module docstring). None when the venue refused or failed: the
    savepoint leaves nothing at the venue, and the ordinary send after commit deals with it."""
    from apps.accounts.paper import PaperBroker

    try:
        broker = PaperBroker(account.pk, account=account)
        with transaction.atomic():
            return broker.accept_locked(_order_request(order, broker), account=account, instrument=instrument)
    except BrokerError as exc:
        logger.info("paper order %s not accepted at once (%s); sending it after commit", order.client_order_id, exc)
    except Exception:
        logger.exception("paper order %s: accepting it failed; sending it after commit", order.client_order_id)
    return None


# --- send ---------------------------------------------------------------------------------------


VENUE_BRACKET_KEYS = frozenset(
    {
        "stop_loss",
        "take_profit",
        "stop_price",
        "target_price",
        "stop_distance",
        "stop_client_order_id",
        "target_client_order_id",
    }
)


def _order_request(order: Order, broker: Broker) -> OrderRequest:
    attached = None
    if order.bracket and broker.capabilities.native_oco:
        # Only the venue-side part of a bracket: trailing and break-even are emulated on each
        # tick (apps.trades.services.algos), never sent.
        attached = {key: value for key, value in order.bracket.items() if key in VENUE_BRACKET_KEYS}
    return OrderRequest(
        client_order_id=order.client_order_id,
        symbol=venue_symbol(order),
        side=order.side,  # type: ignore[arg-type]
        type=order.type,  # type: ignore[arg-type]
        quantity=order.quantity,
        price=order.price,
        stop_price=order.stop_price,
        reduce_only=order.reduce_only,
        quote_quantity=order.quote_quantity,
        sizing=order.sizing,
        attached=attached,
        timeframe=order.timeframe or None,
        # A copy follows a fill that has already happened: its market order must fill now, not
        # rest a bar (the paper venue fills IOC market orders at once; other venues fill market
        # orders at once anyway and ignore it for them).
        time_in_force="IOC" if order.source == Order.Source.COPY and order.type == Order.Type.MARKET else "GTC",
    )


@contextmanager
def _broker(account: TradingAccount) -> Iterator[Broker]:
    broker = broker_for(account)
    try:
        yield broker
    finally:
        try:
            broker.close()
        except Exception:  # closing must never hide the answer
            logger.warning("closing the broker of account %s failed", account.pk, exc_info=True)


def _transition(order_id: int, from_statuses: Iterable[str], **fields: Any) -> bool:
    """Conditional UPDATE: move the order only if it is still in one of ``from_statuses``."""
    fields.setdefault("updated_at", timezone.now())
    return bool(Order.objects.filter(pk=order_id, status__in=list(from_statuses)).update(**fields))


@transaction.atomic
def _order_finish(
    order_id: int, from_statuses: Iterable[str], *, status: str, reason: str, code: str, risk_event: bool = True
) -> Order | None:
    """Move an order to a terminal status (from the given ones only), with its RiskEvent, audit
    row and announcements. None if the order had moved on."""
    order = Order.objects.select_for_update(of=("self",)).select_related("account", "deployment").get(pk=order_id)
    if order.status not in from_statuses:
        return None
    order.status = status
    order.status_reason = reason[:500]
    order.next_check_at = None
    order.save(update_fields=["status", "status_reason", "next_check_at", "updated_at"])
    if risk_event:
        risk_event_record(
            account=order.account,
            deployment=order.deployment,
            order=order,
            kind=RiskEvent.Kind.REFUSED,
            code=code,
            message=reason,
        )
    audit_record(
        action=f"order.{status}", user=order.account.owner, target=order, details={"code": code, "reason": reason[:300]}
    )
    events.announce_order(order, order.account.owner_id)
    return order


def order_send(*, order_id: int) -> float | None:
    """Deliver a NEW order to its venue, exactly once. Returns None when done (sent, refused,
    or nothing to do), or the seconds after which to call again (rate limit, NotSentError).

    Never holds a row lock during the network call. See the module docstring for the outcomes.
    """
    # The owner too: the audit row of the send names it.
    order = Order.objects.select_related("account__owner", "deployment", "instrument").filter(pk=order_id).first()
    if order is None or order.status != S.NEW:
        return None  # a redelivered message, or handled already
    now = timezone.now()
    if order.next_check_at is not None and order.next_check_at > now + timedelta(seconds=0.05):
        return (order.next_check_at - now).total_seconds()  # early (a duplicate message): wait for its time
    account = order.account
    reducing = _is_reducing(order)
    blocked = trading_blocked(account=account, deployment=order.deployment, reduce_only=reducing)
    if blocked:
        _order_finish(order_id, (S.NEW,), status=S.REJECTED, reason=blocked, code="kill_switch")
        return None
    is_paper = account.kind == TradingAccount.Kind.PAPER
    if not is_paper:
        reserved, wait = rate_reserve(account_id=account.pk)
        if not reserved:
            _transition(order_id, (S.NEW,), next_check_at=now + timedelta(seconds=wait))
            return wait
        if wait > 0:
            # The slot we hold starts within ORDER_RATE_MAX_WAIT_SECONDS: holding it for that
            # long is cheaper than a trip back through the broker, and sending before it would
            # break the venue's rate limit.
            time.sleep(wait)
    if not _transition(
        order_id, (S.NEW,), status=S.SENDING, send_attempts=F("send_attempts") + 1, sent_at=timezone.now()
    ):
        return None  # another delivery claimed it
    order.refresh_from_db(fields=["send_attempts", "status"])
    # Kill switches once more, right before the network: a switch set while we waited counts.
    blocked = trading_blocked(account=account, deployment=order.deployment, reduce_only=reducing)
    if blocked:
        _order_finish(order_id, (S.SENDING,), status=S.REJECTED, reason=blocked, code="kill_switch")
        return None
    try:
        with _broker(account) as broker:
            request = _order_request(order, broker)
            if not is_paper:
                # Load the venue's markets first: a failure here certainly sent nothing (the
                # adapter's own reads inside submit are reported as merely "temporary").
                try:
                    broker.market_rules(request.symbol)
                except PermanentBrokerError as exc:
                    return _send_failed(order, exc)
                except BrokerError as exc:
                    return _send_failed(order, NotSentError(exc.message, retry_after=getattr(exc, "retry_after", None)))
            try:
                state = broker.submit(request)
            except BrokerError as exc:
                return _send_failed(order, exc)
            except Exception as exc:  # unknown failure after the call may have gone out: ambiguous
                logger.exception("order %s: unexpected error while sending", order.client_order_id)
                return _send_failed(
                    order, AmbiguousBrokerError(f"Unexpected error while sending: {type(exc).__name__}")
                )
            applied = order_apply_state(order_id=order_id, state=state)
            ORDER_SEND_SECONDS.labels(kind=account.kind).observe((timezone.now() - order.created_at).total_seconds())
            audit_record(
                action="order.sent",
                user=account.owner,
                target=applied,
                details={"exchange_order_id": applied.exchange_order_id, "status": applied.status},
            )
            _after_state(applied, broker)
    except AuthenticationBrokerError as exc:  # broker_for: unreadable credentials, disabled account
        return _send_failed(order, exc)
    return None


def _is_reducing(order: Order) -> bool:
    """Whether the order only lowers its position (reduce-only, or opposite to and no bigger
    than it): such orders pass a REDUCE_ONLY switch."""
    if order.reduce_only:
        return True
    held = (
        Position.objects.filter(
            account_id=order.account_id, instrument_id=order.instrument_id, **of_deployment(order.deployment_id)
        )
        .values_list("quantity", flat=True)
        .first()
    )
    if not held or order.quantity <= 0:
        return False
    return (held > 0) != (order.side == Order.Side.BUY) and order.quantity <= abs(held)


def _send_failed(order: Order, exc: BrokerError) -> float | None:
    order_id = order.pk
    if isinstance(exc, NotSentError):
        attempts = order.send_attempts
        if attempts >= int(_setting("ORDER_SEND_MAX_ATTEMPTS", 8)):
            _order_finish(
                order_id,
                (S.SENDING,),
                status=S.REJECTED,
                reason=f"Not sent after {attempts} attempts: {exc.message}",
                code="not_sent",
            )
            return None
        delay = _retry_countdown(exc, attempts)
        _transition(
            order_id,
            (S.SENDING,),
            status=S.NEW,
            next_check_at=timezone.now() + timedelta(seconds=delay),
            status_reason=f"Retrying: {exc.message}"[:500],
        )
        logger.info("order %s not sent (%s); retrying in %.1fs", order.client_order_id, exc.message, delay)
        return delay
    if isinstance(exc, TemporaryBrokerError):  # AmbiguousBrokerError and any other "maybe"
        order_mark_unknown(order_id=order_id, reason=exc.message)
        return None
    if isinstance(exc, AuthenticationBrokerError):
        reason = f"The venue refused the account's key: {exc.message}"
        _order_finish(order_id, (S.SENDING, S.NEW), status=S.REJECTED, reason=reason, code=exc.code)
        account_mark_needs_reconnect(account_id=order.account_id, reason=reason)
        deployments_stop_trading(
            account_id=order.account_id,
            status=Deployment.Status.PAUSED,
            reason="Paused: the account needs reconnecting (its key was refused).",
            code="account_needs_reconnect",
        )
        return None
    if isinstance(exc, PermanentBrokerError):
        _order_finish(order_id, (S.SENDING,), status=S.REJECTED, reason=exc.message or exc.code, code=exc.code)
        if exc.code in ("bad_symbol", "unknown_symbol", "not_supported") and order.deployment_id is not None:
            deployments_stop_trading(
                account_id=order.account_id,
                status=Deployment.Status.PAUSED,
                reason=f"Paused: the venue refused the order ({exc.message}).",
                code=exc.code,
                deployment_ids=[order.deployment_id],
            )
        return None
    # OrderNotFoundError or another BrokerError from submit: we do not know what happened.
    order_mark_unknown(order_id=order_id, reason=exc.message)
    return None


def order_mark_unknown(*, order_id: int, reason: str) -> None:
    """SENDING (or NEW) -> UNKNOWN, and ask the venue about it shortly (never resend)."""
    countdown = min(2.0, _resolve_interval())
    moved = _transition(
        order_id,
        (S.SENDING, S.NEW),
        status=S.UNKNOWN,
        status_reason=f"Asking the venue: {reason}"[:500],
        next_check_at=timezone.now() + timedelta(seconds=countdown),
    )
    if moved:
        order = Order.objects.select_related("account").get(pk=order_id)
        logger.warning("order %s outcome unknown (%s): asking the venue", order.client_order_id, reason)
        events.announce_order(order, order.account.owner_id)
        _enqueue_resolve(order_id, countdown=countdown)


def deployments_stop_trading(
    *, account_id: int, status: str, reason: str, code: str, deployment_ids: Iterable[int] | None = None
) -> list[int]:
    """Pause or halt the account's running (and paused) deployments, with the reason, a
    RiskEvent and ``trading_halted`` each. Returns the ids changed. Takes no account lock."""
    candidates = Deployment.objects.filter(account_id=account_id).filter(
        status__in=[*Deployment.RUNNING, Deployment.Status.PAUSED]
        if status == Deployment.Status.HALTED
        else list(Deployment.RUNNING)
    )
    if deployment_ids is not None:
        candidates = candidates.filter(pk__in=list(deployment_ids))
    changed: list[int] = []
    with transaction.atomic():
        account = TradingAccount.objects.get(pk=account_id)
        for deployment in candidates.select_for_update():
            deployment.status = status
            deployment.status_reason = reason[:500]
            deployment.fence = F("fence") + 1
            deployment.save(update_fields=["status", "status_reason", "fence", "updated_at"])
            risk_event_record(
                account=account,
                deployment=deployment,
                kind=RiskEvent.Kind.HALTED if status == Deployment.Status.HALTED else RiskEvent.Kind.PAUSED,
                code=code,
                message=reason,
            )
            audit_record(
                action=f"deployment.{status}", user=account.owner, target=deployment, details={"reason": reason}
            )
            events.announce_halt(account_id=account_id, deployment_id=deployment.pk, reason=reason)
            changed.append(deployment.pk)
    return changed


# --- resolve, sync ----------------------------------------------------------------------------


def order_resolve(*, order_id: int, broker: Broker | None = None) -> float | None:
    """Ask the venue about an UNKNOWN order (or one stuck in SENDING past the in-flight window):
    found -> its state and fills; not found -> counted (EXPIRED "not sent" after the rule in
    the module docstring); no answer -> ask later. Never sends. Returns seconds until the next
    question, or None when there is nothing more to ask."""
    order = Order.objects.select_related("account", "instrument").filter(pk=order_id).first()
    if order is None or order.status not in (S.UNKNOWN, S.SENDING):
        return None
    now = timezone.now()
    if order.status == S.SENDING:
        age = (now - (order.sent_at or order.updated_at)).total_seconds()
        if age < inflight_seconds():
            return inflight_seconds() - age  # the send may still be under way in another worker
        if not _transition(
            order_id,
            (S.SENDING,),
            status=S.UNKNOWN,
            status_reason="Asking the venue: the send was interrupted.",
        ):
            return None
    if broker is not None:
        return _resolve_with(order, broker)
    try:
        with _broker(order.account) as own:
            return _resolve_with(order, own)
    except AuthenticationBrokerError as exc:
        # The key stopped working: the order may still be live at the venue. Keep it UNKNOWN.
        logger.warning("cannot ask about order %s: %s", order.client_order_id, exc.message)
        return _ask_later(order_id, _resolve_interval() * 4)


def _resolve_with(order: Order, broker: Broker) -> float | None:
    try:
        state = broker.fetch_order(order.client_order_id, venue_symbol(order))
    except OrderNotFoundError:
        return order_not_found(order_id=order.pk)
    except BrokerError as exc:
        logger.info("order %s: no answer from the venue yet (%s)", order.client_order_id, exc.message)
        return _ask_later(order.pk, _retry_countdown(exc if isinstance(exc, TemporaryBrokerError) else None, 2))
    applied = order_apply_state(order_id=order.pk, state=state)
    _after_state(applied, broker)
    return None


def _ask_later(order_id: int, delay: float) -> float:
    Order.objects.filter(pk=order_id).update(next_check_at=timezone.now() + timedelta(seconds=delay))
    return delay


@transaction.atomic
def order_not_found(*, order_id: int) -> float | None:
    """Count one "the venue does not know this order" answer. After ORDER_NOT_FOUND_CHECKS
    consecutive ones spanning ORDER_INFLIGHT_SECONDS: an UNKNOWN order is EXPIRED (not sent), an
    open one EXPIRED (the venue no longer knows it). Returns the delay until the next check,
    or None when decided."""
    order = Order.objects.select_for_update(of=("self",)).select_related("account").get(pk=order_id)
    if order.status not in (S.UNKNOWN, S.OPEN, S.PARTIALLY_FILLED):
        return None
    now = timezone.now()
    order.not_found_count += 1
    if order.first_not_found_at is None:
        order.first_not_found_at = now
    span = (now - order.first_not_found_at).total_seconds()
    if order.not_found_count >= _not_found_checks() and span >= inflight_seconds():
        unknown = order.status == S.UNKNOWN
        order.status = S.EXPIRED
        order.status_reason = NOT_SENT_REASON if unknown else "The venue no longer knows this order."
        order.next_check_at = None
        order.save()
        audit_record(
            action="order.expired",
            user=order.account.owner,
            target=order,
            details={"not_found_checks": order.not_found_count, "span_seconds": round(span, 1)},
        )
        events.announce_order(order, order.account.owner_id)
        logger.warning("order %s expired: %s", order.client_order_id, order.status_reason)
        return None
    delay = _resolve_interval()
    if order.not_found_count + 1 >= _not_found_checks():
        delay = max(delay, inflight_seconds() - span)
    order.next_check_at = now + timedelta(seconds=delay)
    order.save(update_fields=["not_found_count", "first_not_found_at", "next_check_at", "updated_at"])
    return delay


def order_sync(*, order_id: int, broker: Broker | None = None) -> Order | None:
    """Bring an open order up to date with the venue (state and new fills). UNKNOWN orders are
    resolved; NEW, SENDING and terminal ones are left alone. Returns the order."""
    order = Order.objects.select_related("account", "instrument").filter(pk=order_id).first()
    if order is None:
        return None
    if order.status == S.UNKNOWN:
        order_resolve(order_id=order_id, broker=broker)
        return Order.objects.get(pk=order_id)
    if order.status not in (S.OPEN, S.PARTIALLY_FILLED) or order.algo in LOCAL_ALGOS:
        return order
    if broker is None:
        with _broker(order.account) as own:
            return _sync_with(order, own)
    return _sync_with(order, broker)


def _sync_with(order: Order, broker: Broker) -> Order:
    try:
        state = broker.fetch_order(order.client_order_id, venue_symbol(order))
    except OrderNotFoundError:
        order_not_found(order_id=order.pk)
        return Order.objects.get(pk=order.pk)
    except BrokerError as exc:
        logger.info("order %s: sync failed (%s)", order.client_order_id, exc.message)
        return order
    applied = order_apply_state(order_id=order.pk, state=state)
    _after_state(applied, broker)
    return applied


def orders_sync_for_account(*, account_id: int, client_order_ids: Iterable[str] | None = None) -> int:
    """Sync the account's open and unknown orders (or only those client ids) with one broker.
    Bracket legs the venue placed are adopted on the way (so ids unknown at first are looked up
    again after the others). Returns how many orders were looked at."""
    account = TradingAccount.objects.filter(pk=account_id).first()
    if account is None or account.status == TradingAccount.Status.DISABLED:
        return 0
    wanted = list(dict.fromkeys(client_order_ids)) if client_order_ids is not None else None
    queryset = Order.objects.filter(account_id=account_id, status__in=(S.OPEN, S.PARTIALLY_FILLED, S.UNKNOWN)).exclude(
        algo__in=LOCAL_ALGOS
    )
    if wanted is not None:
        queryset = queryset.filter(client_order_id__in=wanted)
    seen: set[str] = set()
    with _broker(account) as broker:
        for order in queryset.order_by("pk"):
            seen.add(order.client_order_id)
            order_sync(order_id=order.pk, broker=broker)
        if wanted is not None:
            late = [c for c in wanted if c not in seen]
            if late:
                for order in Order.objects.filter(
                    account_id=account_id, client_order_id__in=late, status__in=(S.OPEN, S.PARTIALLY_FILLED, S.UNKNOWN)
                ):
                    seen.add(order.client_order_id)
                    order_sync(order_id=order.pk, broker=broker)
    return len(seen)


# --- cancel -------------------------------------------------------------------------------------


def order_cancel(*, order: Order, actor: Any = None) -> Order:
    """Cancel an order. NEW (never sent): cancelled here. OPEN / PARTIALLY_FILLED / UNKNOWN: the
    venue is asked to cancel by client order id (safe: never a new order); inside a caller's
    transaction that request is queued after commit (no network call under a lock), otherwise
    it is made now and the venue's answer recorded. SENDING: OrderStateError (try again once
    the send is answered). Cancels pass every kill switch."""
    order = Order.objects.select_related("account").get(pk=order.pk)
    if order.algo in LOCAL_ALGOS:
        from apps.trades.services.algos import algo_cancel

        return algo_cancel(order=order, actor=actor)
    if order.is_terminal:
        raise OrderStateError(f"This order is already {order.get_status_display().lower()}.")
    if order.status == S.SENDING:
        raise OrderStateError("This order is being sent; cancel it once the venue has answered.", code="order_sending")
    audit_record(
        action="order.cancel_requested",
        actor=actor,
        user=order.account.owner,
        target=order,
        details={"status": order.status},
    )
    if order.status == S.NEW:
        if _transition(order.pk, (S.NEW,), status=S.CANCELLED, status_reason="Cancelled before it was sent."):
            order.refresh_from_db()
            events.announce_order(order, order.account.owner_id)
            return order
        return order_cancel(order=order, actor=actor)  # it was claimed meanwhile
    if _inside_transaction():
        order_id = order.pk
        if order.account.kind == TradingAccount.Kind.PAPER:
            transaction.on_commit(lambda: _cancel_inline(order_id))
        else:
            transaction.on_commit(lambda: _enqueue_cancel(order_id))
        return order
    return order_cancel_send(order_id=order.pk)


def _inside_transaction() -> bool:
    """Whether the caller holds a transaction (and maybe row locks). The test suite's own
    wrapping transaction (Django's TestCase marks it) does not count."""
    connection = transaction.get_connection()
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def _cancel_inline(order_id: int) -> None:
    try:
        order_cancel_send(order_id=order_id)
    except Exception:
        logger.exception("inline cancel of order %s failed; queueing it", order_id)
        _enqueue_cancel(order_id)


def order_cancel_send(*, order_id: int) -> Order:
    """Ask the venue to cancel (by client order id) and record its answer. Outside any
    transaction: the network call holds no lock."""
    order = Order.objects.select_related("account", "instrument").get(pk=order_id)
    if order.is_terminal or order.status in (S.NEW, S.SENDING):
        return order
    with _broker(order.account) as broker:
        try:
            state = broker.cancel(order.client_order_id, venue_symbol(order))
        except OrderNotFoundError:
            order_not_found(order_id=order_id)
            return Order.objects.get(pk=order_id)
        except BrokerError as exc:
            logger.warning("cancel of %s failed: %s", order.client_order_id, exc.message)
            raise OrderStateError(f"The venue did not confirm the cancel: {exc.message}", code="cancel_failed") from exc
        applied = order_apply_state(order_id=order_id, state=state)
        _after_state(applied, broker)
        return applied


# --- the safety net (beat) ------------------------------------------------------------------------


def orders_resolve_stuck(*, limit: int = 500) -> dict[str, int]:
    """Find orders nobody is looking after and queue the right question:

    - UNKNOWN whose next check is due -> order_resolve;
    - SENDING for longer than ORDER_INFLIGHT_SECONDS (the worker died mid-send) -> order_resolve,
      which asks the venue (never resends);
    - NEW past its due time by ORDER_INFLIGHT_SECONDS (the send message was lost: a Redis restart
      without AOF, a process that died before sending inline) -> order_send again (the claim makes
      a duplicate harmless), or, older than ORDER_STALE_SECONDS, EXPIRED "not sent: stale".
    """
    now = timezone.now()
    inflight = timedelta(seconds=inflight_seconds())
    counts = {"resolve": 0, "send": 0, "expired": 0}
    # Overdue by a whole interval: the order's own resolve chain (task countdowns) was lost.
    due = Q(next_check_at__isnull=True) | Q(next_check_at__lte=now - timedelta(seconds=_resolve_interval()))
    for order_id in (
        Order.objects.filter(due, status=S.UNKNOWN).order_by("next_check_at", "pk").values_list("pk", flat=True)[:limit]
    ):
        _ask_later(order_id, _resolve_interval() * 2)  # until the task answers
        _enqueue_resolve(order_id)
        counts["resolve"] += 1
    for order_id in Order.objects.filter(status=S.SENDING, sent_at__lt=now - inflight).values_list("pk", flat=True)[
        :limit
    ]:
        _enqueue_resolve(order_id)
        counts["resolve"] += 1
    stale = timedelta(seconds=float(_setting("ORDER_STALE_SECONDS", 300)))
    lost = Order.objects.filter(status=S.NEW, created_at__lt=now - inflight).filter(
        Q(next_check_at__isnull=True) | Q(next_check_at__lt=now - inflight)
    )
    for order_id, created_at in lost.values_list("pk", "created_at")[:limit]:
        if created_at < now - stale:
            if _order_finish(
                order_id,
                (S.NEW,),
                status=S.EXPIRED,
                reason="Not sent: its send was lost and the order is too old to send now.",
                code="not_sent_stale",
            ):
                counts["expired"] += 1
            continue
        _transition(order_id, (S.NEW,), next_check_at=now)
        _enqueue_send(order_id)
        counts["send"] += 1
    return counts
