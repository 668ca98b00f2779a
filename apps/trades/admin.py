"""The operations console for trading: orders, fills, positions, the ledger and risk events as
read-only facts (search by client order id and owner e-mail; filters by status, source, kind),
and the platform kill switch.

Changes go through actions that call the services: on orders "Cancel" (cancels always go
through) and "Resolve now" (queue ``order_resolve``: ask the venue about the order, never send
it again); on the platform switch "Halt all trading", "Reduce only" and "Resume trading"
(``apps.trades.risk.switches.platform_switch_set``: audited, every owner told, and on halt every
open order cancelled). Account kill switches are actions of the trading accounts console.
"""

import json
from typing import Any, ClassVar, cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.common.errors import ApplicationError
from apps.trades.models import Fill, LedgerEntry, Order, PlatformSwitch, Position, RiskEvent
from apps.users.models import User


def _pretty(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Facts: nothing is added, changed or deleted here."""

    list_select_related: ClassVar[Any] = ("account__owner", "instrument")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        opts = self.model._meta
        return bool(request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))

    @admin.display(description="Owner", ordering="account__owner__email")
    def owner_email(self, obj: Any) -> str:
        return str(obj.account.owner.email)


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "client_order_id",
        "owner_email",
        "account",
        "deployment",
        "symbol",
        "side",
        "type",
        "quantity",
        "price",
        "status",
        "filled_quantity",
        "source",
        "created_at",
    )
    list_filter = ("status", "source", "type", "side", "algo", "account__kind")
    list_select_related = ("account__owner", "deployment", "instrument")
    search_fields = ("=client_order_id", "=exchange_order_id", "account__owner__email", "symbol")
    date_hierarchy = "created_at"
    readonly_fields = ("algo_params_shown", "bracket_shown", "sizing_shown")
    exclude = ("algo_params", "bracket", "sizing")
    actions = ["cancel_orders", "resolve_orders"]

    @admin.display(description="Algo params")
    def algo_params_shown(self, obj: Order) -> SafeString:
        return _pretty(obj.algo_params)

    @admin.display(description="Bracket")
    def bracket_shown(self, obj: Order) -> SafeString:
        return _pretty(obj.bracket)

    @admin.display(description="Sizing")
    def sizing_shown(self, obj: Order) -> SafeString:
        return _pretty(obj.sizing)

    @admin.action(description="Cancel the selected orders", permissions=["operate"])
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        from apps.trades.services.manual import order_cancel_for_user

        done = 0
        for order in queryset.exclude(status__in=Order.TERMINAL_STATUSES):
            try:
                order_cancel_for_user(order=order, actor=cast(User, request.user))
            except ApplicationError as exc:
                self.message_user(request, f"{order.client_order_id}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"Asked to cancel {done} order(s).", messages.SUCCESS)

    @admin.action(description="Resolve now (ask the venue; never resends)", permissions=["operate"])
    def resolve_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        from apps.trades import tasks

        ids = list(queryset.exclude(status__in=Order.TERMINAL_STATUSES).values_list("pk", flat=True))
        for order_id in ids:
            tasks.order_resolve.delay(order_id)
        self.message_user(request, f"Queued {len(ids)} order(s) to be resolved.", messages.SUCCESS)


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "trade_id",
        "client_order_id",
        "owner_email",
        "deployment",
        "side",
        "quantity",
        "price",
        "fee",
        "slippage_bps",
        "realized_pnl",
        "filled_at",
    )
    list_filter = ("side", "is_maker", "account__kind")
    list_select_related = ("account__owner", "order", "deployment", "instrument")
    search_fields = ("=order__client_order_id", "=trade_id", "account__owner__email")
    date_hierarchy = "filled_at"

    @admin.display(description="Client order id", ordering="order__client_order_id")
    def client_order_id(self, obj: Fill) -> str:
        return obj.order.client_order_id


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "owner_email",
        "account",
        "deployment",
        "symbol",
        "quantity",
        "average_price",
        "realized_pnl",
        "stop_price",
        "target_price",
        "updated_at",
    )
    list_filter = ("account__kind",)
    list_select_related = ("account__owner", "deployment", "instrument")
    search_fields = ("symbol", "account__owner__email", "=account__id")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner_email", "account", "deployment", "kind", "asset", "amount", "memo", "created_at")
    list_filter = ("kind",)
    list_select_related = ("account__owner", "deployment")
    search_fields = ("account__owner__email", "=fill__order__client_order_id", "memo")
    date_hierarchy = "created_at"


@admin.register(RiskEvent)
class RiskEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "owner_email", "account", "deployment", "kind", "code", "message")
    list_filter = ("kind", "code")
    list_select_related = ("account__owner", "deployment", "order")
    search_fields = ("=order__client_order_id", "account__owner__email", "code", "message")
    date_hierarchy = "created_at"
    readonly_fields = ("details_shown",)
    exclude = ("details",)

    @admin.display(description="Details")
    def details_shown(self, obj: RiskEvent) -> SafeString:
        return _pretty(obj.details)


@admin.register(PlatformSwitch)
class PlatformSwitchAdmin(admin.ModelAdmin):
    """The platform kill switch: one row, changed only through its actions (audited)."""

    list_display = ("__str__", "mode", "reason", "changed_by", "changed_at")
    list_select_related = ("changed_by",)
    actions = ["halt_all", "reduce_only", "resume"]
    readonly_fields = ("mode", "reason", "changed_by", "changed_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PlatformSwitch]:
        PlatformSwitch.objects.get_or_create(pk=1)
        return super().get_queryset(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("trades.change_platformswitch"))

    def _set(self, request: HttpRequest, mode: str, label: str) -> None:
        from apps.trades.risk.switches import platform_switch_set

        reason = f"{label} by {request.user.email} from the admin"  # type: ignore[union-attr]
        platform_switch_set(mode=mode, reason=reason, actor=request.user)
        self.message_user(request, f"Platform: {label}.", messages.WARNING if mode != "active" else messages.SUCCESS)

    @admin.action(description="Halt all trading (cancel every open order)", permissions=["operate"])
    def halt_all(self, request: HttpRequest, queryset: QuerySet[PlatformSwitch]) -> None:
        self._set(request, "halted", "trading halted")

    @admin.action(description="Reduce only (exits allowed, no new exposure)", permissions=["operate"])
    def reduce_only(self, request: HttpRequest, queryset: QuerySet[PlatformSwitch]) -> None:
        self._set(request, "reduce_only", "reduce-only mode")

    @admin.action(description="Resume trading", permissions=["operate"])
    def resume(self, request: HttpRequest, queryset: QuerySet[PlatformSwitch]) -> None:
        self._set(request, "active", "trading resumed")
