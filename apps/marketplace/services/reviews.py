"""Reviews of listings: a 1-5 rating and text, only by a current or past subscriber (any
Subscription of that user on that listing, whatever its state), one per user and listing
(saving again edits it), never by the listing's owner. Moderators hide or show a review with a
note; a hidden review is neither shown nor counted in the rating."""

from typing import Any

from django.db import transaction

from apps.audit.services import audit_record
from apps.common.errors import PermissionRefused
from apps.common.errors import field_error as _field_error
from apps.marketplace.models import Listing, Review, Subscription
from apps.users.models import User

TEXT_MAX = 4000


class NotASubscriberError(PermissionRefused):
    default_code = "not_a_subscriber"


def _rating(value: Any) -> int:
    try:
        rating = int(value)
    except (TypeError, ValueError):
        raise _field_error("Rate from 1 to 5 stars.", "rating") from None
    if str(value).strip() not in {str(rating), f"{rating}.0"} or not 1 <= rating <= 5:
        raise _field_error("Rate from 1 to 5 stars.", "rating")
    return rating


def _text(value: Any) -> str:
    text = str(value or "").strip()
    if len(text) > TEXT_MAX:
        raise _field_error(f"Keep the review under {TEXT_MAX:,} characters.", "text")
    return text


def review_can_write(*, user: User, listing: Listing) -> bool:
    return (
        user.is_authenticated
        and listing.owner_id != user.pk
        and Subscription.objects.filter(listing=listing, follower=user).exists()
    )


@transaction.atomic
def review_save(*, author: User, listing: Listing, rating: Any, text: Any = "") -> Review:
    """Create or edit the author's review of the listing. Refused (nothing stored) for someone
    who never subscribed to it, and for its owner."""
    rating_value = _rating(rating)
    text_value = _text(text)
    if listing.owner_id == author.pk:
        raise NotASubscriberError("You cannot review your own listing.")
    if not Subscription.objects.filter(listing=listing, follower=author).exists():
        raise NotASubscriberError("Only people who subscribe or have subscribed to this strategy can review it.")
    review = Review.objects.select_for_update().filter(listing=listing, author=author).first()
    created = review is None
    if review is None:
        review = Review(listing=listing, author=author, rating=rating_value, text=text_value)
    else:
        review.rating, review.text = rating_value, text_value
    review.full_clean(validate_unique=False)
    review.save()
    audit_record(
        action="review.created" if created else "review.updated",
        actor=author,
        target=review,
        details={"listing": listing.pk, "rating": rating_value},
    )
    return review


@transaction.atomic
def review_moderate(*, review: Review, actor: User, hidden: bool, note: str = "") -> Review:
    """Staff: hide or show a review, with a note kept beside it."""
    if not getattr(actor, "is_staff", False):
        raise PermissionRefused("Only staff moderate reviews.")
    review = Review.objects.select_for_update().get(pk=review.pk)
    review.is_hidden = hidden
    review.moderation_note = (note or "").strip()[:300]
    review.save(update_fields=["is_hidden", "moderation_note", "updated_at"])
    audit_record(
        action="review.hidden" if hidden else "review.shown",
        actor=actor,
        user=review.author,
        target=review,
        details={"listing": review.listing_id, "note": review.moderation_note},
    )
    return review
