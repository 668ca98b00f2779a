"""Listings: a leader's running strategy deployment offered on the marketplace.

Life cycle (`Listing.Status`)::

    draft --submit (owner)--> pending --approve (staff)--> approved --suspend (staff, reason)--> suspended
                                      --reject (staff, reason)--> rejected                      |
    rejected --edit + submit (owner)--> pending             approved <--reinstate (staff)-------+

- Publishing (`listing_create`) takes one of the owner's own running (paper or live) deployments
  of kind ``strategy`` (a copy book is never listed), one listing per deployment. The currency is
  the deployment account's base currency; the description is Markdown rendered by ``markdown``
  and sanitised by ``nh3`` (an allow-list: scripts, event handlers and ``javascript:`` links go).
- Becoming a leader is a sensitive action (RELIABILITY 33): creating and submitting a listing
  need the second factor verified in the last SECOND_FACTOR_FRESH_SECONDS when the user has 2FA
  (``ReauthenticationRequired``, like ``deployment_start`` live). A user without 2FA may list a
  paper deployment (nobody's money moves with it: followers copy onto their own accounts, each
  with their own checks), but a live deployment needs 2FA set up and freshly verified.
- Submitting is refused while the deployment's strategy configuration is flagged by the
  look-ahead check (`strategy_assert_deployable`, the same check `deployment_start` makes).
- The owner edits a draft or rejected listing freely. On an approved (or pending) one the
  presentation (title, description, tags, asset class, risk, trade delay) changes in place, but a
  change of the terms a follower agreed to (pricing, minimum allocation) sends it back to
  pending for review. A suspended listing cannot be edited until staff reinstate it.
- Every transition is audited and announced to the owner as ``listing.status`` after commit.
  The ``stats_*`` columns are never written here (see ``services.track_record``).
"""

import logging
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import markdown
import nh3
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts.models import TradingAccount
from apps.audit.services import audit_record
from apps.common.broadcast import broadcast
from apps.common.errors import Conflict, NotFound, PermissionRefused, ReauthenticationRequired
from apps.common.errors import field_error as _field_error
from apps.marketplace.models import Listing
from apps.strategies.models import Deployment
from apps.users.models import User

logger = logging.getLogger(__name__)

TITLE_MAX = 120
DESCRIPTION_MAX = 20_000
TAGS_MAX = 8
TAG_MAX = 24
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9 +#.\-]*$")
MAX_MONEY = Decimal("1e12")
MAX_DELAY_MINUTES = 7 * 24 * 60
PERFORMANCE_FEE_MAX = Decimal(50)

EDITABLE_FREELY = (Listing.Status.DRAFT, Listing.Status.REJECTED)
SUBMITTABLE = (Listing.Status.DRAFT, Listing.Status.REJECTED)
# Changing these on a listing followers may already have agreed to sends it back to review.
TERMS = ("monthly_fee", "performance_fee_pct", "min_allocation")
UPDATABLE = (
    "title",
    "description",
    "tags",
    "asset_class",
    "risk_level",
    "min_allocation",
    "monthly_fee",
    "performance_fee_pct",
    "trade_delay_minutes",
)

# Markdown's output elements an untrusted description may keep (nh3 drops the rest, with every
# attribute not listed: no on* handlers, no style; link schemes are http(s) and mailto only).
ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}


class ListingStateError(Conflict):
    """The listing is not in a state that allows this."""

    default_code = "listing_state"


# --- input --------------------------------------------------------------------------------------


def description_render(text: str) -> str:
    """Markdown -> HTML -> nh3 allow-list. Raw HTML in the Markdown is escaped by nh3's cleaning
    (disallowed tags are removed with their script/style content); links get rel=noopener."""
    html = markdown.markdown(text or "", extensions=["tables", "sane_lists"], output_format="html")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def _title(value: Any) -> str:
    title = " ".join(str(value or "").split())
    if not title:
        raise _field_error("Give the listing a title.", "title")
    if len(title) > TITLE_MAX:
        raise _field_error(f"Keep the title under {TITLE_MAX} characters.", "title")
    return title


def _description(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) > DESCRIPTION_MAX:
        raise _field_error(f"Keep the description under {DESCRIPTION_MAX:,} characters.", "description")
    return text


def tags_clean(value: Any) -> list[str]:
    """A list (or a comma-separated string) of short lowercase tags, deduplicated, in order."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise _field_error("Tags are a list of short words.", "tags")
    tags: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _field_error("Each tag is a short word.", "tags")
        tag = " ".join(item.strip().lower().split())
        if not tag:
            continue
        if len(tag) > TAG_MAX or not TAG_RE.match(tag):
            raise _field_error(
                f"'{tag[:40]}' is not a tag: up to {TAG_MAX} letters, digits, spaces and + # . -", "tags"
            )
        if tag not in tags:
            tags.append(tag)
    if len(tags) > TAGS_MAX:
        raise _field_error(f"At most {TAGS_MAX} tags.", "tags")
    return tags


def _choice(value: Any, choices: Any, field: str, label: str) -> str:
    if value not in choices.values:
        raise _field_error(f"Choose {label}: {', '.join(choices.values)}.", field)
    return str(value)


def _decimal(value: Any, field: str, label: str, *, maximum: Decimal = MAX_MONEY, places: int = 10) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError):
        raise _field_error(f"{label} must be a number.", field) from None
    if not number.is_finite() or number < 0:
        raise _field_error(f"{label} cannot be negative.", field)
    if number > maximum:
        raise _field_error(f"{label} must be at most {maximum:,}.", field)
    if number.as_tuple().exponent < -places:  # type: ignore[operator]
        raise _field_error(f"{label} has at most {places} decimal places.", field)
    return number


def _delay(value: Any) -> int:
    try:
        minutes = int(value or 0)
    except (TypeError, ValueError):
        raise _field_error("The trade delay is a whole number of minutes.", "trade_delay_minutes") from None
    if minutes < 0 or minutes > MAX_DELAY_MINUTES:
        raise _field_error(f"The trade delay is 0 to {MAX_DELAY_MINUTES} minutes (a week).", "trade_delay_minutes")
    return minutes


def _clean(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validated values of the UPDATABLE fields present in ``changes``."""
    cleaners: dict[str, Any] = {
        "title": _title,
        "description": _description,
        "tags": tags_clean,
        "asset_class": lambda v: _choice(v, Listing.AssetClass, "asset_class", "an asset class"),
        "risk_level": lambda v: _choice(v, Listing.Risk, "risk_level", "a risk level"),
        "min_allocation": lambda v: _decimal(v, "min_allocation", "The minimum allocation"),
        "monthly_fee": lambda v: _decimal(v, "monthly_fee", "The monthly fee"),
        "performance_fee_pct": lambda v: _decimal(
            v, "performance_fee_pct", "The performance fee", maximum=PERFORMANCE_FEE_MAX, places=2
        ),
        "trade_delay_minutes": _delay,
    }
    return {name: cleaners[name](value) for name, value in changes.items()}


def _deployment(owner: User, deployment_id: Any) -> Deployment:
    try:
        pk = int(deployment_id)
    except (TypeError, ValueError):
        raise _field_error("Choose one of your running deployments.", "deployment_id") from None
    deployment = (
        Deployment.objects.select_related("account").filter(owner=owner, pk=pk, kind=Deployment.Kind.STRATEGY).first()
    )
    if deployment is None:
        raise _field_error("Choose one of your running deployments.", "deployment_id")
    if not deployment.is_running:
        raise _field_error(
            f"This deployment is {deployment.get_status_display().lower()}: only a running (paper or live) "
            "deployment can be listed.",
            "deployment_id",
        )
    if Listing.objects.filter(deployment=deployment).exists():
        raise _field_error("This deployment is already listed.", "deployment_id", code="already_listed")
    return deployment


def _check_leader_factor(user: User, deployment: Deployment, request: HttpRequest | None) -> None:
    """RELIABILITY 33, "enabling copy-trading as a leader" (see the module docstring)."""
    from apps.users.second_factor import second_factor_is_fresh
    from apps.users.selectors import user_has_second_factor

    has_2fa = user_has_second_factor(user=user)
    is_live = deployment.account.kind != TradingAccount.Kind.PAPER
    if not has_2fa:
        if is_live:
            raise ReauthenticationRequired(
                "Listing a live deployment needs two-factor authentication: set it up first.",
                extra={"reauth_url": "/2fa/setup/"},
            )
        return
    if request is None or not second_factor_is_fresh(request, user):
        raise ReauthenticationRequired(
            "Publishing as a leader needs your second factor, verified in the last 15 minutes.",
            extra={"reauth_url": "/2fa/verify/"},
        )


# --- writes -------------------------------------------------------------------------------------


def listing_status_payload(listing: Listing) -> dict[str, Any]:
    return {
        "listing": listing.pk,
        "title": listing.title,
        "status": listing.status,
        "status_display": listing.get_status_display(),
        "reason": listing.status_reason,
    }


@transaction.atomic
def listing_create(
    *,
    owner: User,
    deployment_id: int,
    title: str,
    description: str = "",
    tags: Any = None,
    asset_class: str = Listing.AssetClass.CRYPTO,
    risk_level: str = Listing.Risk.MEDIUM,
    min_allocation: Any = 0,
    monthly_fee: Any = 0,
    performance_fee_pct: Any = 0,
    trade_delay_minutes: Any = 0,
    request: HttpRequest | None = None,
) -> Listing:
    """Publish one of the owner's running strategy deployments as a draft listing (see the module
    docstring for the second-factor rule). Nothing is public until staff approve it."""
    deployment = _deployment(owner, deployment_id)
    values = _clean(
        {
            "title": title,
            "description": description,
            "tags": tags,
            "asset_class": asset_class,
            "risk_level": risk_level,
            "min_allocation": min_allocation,
            "monthly_fee": monthly_fee,
            "performance_fee_pct": performance_fee_pct,
            "trade_delay_minutes": trade_delay_minutes,
        }
    )
    _check_leader_factor(owner, deployment, request)
    # Serialise two concurrent publishes of one deployment on its row (the OneToOne is the net).
    Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
    listing = Listing(
        owner=owner,
        deployment=deployment,
        currency=deployment.account.base_currency,
        is_live=deployment.account.kind != TradingAccount.Kind.PAPER,
        description_html=description_render(values["description"]),
        **values,
    )
    listing.full_clean()
    listing.save()
    audit_record(
        action="listing.created",
        actor=owner,
        target=listing,
        request=request,
        details={"deployment": deployment.pk, "title": listing.title},
    )
    transaction.on_commit(lambda: _queue_stats(listing.pk))
    return listing


def _queue_stats(listing_id: int) -> None:
    from apps.marketplace.tasks import listing_stats_refresh

    try:
        listing_stats_refresh.delay(listing_id)
    except Exception:  # the beat refresh catches up
        logger.exception("queueing the stats of listing %s failed", listing_id)


def _lock(listing: Listing) -> Listing:
    # of=self: only the listing row. With the joins PostgreSQL would also lock the deployment
    # before its account, the reverse of the house lock order a tick takes them in (deadlock).
    return (
        Listing.objects.select_for_update(of=("self",))
        .select_related("deployment__account", "owner")
        .get(pk=listing.pk)
    )


@transaction.atomic
def listing_update(*, listing: Listing, actor: User, **changes: Any) -> Listing:
    """Change a listing's presentation or terms (any of UPDATABLE; see the module docstring for
    what sends an approved listing back to review). Only the owner edits; not while suspended."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise _field_error(f"'{unknown[0]}' cannot be changed.", unknown[0])
    listing = _lock(listing)
    if listing.owner_id != actor.pk:
        raise NotFound("No such listing.")
    if listing.status == Listing.Status.SUSPENDED:
        raise ListingStateError("A suspended listing cannot be edited; it is under review by the platform.")
    values = _clean(changes)
    changed = sorted(name for name, value in values.items() if getattr(listing, name) != value)
    for name, value in values.items():
        setattr(listing, name, value)
    if "description" in values:
        listing.description_html = description_render(listing.description)
    previous = listing.status
    back_to_review = listing.status in (Listing.Status.APPROVED,) and bool(set(changed) & set(TERMS))
    if back_to_review:
        listing.status = Listing.Status.PENDING
        listing.status_reason = "Terms changed: back in review."
        listing.submitted_at = timezone.now()
    listing.full_clean()
    listing.save()
    audit_record(
        action="listing.updated",
        actor=actor,
        user=listing.owner,
        target=listing,
        details={"fields": changed, "from": previous, "to": listing.status},
    )
    if back_to_review:
        broadcast(listing.owner_id, "listing.status", listing_status_payload(listing))
    return listing


def _transition(
    listing: Listing,
    status: str,
    *,
    actor: Any,
    action: str,
    reason: str = "",
    request: HttpRequest | None = None,
    **fields: Any,
) -> Listing:
    previous = listing.status
    listing.status = status
    listing.status_reason = (reason or "").strip()[:500]
    for name, value in fields.items():
        setattr(listing, name, value)
    listing.save(update_fields=["status", "status_reason", "updated_at", *fields])
    audit_record(
        action=action,
        actor=actor,
        user=listing.owner,
        target=listing,
        request=request,
        details={"from": previous, "to": status, "reason": listing.status_reason},
    )
    broadcast(listing.owner_id, "listing.status", listing_status_payload(listing))
    if status in (Listing.Status.APPROVED, Listing.Status.REJECTED):
        from apps.marketplace.receivers import notify_listing_status

        listing_id = listing.pk
        transaction.on_commit(lambda: notify_listing_status(listing_id=listing_id))
    logger.info("listing %s %s -> %s (%s)", listing.pk, previous, status, listing.status_reason)
    return listing


@transaction.atomic
def listing_submit(*, listing: Listing, actor: User, request: HttpRequest | None = None) -> Listing:
    """Owner: send a draft or rejected listing to review. Refused while the deployment is not
    running, while its strategy is flagged by the look-ahead check, or without a fresh second
    factor (see the module docstring)."""
    from apps.strategies.services.deployments import deployment_strategy
    from apps.strategies.services.rule_sets import strategy_assert_deployable

    listing = _lock(listing)
    if listing.owner_id != actor.pk:
        raise NotFound("No such listing.")
    if listing.status not in SUBMITTABLE:
        raise ListingStateError(f"This listing is {listing.get_status_display().lower()}; it cannot be submitted.")
    deployment = listing.deployment
    if not deployment.is_running:
        raise ListingStateError(
            f"The deployment is {deployment.get_status_display().lower()}: start it before submitting the listing."
        )
    strategy_assert_deployable(strategy=deployment_strategy(deployment=deployment))
    _check_leader_factor(actor, deployment, request)
    return _transition(
        listing,
        Listing.Status.PENDING,
        actor=actor,
        action="listing.submitted",
        request=request,
        submitted_at=timezone.now(),
    )


def _staff(actor: Any) -> None:
    if not getattr(actor, "is_staff", False):
        raise PermissionRefused("Only staff review listings.")


def _reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise _field_error(f"Say why the listing is {what}: the owner reads it.", "reason")
    if len(reason) > 500:
        raise _field_error("Keep the reason under 500 characters.", "reason")
    return reason


@transaction.atomic
def listing_approve(*, listing: Listing, actor: User, request: HttpRequest | None = None) -> Listing:
    """Staff: a pending listing goes public."""
    _staff(actor)
    listing = _lock(listing)
    if listing.status != Listing.Status.PENDING:
        raise ListingStateError(f"Only a pending listing can be approved; this one is {listing.get_status_display()}.")
    return _transition(
        listing,
        Listing.Status.APPROVED,
        actor=actor,
        action="listing.approved",
        request=request,
        approved_at=timezone.now(),
        reviewed_by=actor,
    )


@transaction.atomic
def listing_reject(*, listing: Listing, actor: User, reason: str, request: HttpRequest | None = None) -> Listing:
    """Staff: a pending listing is sent back to its owner with the reason (required)."""
    _staff(actor)
    reason = _reason(reason, "rejected")
    listing = _lock(listing)
    if listing.status != Listing.Status.PENDING:
        raise ListingStateError(f"Only a pending listing can be rejected; this one is {listing.get_status_display()}.")
    return _transition(
        listing,
        Listing.Status.REJECTED,
        actor=actor,
        action="listing.rejected",
        reason=reason,
        request=request,
        reviewed_by=actor,
    )


@transaction.atomic
def listing_suspend(*, listing: Listing, actor: User, reason: str, request: HttpRequest | None = None) -> Listing:
    """Staff: take an approved listing off the marketplace (reason required). Existing
    subscriptions are the copy-trading side's business; the listing stops being shown."""
    _staff(actor)
    reason = _reason(reason, "suspended")
    listing = _lock(listing)
    if listing.status != Listing.Status.APPROVED:
        raise ListingStateError(
            f"Only an approved listing can be suspended; this one is {listing.get_status_display()}."
        )
    return _transition(
        listing,
        Listing.Status.SUSPENDED,
        actor=actor,
        action="listing.suspended",
        reason=reason,
        request=request,
        reviewed_by=actor,
    )


@transaction.atomic
def listing_reinstate(*, listing: Listing, actor: User, request: HttpRequest | None = None) -> Listing:
    """Staff: a suspended listing is approved again."""
    _staff(actor)
    listing = _lock(listing)
    if listing.status != Listing.Status.SUSPENDED:
        raise ListingStateError(
            f"Only a suspended listing can be reinstated; this one is {listing.get_status_display()}."
        )
    return _transition(
        listing,
        Listing.Status.APPROVED,
        actor=actor,
        action="listing.reinstated",
        request=request,
        approved_at=timezone.now(),
        reviewed_by=actor,
    )
