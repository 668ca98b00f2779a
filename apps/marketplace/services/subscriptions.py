"""Subscriptions: a follower's trading account copying a listing.

A subscription owns a copy book: a Deployment of kind ``copy`` on the follower's account (its
capital is the allocation, its risk limits the follower's maximum position), never ticked. The
fan-out (``services.fanout``) books every copied order to it, so the execution service, the risk
checks, the per-deployment ledger and P&L and the kill switches treat copies like a strategy's
own orders. Pausing a subscription pauses its book (a copy in flight is refused by the risk check
under the deployment lock); unsubscribing stops it, closing the copied positions or keeping them.

Refusals (ValidationFailed with ``extra["fields"]`` naming the field, nothing written): someone else's account or a
disabled one, one's own listing, a listing not open to subscribers, an allocation below the
listing's minimum or above what the account has free (less what its other subscriptions
already hold), a currency or venue the account cannot trade, a second open subscription of
the same account. A live account needs a second factor verified in the last 15 minutes.
"""

import logging
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.models import PaperBalance, TradingAccount
from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict, ReauthenticationRequired, ValidationFailed
from apps.common.errors import field_error as _field_error
from apps.marketplace.models import Listing, Subscription
from apps.strategies.models import Deployment
from apps.users.models import User

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
SIZING_MODES = tuple(Subscription.Sizing.values)
OPEN_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.PAUSED, Subscription.Status.STOPPED)
COPY_STRATEGY_KEY = "copy"


class SubscriptionStateError(Conflict):
    """The subscription is not in a state that allows this (resuming an ended one...)."""


def _amount(value: Any, field: str, *, required: bool = False, allow_zero: bool = False) -> Decimal | None:
    """A positive Decimal from a form / JSON value; None when empty and not required."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _field_error("This field is required.", field, "required")
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise _field_error("Enter a number.", field) from None
    if not amount.is_finite() or amount < 0 or (amount == 0 and not allow_zero):
        raise _field_error("Enter a positive number.", field)
    if amount.as_tuple().exponent < -10 or amount >= Decimal(10) ** 17:  # type: ignore[operator]
        raise _field_error("That number has too many digits.", field)
    return amount


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def account_free_balance(*, account: TradingAccount, currency: str) -> Decimal | None:
    """What the account has free in ``currency``: the paper venue's balance, or the last
    connection test's for other accounts (None: not known yet)."""
    if account.kind == TradingAccount.Kind.PAPER:
        free = PaperBalance.objects.filter(account=account, asset=currency).values_list("free", flat=True).first()
        return free if free is not None else ZERO
    from apps.trades.risk.checks import _balance_free

    return _balance_free(account, currency)


def _limits(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validated sizing and limits from ``data`` (any subset of the fields)."""
    clean: dict[str, Any] = {}
    if "sizing_mode" in data:
        mode = str(data["sizing_mode"] or "").strip()
        if mode not in SIZING_MODES:
            raise _field_error(f"Sizing is one of: {', '.join(SIZING_MODES)}.", "sizing_mode")
        clean["sizing_mode"] = mode
    if "multiplier" in data:
        multiplier = _amount(data["multiplier"], "multiplier")
        if multiplier is not None and multiplier > 100:
            raise _field_error("The multiplier is at most 100.", "multiplier")
        clean["multiplier"] = multiplier if multiplier is not None else Decimal(1)
    for name in ("fixed_notional", "max_loss", "max_position_notional"):
        if name in data:
            clean[name] = _amount(data[name], name)
    if "max_price_deviation_pct" in data:
        deviation = _amount(data["max_price_deviation_pct"], "max_price_deviation_pct")
        if deviation is not None and deviation > 100:
            raise _field_error("The price-deviation guard is a percentage up to 100.", "max_price_deviation_pct")
        clean["max_price_deviation_pct"] = deviation
    for name in ("open_existing", "show_identity"):
        if name in data:
            clean[name] = _bool(data[name])
    return clean


def _check_sizing(values: Mapping[str, Any]) -> None:
    if values.get("sizing_mode") == Subscription.Sizing.FIXED_NOTIONAL and not values.get("fixed_notional"):
        raise _field_error("Fixed-notional sizing needs the notional per trade.", "fixed_notional", "required")
    fixed, allocation = values.get("fixed_notional"), values.get("allocation")
    if fixed and allocation and fixed > allocation:
        raise _field_error("The notional per trade cannot be above the allocation.", "fixed_notional")


def _follower_account(follower: User, account_id: Any) -> TradingAccount:
    try:
        pk = int(account_id)
    except (TypeError, ValueError):
        raise _field_error("Choose one of your trading accounts.", "account_id", "required") from None
    account = TradingAccount.objects.filter(pk=pk, owner=follower).first()
    if account is None:  # someone else's or missing: the same answer
        raise _field_error("No such trading account of yours.", "account_id", "not_found")
    if account.status != TradingAccount.Status.ACTIVE:
        raise _field_error(
            f"The account '{account.name}' needs attention first: {account.get_status_display().lower()}.",
            "account_id",
            "account_inactive",
        )
    return account


def _check_listing(listing: Listing, follower: User) -> None:
    if listing.owner_id == follower.pk:
        raise _field_error("You cannot subscribe to your own listing.", "listing", "own_listing")
    if listing.status != Listing.Status.APPROVED:
        raise _field_error(
            f"This listing is not open to subscribers ({listing.get_status_display().lower()}).",
            "listing",
            "listing_not_approved",
        )


def _check_account_fits(account: TradingAccount, listing: Listing) -> None:
    if account.base_currency.upper() != listing.currency.upper():
        raise _field_error(
            f"This strategy trades in {listing.currency}; the account '{account.name}' counts in "
            f"{account.base_currency}.",
            "account_id",
            "currency_mismatch",
        )
    if account.kind != TradingAccount.Kind.PAPER:
        venue = "ib" if account.kind == TradingAccount.Kind.IB else account.exchange_id
        elsewhere = sorted({i.venue for i in listing.deployment.instruments.all() if i.venue not in (venue, "demo")})
        if elsewhere:
            raise _field_error(
                f"This strategy trades on {', '.join(elsewhere)}; the account '{account.name}' is on {venue}.",
                "account_id",
                "venue_mismatch",
            )


def _check_allocation(account: TradingAccount, listing: Listing, allocation: Decimal, *, exclude: int | None) -> None:
    if allocation < listing.min_allocation:
        raise _field_error(
            f"The minimum allocation is {listing.min_allocation.normalize():f} {listing.currency}.",
            "allocation",
            "below_minimum",
        )
    free = account_free_balance(account=account, currency=listing.currency)
    if free is None:
        raise _field_error(
            f"The balance of '{account.name}' is not known yet: test its connection first.",
            "allocation",
            "balance_unknown",
        )
    held = (
        Subscription.objects.filter(account=account, status__in=OPEN_STATUSES)
        .exclude(pk=exclude or 0)
        .aggregate(total=Sum("allocation"))["total"]
        or ZERO
    )
    if allocation > free - held:
        room = max(free - held, ZERO)
        raise _field_error(
            f"The allocation is above what the account has free: {room.normalize():f} {listing.currency}"
            + (" after its other subscriptions." if held else "."),
            "allocation",
            "above_balance",
        )


def _check_allocation_change(subscription: Subscription, allocation: Decimal) -> None:
    """A new allocation: at least the listing's minimum; an increase must be free on the account
    (its copies' own purchases already left ``free``, so only the increase is checked)."""
    listing = subscription.listing
    if allocation < listing.min_allocation:
        raise _field_error(
            f"The minimum allocation is {listing.min_allocation.normalize():f} {listing.currency}.",
            "allocation",
            "below_minimum",
        )
    increase = allocation - subscription.allocation
    if increase <= 0:
        return
    account = subscription.account
    free = account_free_balance(account=account, currency=listing.currency)
    if free is None:
        raise _field_error(
            f"The balance of '{account.name}' is not known yet: test its connection first.",
            "allocation",
            "balance_unknown",
        )
    others = (
        Subscription.objects.filter(account=account, status__in=OPEN_STATUSES)
        .exclude(pk=subscription.pk)
        .aggregate(total=Sum("allocation"))["total"]
        or ZERO
    )
    room = max(free - others, ZERO)
    if increase > room:
        raise _field_error(
            f"The allocation can grow by at most {room.normalize():f} {listing.currency}: that is what the "
            "account has free.",
            "allocation",
            "above_balance",
        )


def _check_second_factor(account: TradingAccount, follower: User, request: HttpRequest | None) -> None:
    if account.kind == TradingAccount.Kind.PAPER:
        return
    from apps.users.second_factor import second_factor_is_fresh

    if request is None or not second_factor_is_fresh(request, follower):
        raise ReauthenticationRequired(
            "Copying with real money needs your second factor, verified in the last 15 minutes.",
            extra={"reauth_url": "/2fa/verify/"},
        )


def _copy_risk(values: Mapping[str, Any]) -> dict[str, Any]:
    risk: dict[str, Any] = {}
    if values.get("max_position_notional"):
        risk["max_position_notional"] = str(values["max_position_notional"])
    return risk


@transaction.atomic
def subscription_create(
    *,
    follower: User,
    listing: Listing,
    account_id: Any,
    allocation: Any,
    sizing_mode: str = Subscription.Sizing.EQUITY_RATIO,
    multiplier: Any = Decimal(1),
    fixed_notional: Any = None,
    max_loss: Any = None,
    max_position_notional: Any = None,
    max_price_deviation_pct: Any = None,
    open_existing: Any = False,
    show_identity: Any = False,
    request: HttpRequest | None = None,
) -> Subscription:
    """Subscribe ``account_id`` (the follower's) to ``listing`` (module docstring for the
    refusals). Creates the copy book and, with ``open_existing``, queues the copy of the
    leader's current positions after commit."""
    _check_listing(listing, follower)
    account = _follower_account(follower, account_id)
    _check_account_fits(account, listing)
    values = _limits(
        {
            "sizing_mode": sizing_mode,
            "multiplier": multiplier,
            "fixed_notional": fixed_notional,
            "max_loss": max_loss,
            "max_position_notional": max_position_notional,
            "max_price_deviation_pct": max_price_deviation_pct,
            "open_existing": open_existing,
            "show_identity": show_identity,
        }
    )
    values["allocation"] = _amount(allocation, "allocation", required=True)
    _check_sizing(values)
    # The account lock orders this against another subscription of the same account and the
    # fan-out writing to it; the listing row keeps its status while we read it.
    account = TradingAccount.objects.select_for_update().get(pk=account.pk)
    # of=self: the listing row only (with the join, PostgreSQL would lock the leader's
    # deployment too, before its account: the reverse of the house lock order).
    listing = Listing.objects.select_for_update(of=("self",)).select_related("deployment").get(pk=listing.pk)
    _check_listing(listing, follower)
    if Subscription.objects.filter(listing=listing, account=account, status__in=OPEN_STATUSES).exists():
        raise _field_error("This account already copies this listing.", "account_id", "already_subscribed")
    _check_allocation(account, listing, values["allocation"], exclude=None)
    _check_second_factor(account, follower, request)
    now = timezone.now()
    leader = listing.deployment
    book = Deployment.objects.create(
        owner=follower,
        account=account,
        name=f"Copy: {listing.title}"[:120],
        kind=Deployment.Kind.COPY,
        strategy_key=COPY_STRATEGY_KEY,
        params={},
        timeframe=leader.timeframe,
        capital=values["allocation"],
        risk=_copy_risk(values),
        status=Deployment.Status.PAPER if account.kind == TradingAccount.Kind.PAPER else Deployment.Status.LIVE,
        started_at=now,
    )
    book.instruments.set(leader.instruments.all())
    subscription = Subscription.objects.create(
        listing=listing,
        follower=follower,
        account=account,
        deployment=book,
        started_at=now,
        copying_since=now,
        high_water_mark=values["allocation"],
        monthly_fee=listing.monthly_fee,
        performance_fee_pct=listing.performance_fee_pct,
        **values,
    )
    audit_record(
        action="subscription.created",
        actor=follower,
        target=subscription,
        request=request,
        details={
            "listing": listing.pk,
            "account": account.pk,
            "allocation": str(values["allocation"]),
            "sizing_mode": values["sizing_mode"],
        },
    )
    _after_change(subscription)
    from apps.marketplace.receivers import notify_new_follower

    new_id = subscription.pk
    transaction.on_commit(lambda: notify_new_follower(subscription_id=new_id))
    if subscription.open_existing:
        from apps.marketplace import tasks

        subscription_id = subscription.pk
        transaction.on_commit(lambda: tasks.copy_open_existing.delay(subscription_id))
    logger.info("subscription %s: account %s copies listing %s", subscription.pk, account.pk, listing.pk)
    return subscription


def _after_change(subscription: Subscription) -> None:
    """After commit: the follower's pages, and the listing's follower count and capital."""
    from apps.marketplace import tasks
    from apps.marketplace.services.events import subscription_payload

    broadcast(subscription.follower_id, "copy.subscription", subscription_payload(subscription))
    listing_id = subscription.listing_id
    transaction.on_commit(lambda: tasks.listing_stats_refresh.delay(listing_id))


def _lock(subscription: Subscription) -> Subscription:
    """Lock the account, the copy book, then the subscription (the house lock order)."""
    TradingAccount.objects.select_for_update().filter(pk=subscription.account_id).exists()
    Deployment.objects.select_for_update().filter(pk=subscription.deployment_id).exists()
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("listing", "account", "deployment", "follower")
        .get(pk=subscription.pk)
    )


def _set_status(
    subscription: Subscription, status: str, *, reason: str, actor: Any, action: str, **details: Any
) -> None:
    previous = subscription.status
    subscription.status = status
    subscription.status_reason = reason[:500]
    fields = ["status", "status_reason", "updated_at"]
    if status == Subscription.Status.ENDED:
        subscription.ended_at = timezone.now()
        fields.append("ended_at")
    subscription.save(update_fields=fields)
    audit_record(
        action=action,
        actor=actor,
        user=subscription.follower,
        target=subscription,
        details={"from": previous, "to": status, "reason": subscription.status_reason, **details},
    )
    _after_change(subscription)


@transaction.atomic
def subscription_update(*, subscription: Subscription, actor: Any, **changes: Any) -> Subscription:
    """Change the allocation, sizing, limits or identity setting of an open subscription."""
    allowed = {
        "allocation",
        "sizing_mode",
        "multiplier",
        "fixed_notional",
        "max_loss",
        "max_position_notional",
        "max_price_deviation_pct",
        "show_identity",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationFailed(f"These cannot be changed: {', '.join(sorted(unknown))}.", code="read_only")
    subscription = _lock(subscription)
    if subscription.status == Subscription.Status.ENDED:
        raise SubscriptionStateError("This subscription has ended; subscribe again instead.")
    values = _limits(changes)
    if "allocation" in changes:
        values["allocation"] = _amount(changes["allocation"], "allocation", required=True)
        _check_allocation_change(subscription, values["allocation"])
    merged = {
        "sizing_mode": subscription.sizing_mode,
        "fixed_notional": subscription.fixed_notional,
        "allocation": subscription.allocation,
        **values,
    }
    _check_sizing(merged)
    if "allocation" in values and subscription.high_water_mark is not None:
        # Money added or taken out is not performance: the mark moves with the allocation.
        subscription.high_water_mark += values["allocation"] - subscription.allocation
    for name, value in values.items():
        setattr(subscription, name, value)
    subscription.save()
    book = subscription.deployment
    book.capital = subscription.allocation
    book.risk = _copy_risk({"max_position_notional": subscription.max_position_notional})
    book.save(update_fields=["capital", "risk", "updated_at"])
    audit_record(
        action="subscription.updated",
        actor=actor,
        user=subscription.follower,
        target=subscription,
        details={k: str(v) for k, v in values.items()},
    )
    _after_change(subscription)
    return subscription


@transaction.atomic
def subscription_pause(*, subscription: Subscription, actor: Any, reason: str = "") -> Subscription:
    """Stop copying new trades until resumed; copied positions stay as they are."""
    from apps.strategies.services.deployments import deployment_pause

    subscription = _lock(subscription)
    if subscription.status == Subscription.Status.PAUSED:
        return subscription
    if subscription.status != Subscription.Status.ACTIVE:
        raise SubscriptionStateError(f"This subscription is {subscription.get_status_display().lower()}.")
    book = subscription.deployment
    if book.status in Deployment.RUNNING:
        deployment_pause(deployment=book, reason=reason or "Copying paused.", actor=actor)
    _set_status(
        subscription,
        Subscription.Status.PAUSED,
        reason=reason or "Paused by the follower.",
        actor=actor,
        action="subscription.paused",
    )
    return subscription


@transaction.atomic
def subscription_resume(*, subscription: Subscription, actor: Any, request: HttpRequest | None = None) -> Subscription:
    """Copy again from the next leader fill (trades missed meanwhile are not copied after the
    fact). A live account needs a fresh second factor; the listing must still be approved."""
    from apps.strategies.services.deployments import deployment_resume

    subscription = _lock(subscription)
    if subscription.status == Subscription.Status.ACTIVE:
        return subscription
    if subscription.status not in (Subscription.Status.PAUSED, Subscription.Status.STOPPED):
        raise SubscriptionStateError(f"This subscription is {subscription.get_status_display().lower()}.")
    if subscription.listing.status != Listing.Status.APPROVED:
        raise SubscriptionStateError(
            f"The listing is {subscription.listing.get_status_display().lower()}; copying cannot resume."
        )
    if subscription.account.status != TradingAccount.Status.ACTIVE:
        raise SubscriptionStateError(f"The account '{subscription.account.name}' needs reconnecting first.")
    _check_second_factor(subscription.account, subscription.follower, request)
    book = subscription.deployment
    if book.status not in Deployment.RUNNING:
        deployment_resume(deployment=book, request=request, actor=actor)
    # Fills from now on are copied; what the leader traded while paused is not copied late.
    subscription.copying_since = timezone.now()
    subscription.save(update_fields=["copying_since", "updated_at"])
    _set_status(subscription, Subscription.Status.ACTIVE, reason="", actor=actor, action="subscription.resumed")
    return subscription


@transaction.atomic
def subscription_unsubscribe(*, subscription: Subscription, actor: Any, close_positions: bool) -> Subscription:
    """End the subscription for good: copying stops and the copy book stops, closing the
    copied positions at market (reduce-only, through the execution service) or keeping them
    for the follower to manage. Fees accrued so far stay in the fee ledger."""
    from apps.strategies.services.deployments import deployment_stop

    subscription = _lock(subscription)
    if subscription.status == Subscription.Status.ENDED:
        return subscription
    book = subscription.deployment
    if book.status != Deployment.Status.STOPPED:
        deployment_stop(deployment=book, close_positions=False, actor=actor)
    if close_positions:
        _close_copied_positions(book, reason="Unsubscribed: copied positions closed.")
    _set_status(
        subscription,
        Subscription.Status.ENDED,
        reason="Unsubscribed, positions closed." if close_positions else "Unsubscribed, positions kept.",
        actor=actor,
        action="subscription.ended",
        close_positions=close_positions,
    )
    return subscription


@transaction.atomic
def subscription_stop(*, subscription: Subscription, reason: str, code: str, close_positions: bool) -> Subscription:
    """Stop copying on the platform's initiative (the follower's maximum loss reached, a revoked
    key): the subscription stays (the follower may resume), the copy book is paused and, with
    ``close_positions`` (the maximum loss), the copied positions are closed at market."""
    from apps.strategies.services.deployments import deployment_pause

    subscription = _lock(subscription)
    if subscription.status in (Subscription.Status.STOPPED, Subscription.Status.ENDED):
        return subscription
    book = subscription.deployment
    if book.status in Deployment.RUNNING:
        deployment_pause(deployment=book, reason=reason, actor=None)
    _set_status(
        subscription, Subscription.Status.STOPPED, reason=reason, actor=None, action="subscription.stopped", code=code
    )
    if close_positions:
        _close_copied_positions(book, reason=reason)
    return subscription


def _close_copied_positions(book: Deployment, *, reason: str) -> None:
    """Close the copy book's positions with reduce-only market orders of source ``copy`` (on the
    paper venue they fill at once, as the copies did)."""
    from apps.trades.models import Position
    from apps.trades.services.positions import position_close

    for position in Position.objects.filter(deployment=book).exclude(quantity=0):
        position_close(
            account_id=book.account_id,
            deployment_id=book.pk,
            instrument_id=position.instrument_id,
            reason=reason,
            source="copy",
        )
