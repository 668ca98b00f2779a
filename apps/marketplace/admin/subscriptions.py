"""Admin of copy trading (see apps/marketplace/admin/__init__.py): subscriptions (read-mostly;
searchable by id, follower email and listing title; pause and resume only through the
subscription services, audited with the operator as actor), copied trades and fee entries
(facts, read-only; an accrued fee can be waived with a note through ``fee_waive``)."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.common.errors import ApplicationError
from apps.marketplace.models import CopyTrade, FeeEntry, Subscription
from apps.marketplace.services import fees as fee_services


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _subscription_services() -> Any:
    from apps.marketplace.services import subscriptions

    return subscriptions


@admin.register(Subscription)
class SubscriptionAdmin(_ReadOnly):
    list_display = (
        "id",
        "listing",
        "follower_email",
        "account",
        "status",
        "sizing_mode",
        "allocation",
        "show_identity",
        "started_at",
        "ended_at",
    )
    list_filter = ("status", "sizing_mode", "show_identity", "open_existing", "account__kind")
    search_fields = ("=id", "follower__email", "listing__title", "=listing__id")
    list_select_related = ("listing", "follower", "account")
    date_hierarchy = "started_at"
    actions = ["pause", "resume"]
    fields = (
        "listing",
        "follower",
        "account",
        "deployment",
        "status",
        "status_reason",
        "sizing_mode",
        "multiplier",
        "fixed_notional",
        "allocation",
        "max_loss",
        "max_position_notional",
        "max_price_deviation_pct",
        "open_existing",
        "show_identity",
        "high_water_mark",
        "started_at",
        "ended_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("marketplace.change_subscription"))

    @admin.display(description="Follower", ordering="follower__email")
    def follower_email(self, obj: Subscription) -> str:
        return obj.follower.email

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[Subscription], verb: str, call: Callable[[Subscription], Any]
    ) -> None:
        done = 0
        for subscription in queryset.select_related("listing", "follower", "account", "deployment"):
            try:
                call(subscription)
            except ApplicationError as exc:
                self.message_user(request, f"#{subscription.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"{verb} {done} subscription(s).", messages.SUCCESS)

    @admin.action(description="Pause copying for the selected subscriptions", permissions=["operate"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        reason = f"Paused by an operator ({request.user})."
        services = _subscription_services()
        self._apply(
            request,
            queryset.filter(status=Subscription.Status.ACTIVE),
            "Paused",
            lambda s: services.subscription_pause(subscription=s, actor=request.user, reason=reason),
        )

    @admin.action(description="Resume copying (paper accounts; live ones need their follower)", permissions=["operate"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        services = _subscription_services()
        self._apply(
            request,
            queryset.filter(status__in=(Subscription.Status.PAUSED, Subscription.Status.STOPPED)),
            "Resumed",
            lambda s: services.subscription_resume(subscription=s, actor=request.user, request=request),
        )


@admin.register(CopyTrade)
class CopyTradeAdmin(_ReadOnly):
    list_display = (
        "id",
        "subscription",
        "leader_fill",
        "status",
        "code",
        "side",
        "leader_quantity",
        "leader_price",
        "quantity",
        "order",
        "created_at",
    )
    list_filter = ("status", "code", "side")
    search_fields = ("=id", "=subscription__id", "=leader_fill__id", "=order__id", "subscription__follower__email")
    list_select_related = ("subscription", "subscription__listing", "subscription__account", "leader_fill", "order")
    date_hierarchy = "created_at"
    fields = (
        "subscription",
        "leader_fill",
        "order",
        "status",
        "code",
        "reason",
        "side",
        "leader_quantity",
        "leader_price",
        "quantity",
        "reference_price",
        "created_at",
    )
    readonly_fields = fields


class WaiveForm(ActionForm):
    note = forms.CharField(required=False, max_length=180, label="Note (for waive)")


@admin.register(FeeEntry)
class FeeEntryAdmin(_ReadOnly):
    list_display = (
        "id",
        "subscription",
        "follower_email",
        "kind",
        "period_start",
        "amount",
        "currency",
        "status",
        "memo",
        "created_at",
    )
    list_filter = ("kind", "status", "currency")
    search_fields = ("=id", "=subscription__id", "subscription__follower__email", "subscription__listing__title")
    list_select_related = ("subscription", "subscription__listing", "subscription__follower", "subscription__account")
    date_hierarchy = "period_start"
    action_form = WaiveForm
    actions = ["waive"]
    fields = (
        "subscription",
        "kind",
        "period_start",
        "period_end",
        "amount",
        "currency",
        "equity",
        "high_water_mark_before",
        "high_water_mark_after",
        "status",
        "memo",
        "created_at",
    )
    readonly_fields = fields

    def has_waive_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("marketplace.change_feeentry"))

    @admin.display(description="Follower", ordering="subscription__follower__email")
    def follower_email(self, obj: FeeEntry) -> str:
        return obj.subscription.follower.email

    @admin.action(description="Waive the selected accrued fees (write the note first)", permissions=["waive"])
    def waive(self, request: HttpRequest, queryset: QuerySet[FeeEntry]) -> None:
        note = str(request.POST.get("note", "")).strip()
        if not note:
            self.message_user(
                request, "Write a note saying why the fees are waived: nothing was waived.", messages.ERROR
            )
            return
        done = 0
        for entry in queryset:
            try:
                fee_services.fee_waive(entry=entry, actor=request.user, note=note)
            except ApplicationError as exc:
                self.message_user(request, f"#{entry.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"Waived {done} fee(s).", messages.SUCCESS)
