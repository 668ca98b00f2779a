"""Admin of the marketplace (see apps/marketplace/admin/__init__.py): listings and reviews.

Listings are reviewed here: the queue is the "pending" status filter; approve, reject, suspend
and reinstate are actions calling the listing services (audited, the owner told over the
websocket). Reject and suspend need a reason, typed in the "Reason" box beside the action menu
(a custom ``action_form``): without one the action refuses and changes nothing. The owner's
text, terms and the verified track record are read-only facts here.

Reviews are moderated with hide / show actions and an optional note (the same box).
"""

from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.common.errors import ApplicationError
from apps.marketplace.models import Listing, Review
from apps.marketplace.services import listings as services
from apps.marketplace.services import reviews as review_services
from apps.users.models import User


class ReasonActionForm(ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=500,
        label="Reason / note",
        help_text="Required to reject or suspend; the owner reads it.",
    )


def _run(
    admin_obj: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any], call: Callable[[Any], Any], done: str
) -> None:
    ok = 0
    for obj in queryset:
        try:
            call(obj)
        except ApplicationError as exc:
            admin_obj.message_user(request, f"#{obj.pk} “{obj}”: {exc.message}", messages.ERROR)
        else:
            ok += 1
    if ok:
        admin_obj.message_user(request, f"{ok} {done}.", messages.SUCCESS)


def _actor(request: HttpRequest) -> User:
    return cast(User, request.user)  # the admin site only lets staff in


def _reason(request: HttpRequest) -> str:
    return (request.POST.get("reason") or "").strip()


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    action_form = ReasonActionForm
    list_display = (
        "id",
        "title",
        "owner_email",
        "status",
        "is_live",
        "stats_return_pct",
        "stats_followers",
        "submitted_at",
        "approved_at",
    )
    list_filter = ("status", "is_live", "asset_class", "risk_level")
    search_fields = ("=id", "title", "owner__email")
    list_select_related = ("owner", "deployment", "reviewed_by")
    date_hierarchy = "created_at"
    ordering = ("-submitted_at", "-pk")
    actions = ("approve", "reject", "suspend", "reinstate", "refresh_stats")
    fields = (
        "owner",
        "deployment",
        "title",
        "description",
        "description_html",
        "tags",
        "asset_class",
        "risk_level",
        "currency",
        "min_allocation",
        "monthly_fee",
        "performance_fee_pct",
        "trade_delay_minutes",
        "status",
        "status_reason",
        "submitted_at",
        "approved_at",
        "reviewed_by",
        "is_live",
        "stats_return",
        "stats_max_drawdown",
        "stats_sharpe",
        "stats_trades",
        "stats_followers",
        "stats_capital",
        "stats_since",
        "stats_updated_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: Listing) -> str:
        return obj.owner.email

    @admin.display(description="Return", ordering="stats_return")
    def stats_return_pct(self, obj: Listing) -> str:
        return "-" if obj.stats_return is None else f"{obj.stats_return * 100:+.2f}%"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Approve selected pending listings")
    def approve(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        _run(self, request, queryset, lambda o: services.listing_approve(listing=o, actor=_actor(request)), "approved")

    @admin.action(description="Reject selected pending listings (reason required)")
    def reject(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        reason = _reason(request)
        if not reason:
            self.message_user(
                request, "Type the reason for rejecting in the Reason box; nothing changed.", messages.ERROR
            )
            return
        _run(
            self,
            request,
            queryset,
            lambda o: services.listing_reject(listing=o, actor=_actor(request), reason=reason),
            "rejected",
        )

    @admin.action(description="Suspend selected approved listings (reason required)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        reason = _reason(request)
        if not reason:
            self.message_user(
                request, "Type the reason for suspending in the Reason box; nothing changed.", messages.ERROR
            )
            return
        _run(
            self,
            request,
            queryset,
            lambda o: services.listing_suspend(listing=o, actor=_actor(request), reason=reason),
            "suspended",
        )

    @admin.action(description="Reinstate selected suspended listings")
    def reinstate(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        _run(
            self,
            request,
            queryset,
            lambda o: services.listing_reinstate(listing=o, actor=_actor(request)),
            "reinstated",
        )

    @admin.action(description="Recompute the track record now")
    def refresh_stats(self, request: HttpRequest, queryset: QuerySet[Listing]) -> None:
        from apps.marketplace.services.track_record import listing_stats_refresh

        _run(self, request, queryset, lambda o: listing_stats_refresh(listing_id=o.pk), "refreshed")


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    action_form = ReasonActionForm
    list_display = ("id", "listing", "author_email", "rating", "is_hidden", "moderation_note", "updated_at")
    list_filter = ("is_hidden", "rating")
    search_fields = ("=id", "=listing__id", "listing__title", "author__email", "text")
    list_select_related = ("listing", "author")
    actions = ("hide", "show")
    fields = ("listing", "author", "rating", "text", "is_hidden", "moderation_note", "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="Author", ordering="author__email")
    def author_email(self, obj: Review) -> str:
        return obj.author.email

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Hide selected reviews (note optional)")
    def hide(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        note = _reason(request)
        _run(
            self,
            request,
            queryset,
            lambda o: review_services.review_moderate(review=o, actor=_actor(request), hidden=True, note=note),
            "hidden",
        )

    @admin.action(description="Show selected reviews again")
    def show(self, request: HttpRequest, queryset: QuerySet[Review]) -> None:
        note = _reason(request)
        _run(
            self,
            request,
            queryset,
            lambda o: review_services.review_moderate(review=o, actor=_actor(request), hidden=False, note=note),
            "shown",
        )
