from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.users import services
from apps.users.models import ApiToken, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ("-date_joined",)
    list_display = (
        "email",
        "display_name",
        "has_2fa",
        "is_staff",
        "is_active",
        "locked_at",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_staff", "is_active", "is_superuser")
    search_fields = ("email", "display_name", "=id")
    readonly_fields = ("date_joined", "last_login", "locked_at", "locked_reason")
    actions = ["lock_users", "unlock_users", "reset_two_factor"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("display_name",)}),
        ("State", {"fields": ("is_active", "locked_at", "locked_reason", "date_joined", "last_login")}),
        ("Permissions", {"fields": ("is_staff", "is_superuser", "groups", "user_permissions")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        devices = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
        return super().get_queryset(request).annotate(_has_2fa=Exists(devices))

    @admin.display(boolean=True, description="2FA", ordering="_has_2fa")
    def has_2fa(self, obj: Any) -> bool:
        return bool(getattr(obj, "_has_2fa", False))

    @admin.action(
        description="Lock selected users (no login, sessions and tokens stop working)", permissions=["change"]
    )
    def lock_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        count = 0
        for user in queryset:
            if user.pk == request.user.pk:
                self.message_user(request, "You cannot lock yourself.", messages.ERROR)
                continue
            services.user_lock(actor=cast(User, request.user), user=user, reason="locked by staff", request=request)
            count += 1
        self.message_user(request, f"Locked {count} user(s).", messages.SUCCESS)

    @admin.action(description="Unlock selected users", permissions=["change"])
    def unlock_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.user_unlock(actor=cast(User, request.user), user=user, request=request)
        self.message_user(request, f"Unlocked {queryset.count()} user(s).", messages.SUCCESS)

    @admin.action(description="Reset two-factor authentication of selected users", permissions=["change"])
    def reset_two_factor(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            services.user_reset_two_factor(actor=cast(User, request.user), user=user, request=request)
        self.message_user(request, f"Reset 2FA of {queryset.count()} user(s).", messages.SUCCESS)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are facts here: operators see and may delete them, never the secret."""

    list_display = ("name", "user", "token_key", "created", "expiry", "last_used_at")
    search_fields = ("user__email", "token_key", "name")
    list_select_related = ("user",)
    fields = ("name", "user", "token_key", "created", "expiry", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
