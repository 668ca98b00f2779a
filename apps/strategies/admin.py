"""The operations console for strategies: users' rule sets (read and search; users edit their own
in the portal), look-ahead verdicts (facts, read-only), and deployments: searchable by id, name
and owner email, changed only through actions that call the deployment services (pause, resume,
stop, halt; audited with the operator as actor). Signals and tick runs are read-only facts."""

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.common.errors import ApplicationError
from apps.strategies import services
from apps.strategies.models import (
    Deployment,
    DeploymentWebhook,
    LookaheadVerdict,
    RuleSet,
    Signal,
    TickRun,
    WebhookSignal,
)
from apps.strategies.services import deployments as deployment_services


def _pretty(value: Any) -> SafeString:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner_email", "created_at", "updated_at")
    search_fields = ("=id", "name", "owner__email")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    fields = ("owner", "name", "description", "conditions", "rules_json", "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: RuleSet) -> str:
        return obj.owner.email

    @admin.display(description="Conditions")
    def conditions(self, obj: RuleSet) -> SafeString:
        text = services.rules_as_text(rules=obj.rules)
        return format_html(
            "<pre>{}</pre>", "\n".join(f"{slot}: {condition or '-'}" for slot, condition in text.items())
        )

    @admin.display(description="Rules (JSON)")
    def rules_json(self, obj: RuleSet) -> SafeString:
        return _pretty(obj.rules)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LookaheadVerdict)
class LookaheadVerdictAdmin(admin.ModelAdmin):
    list_display = ("strategy_key", "is_biased", "params", "rule_set", "checked_at", "fingerprint")
    list_filter = ("is_biased", "strategy_key")
    search_fields = ("=fingerprint", "strategy_key", "rule_set__name", "rule_set__owner__email")
    list_select_related = ("rule_set",)
    fields = (
        "fingerprint",
        "strategy_key",
        "params",
        "rule_set",
        "is_biased",
        "details_json",
        "checked_at",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="Details")
    def details_json(self, obj: LookaheadVerdict) -> SafeString:
        return _pretty(obj.details)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(_ReadOnly):
    list_display = (
        "id",
        "name",
        "status",
        "owner_email",
        "account",
        "strategy_key",
        "timeframe",
        "capital",
        "last_bar_ts",
        "updated_at",
    )
    list_filter = ("status", "timeframe", "strategy_key", "is_reduce_only")
    search_fields = ("=id", "name", "owner__email", "account__name")
    list_select_related = ("owner", "account")
    date_hierarchy = "created_at"
    actions = ["pause", "resume", "stop", "stop_and_close", "halt"]
    fields = (
        "name",
        "owner",
        "account",
        "status",
        "status_reason",
        "is_reduce_only",
        "strategy_key",
        "params_json",
        "rule_set",
        "instrument_list",
        "timeframe",
        "capital",
        "settings_json",
        "risk_json",
        "fence",
        "started_at",
        "stopped_at",
        "last_bar_ts",
        "peak_equity",
        "day_start_equity",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_operate_permission(self, request: HttpRequest) -> bool:
        # The rows are facts; pausing or halting is a change: it needs that right.
        return bool(request.user.has_perm("strategies.change_deployment"))

    @admin.display(description="Owner", ordering="owner__email")
    def owner_email(self, obj: Deployment) -> str:
        return obj.owner.email

    @admin.display(description="Params")
    def params_json(self, obj: Deployment) -> SafeString:
        return _pretty(obj.params if not obj.rules else obj.rules)

    @admin.display(description="Settings")
    def settings_json(self, obj: Deployment) -> SafeString:
        return _pretty(obj.settings)

    @admin.display(description="Risk limits")
    def risk_json(self, obj: Deployment) -> SafeString:
        return _pretty(obj.risk)

    @admin.display(description="Instruments")
    def instrument_list(self, obj: Deployment) -> str:
        return ", ".join(f"{i.symbol} ({i.venue})" for i in obj.instruments.all())

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[Deployment], verb: str, call: Callable[[Deployment], Any]
    ) -> None:
        done = 0
        for deployment in queryset.select_related("account", "owner"):
            try:
                call(deployment)
            except ApplicationError as exc:
                self.message_user(request, f"#{deployment.pk}: {exc.message}", messages.ERROR)
                continue
            done += 1
        self.message_user(request, f"{verb} {done} deployment(s).", messages.SUCCESS)

    @admin.action(description="Pause the selected deployments", permissions=["operate"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        reason = f"Paused by an operator ({request.user})."
        self._apply(
            request,
            queryset.filter(status__in=Deployment.RUNNING),
            "Paused",
            lambda d: deployment_services.deployment_pause(deployment=d, reason=reason, actor=request.user),
        )

    @admin.action(
        description="Resume the selected deployments (paper; live ones need their owner)", permissions=["operate"]
    )
    def resume(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        # `request` proves the operator's second factor, not the owner's: live ones are refused.
        self._apply(
            request,
            queryset.filter(status__in=deployment_services.RESUMABLE),
            "Resumed",
            lambda d: deployment_services.deployment_resume(deployment=d, request=request, actor=request.user),
        )

    @admin.action(description="Stop the selected deployments (keep positions)", permissions=["operate"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        self._apply(
            request,
            queryset.filter(status__in=deployment_services.STOPPABLE),
            "Stopped",
            lambda d: deployment_services.deployment_stop(deployment=d, close_positions=False, actor=request.user),
        )

    @admin.action(description="Stop the selected deployments and close their positions", permissions=["operate"])
    def stop_and_close(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        self._apply(
            request,
            queryset.filter(status__in=deployment_services.STOPPABLE),
            "Stopped",
            lambda d: deployment_services.deployment_stop(deployment=d, close_positions=True, actor=request.user),
        )

    @admin.action(description="Halt the selected deployments (kill switch)", permissions=["operate"])
    def halt(self, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        reason = f"Halted by an operator ({request.user})."
        self._apply(
            request,
            queryset.filter(status__in=(*Deployment.RUNNING, Deployment.Status.PAUSED)),
            "Halted",
            lambda d: deployment_services.deployment_halt(deployment=d, reason=reason, actor=request.user),
        )


@admin.register(Signal)
class SignalAdmin(_ReadOnly):
    list_display = ("id", "deployment", "instrument", "bar_ts", "action", "price", "created_at")
    list_filter = ("action",)
    search_fields = ("=id", "=deployment__id", "deployment__owner__email")
    list_select_related = ("deployment", "instrument")
    date_hierarchy = "bar_ts"
    fields = ("deployment", "instrument", "bar_ts", "action", "price", "details", "created_at")
    readonly_fields = fields


@admin.register(TickRun)
class TickRunAdmin(_ReadOnly):
    list_display = ("id", "deployment", "instrument", "bar_ts", "outcome", "duration_ms", "started_at", "finished_at")
    list_filter = ("outcome",)
    search_fields = ("=id", "=deployment__id", "outcome")
    list_select_related = ("deployment", "instrument")
    date_hierarchy = "bar_ts"
    fields = (
        "deployment",
        "instrument",
        "bar_ts",
        "announced_at",
        "started_at",
        "finished_at",
        "outcome",
        "duration_ms",
    )
    readonly_fields = fields


@admin.register(DeploymentWebhook)
class DeploymentWebhookAdmin(_ReadOnly):
    """Webhooks as facts: the secret (encrypted) is never shown; owners rotate it themselves."""

    list_display = ("id", "deployment", "is_enabled", "rate_limit_per_minute", "secret_rotated_at", "last_signal_at")
    list_filter = ("is_enabled",)
    search_fields = ("=id", "=deployment__id", "deployment__owner__email")
    list_select_related = ("deployment",)
    fields = (
        "deployment",
        "is_enabled",
        "rate_limit_per_minute",
        "secret_rotated_at",
        "last_signal_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields


@admin.register(WebhookSignal)
class WebhookSignalAdmin(_ReadOnly):
    """Every request to a deployment's webhook, accepted or refused (the payload never holds the secret)."""

    list_display = ("id", "deployment", "status", "code", "http_status", "action", "symbol", "nonce", "created_at")
    list_filter = ("status", "code")
    search_fields = ("=id", "=deployment__id", "deployment__owner__email", "=nonce")
    list_select_related = ("deployment",)
    date_hierarchy = "created_at"
    fields = (
        "deployment",
        "webhook",
        "status",
        "code",
        "http_status",
        "message",
        "action",
        "symbol",
        "nonce",
        "sent_at",
        "payload",
        "order",
        "order_ids",
        "remote_addr",
        "created_at",
    )
    readonly_fields = fields
