"""Manual orders from the API and the portal, and the owner's cancel.

A manual order goes through the same ``order_submit`` (risk checks, rounding, the order row
written first) as a strategy's; TWAP and iceberg start an algo parent
(:mod:`apps.trades.services.algos`). ``Idempotency-Key``: the client order id becomes a hash of
the user and the key, so the same key finds the same order (a retried POST never places a
second one) and the same key for a different order is a Conflict.
"""

import hashlib
from decimal import Decimal
from typing import Any

from apps.accounts.selectors import account_get_for_user
from apps.common.errors import Conflict, ValidationFailed
from apps.marketdata.models import Instrument
from apps.trades.intents import OrderIntent
from apps.trades.models import Order

IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_client_id(*, user_id: int, key: str) -> str:
    """The client order id of a manual order POSTed with an Idempotency-Key: a hash of the user
    and the key (``tpk`` + 26 hex), so the same key from the same user finds the same order and
    two users' keys never meet."""
    digest = hashlib.blake2b(f"{user_id}|{key}".encode(), digest_size=13).hexdigest()
    return f"tpk{digest}"


def _same_request(order: Order, intent: OrderIntent) -> bool:
    """Whether a replayed key asks for the order it made (the stored quantity is rounded, so
    account, instrument, side and type are what is compared)."""
    return (
        order.account_id == intent.account_id
        and order.instrument_id == intent.instrument_id
        and order.side == intent.side
        and order.type == intent.type
    )


def manual_order_place(*, user: Any, data: dict[str, Any], idempotency_key: str | None = None) -> tuple[Order, bool]:
    """Place a manual order on one of ``user``'s accounts (validated ``data`` of
    OrderInputSerializer): a plain order through order_submit (same risk checks as a tick), or a
    TWAP / iceberg parent. Returns (order, created). Another user's account: NotFound."""
    from apps.trades.services.algos import iceberg_start, twap_start
    from apps.trades.services.orders import order_submit
    from apps.trades.services.positions import last_price

    account = account_get_for_user(user=user, account_id=data["account"])
    instrument = Instrument.objects.filter(pk=data["instrument"], is_active=True).first()
    if instrument is None:
        raise ValidationFailed(
            "No such instrument.", code="unknown_instrument", extra={"fields": {"instrument": ["No such instrument."]}}
        )
    client_order_id = ""
    if idempotency_key:
        key = idempotency_key.strip()
        if not 1 <= len(key) <= 255:
            raise ValidationFailed(
                f"The {IDEMPOTENCY_HEADER} header must be 1 to 255 characters.", code="invalid_idempotency_key"
            )
        client_order_id = idempotency_client_id(user_id=user.pk, key=key)
    reference = data.get("price") or data.get("stop_price") or last_price(instrument_id=instrument.pk)
    bracket = None
    if data.get("bracket"):
        bracket = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in data["bracket"].items()}
    intent = OrderIntent(
        account_id=account.pk,
        instrument_id=instrument.pk,
        side=data["side"],
        type=data["type"],
        client_order_id=client_order_id,
        source=Order.Source.MANUAL,
        leg="entry" if not data.get("reduce_only") else "reduce",
        quantity=data["quantity"],
        price=data.get("price"),
        stop_price=data.get("stop_price"),
        reduce_only=bool(data.get("reduce_only")),
        expected_price=reference,
        bracket=bracket,
        created_by_id=user.pk,
    )
    if client_order_id:
        existing = Order.objects.filter(account_id=account.pk, client_order_id=client_order_id).first()
        if existing is None and idempotency_key:
            # The key may have been used on another of the user's accounts.
            existing = Order.objects.filter(account__owner=user, client_order_id=client_order_id).first()
        if existing is not None:
            if not _same_request(existing, intent):
                raise Conflict(
                    f"This {IDEMPOTENCY_HEADER} was already used for a different order.", code="idempotency_key_reused"
                )
            return existing, False
    algo = data.get("algo")
    if algo:
        if algo["kind"] == Order.Algo.TWAP:
            order = twap_start(intent=intent, slices=algo["slices"], interval_seconds=algo["interval_seconds"])
        else:
            order = iceberg_start(intent=intent, visible=algo["visible"])
        return order, True
    return order_submit(intent=intent), True


def order_cancel_for_user(*, order: Order, actor: Any) -> Order:
    """Cancel one of the user's orders: an algo parent stops and cancels its children; anything
    else goes to execution's order_cancel (which refuses terminal orders with 409)."""
    from apps.trades.services.algos import ALGO_PARENTS, algo_cancel
    from apps.trades.services.orders import order_cancel

    if order.algo in ALGO_PARENTS and order.parent_id is None:
        return algo_cancel(order=order, actor=actor)
    order_cancel(order=order, actor=actor)
    return Order.objects.select_related("account", "deployment", "instrument").get(pk=order.pk)
