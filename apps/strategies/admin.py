"""The operations console for strategies: users' rule sets (read and search; users edit their own
in the portal) and look-ahead verdicts (facts, read-only)."""

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.strategies import services
from apps.strategies.models import LookaheadVerdict, RuleSet


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
