"""The operations console for trading accounts: list with owner, kind, venue, status and
trading state; filters; search by id, name and owner e-mail. Rows are read-only (credentials
are never shown: neither the token nor anything decrypted; the masked hint is). Changes go
through actions that call the services: test connection, and the account kill switch (halt
trading / reduce only / resume), which uses apps.trades.risk.switches.account_switch_set when
it is installed (it also cancels open orders on halt), else account_set_trading_state.
"""

import json
from typing import Any, ClassVar, cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.accounts import services
from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError
from apps.users.models import User


def _pretty(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def _set_trading_state(*, account_id: int, state: str, reason: str, actor: User) -> None:
    try:
        from apps.trades.risk.switches import account_switch_set
    except ImportError:
        services.account_set_trading_state(account_id=account_id, state=state, reason=reason, actor=actor)
        return
    account_switch_set(account_id=account_id, mode=state, reason=reason, actor=actor)


@admin.register(TradingAccount)
class TradingAccountAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "owner_email",
        "kind",
        "exchange_id",
        "market_type",
        "is_testnet",
        "credentials_hint",
        "status",
        "trading_state",
        "last_tested_at",
        "created_at",
    )
    list_filter = ("kind", "status", "trading_state", "market_type", "is_testnet", "exchange_id")
    search_fields = ("=id", "name", "owner__email", "exchange_id")
    list_select_related: ClassVar[Any] = ("owner",)
    date_hierarchy = "created_at"
    actions = ["test_connection", "halt_trading", "reduce_only", "resume_trading"]
    readonly_fields = (
        "owner",
        "name",
        "kind",
        "exchange_id",
        "market_type",
        "is_testnet",
        "base_currency",
        "credentials_hint",
        "connection_shown",
        "status",
        "status_reason",
        "trading_state",
        "trading_state_reason",
        "risk_limits_shown",
        "last_test_shown",
        "last_tested_at",
        "last_reconciled_at",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TradingAccount]:
        # The token never leaves the database for the admin, not even into a hidden field.
        return super().get_queryset(request).defer("credentials_encrypted")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("accounts.change_tradingaccount"))

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: TradingAccount) -> str:
        return str(obj.owner.email)

    @admin.display(description="Connection")
    def connection_shown(self, obj: TradingAccount) -> SafeString:
        return _pretty(obj.connection)

    @admin.display(description="Risk limits")
    def risk_limits_shown(self, obj: TradingAccount) -> SafeString:
        return _pretty(obj.risk_limits)

    @admin.display(description="Last test")
    def last_test_shown(self, obj: TradingAccount) -> SafeString:
        return _pretty(obj.last_test)

    @admin.action(description="Test the connection of the selected accounts", permissions=["operate"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        done = 0
        for account in queryset.select_related("owner"):
            try:
                services.account_test_request(account=account, actor=request.user, request=request)
            except ApplicationError as exc:
                self.message_user(request, f"#{account.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"Queued {done} connection test(s).", messages.SUCCESS)

    def _switch(self, request: HttpRequest, queryset: QuerySet[TradingAccount], state: str, label: str) -> None:
        done = 0
        actor = cast(User, request.user)
        for account_id in queryset.values_list("pk", flat=True):
            try:
                _set_trading_state(account_id=account_id, state=state, reason=f"{label} by {actor.email}", actor=actor)
            except ApplicationError as exc:
                self.message_user(request, f"#{account_id}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"{label}: {done} account(s).", messages.SUCCESS)

    @admin.action(description="Halt trading on the selected accounts (kill switch)", permissions=["operate"])
    def halt_trading(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        self._switch(request, queryset, TradingAccount.TradingState.HALTED, "Trading halted")

    @admin.action(description="Reduce only on the selected accounts", permissions=["operate"])
    def reduce_only(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        self._switch(request, queryset, TradingAccount.TradingState.REDUCE_ONLY, "Reduce only")

    @admin.action(description="Resume trading on the selected accounts", permissions=["operate"])
    def resume_trading(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        self._switch(request, queryset, TradingAccount.TradingState.ACTIVE, "Trading resumed")
