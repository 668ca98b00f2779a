"""Notifications API: thin and owner-scoped through the selectors (another user's notification
or rule is a 404 on every route); unknown input fields are refused with 400.

    GET    /api/v1/notifications/                          the centre, unread first (?unread=true)
    GET    /api/v1/notifications/{id}/
    POST   /api/v1/notifications/{id}/read/
    POST   /api/v1/notifications/read-all/                 {"marked": n, "unread": 0}
    GET    /api/v1/notification-settings/                  channels, quiet hours, summary hour
    PATCH  /api/v1/notification-settings/
    POST   /api/v1/notification-settings/webhook-secret/   a new signing secret, shown this once
    POST   /api/v1/notification-settings/telegram-link/    a one-time code to send to the bot
    DELETE /api/v1/notification-settings/telegram-link/    unlink the chat
    GET    /api/v1/alert-rules/        POST (201)
    GET    /api/v1/alert-rules/{id}/   PATCH   DELETE (204)
    GET    /api/v1/deliveries/                             the delivery log (?status=&channel=)
"""

from typing import Any

from django.conf import settings
from django.urls import URLPattern, path
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.notifications import selectors
from apps.notifications.models import AlertRule, Channel, Delivery, Event, Notification, NotificationSettings
from apps.notifications.services import preferences, telegram_link
from apps.notifications.services.notify import notification_mark_all_read, notification_mark_read
from apps.users.requests import AuthenticatedRequest


class StrictInput(serializers.Serializer[Any]):
    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(self.fields))
                raise serializers.ValidationError({name: [f"Unknown field; this takes: {known}."] for name in unknown})
        return super().to_internal_value(data)


class NotificationSerializer(serializers.ModelSerializer[Notification]):
    event_display = serializers.CharField(source="get_event_display", read_only=True)
    is_read = serializers.BooleanField(read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "event", "event_display", "title", "body", "data", "created_at", "read_at", "is_read"]
        read_only_fields = fields


class NotificationListQuery(serializers.Serializer[Any]):
    unread = serializers.BooleanField(required=False, default=False, help_text="Only unread ones.")


class ReadAllSerializer(serializers.Serializer[Any]):
    marked = serializers.IntegerField()
    unread = serializers.IntegerField()


class NotificationListApi(generics.GenericAPIView[Notification]):
    serializer_class = NotificationSerializer

    @extend_schema(parameters=[NotificationListQuery], responses=NotificationSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        query = NotificationListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = selectors.notification_list_for_user(user=request.user, unread_only=query.validated_data["unread"])
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class NotificationDetailApi(APIView):
    @extend_schema(responses=NotificationSerializer)
    def get(self, request: AuthenticatedRequest, notification_id: int) -> Response:
        found = selectors.notification_get_for_user(user=request.user, notification_id=notification_id)
        return Response(NotificationSerializer(found).data)


class NotificationReadApi(APIView):
    @extend_schema(request=None, responses=NotificationSerializer)
    def post(self, request: AuthenticatedRequest, notification_id: int) -> Response:
        found = notification_mark_read(user=request.user, notification_id=notification_id)
        return Response(NotificationSerializer(found).data)


class NotificationReadAllApi(APIView):
    @extend_schema(request=None, responses=ReadAllSerializer)
    def post(self, request: AuthenticatedRequest) -> Response:
        marked = notification_mark_all_read(user=request.user)
        unread = selectors.notification_unread_count(user_id=request.user.pk)
        return Response({"marked": marked, "unread": unread})


class SettingsSerializer(serializers.ModelSerializer[NotificationSettings]):
    telegram_linked = serializers.BooleanField(read_only=True)
    telegram_bot = serializers.SerializerMethodField()
    webhook_secret_masked = serializers.CharField(read_only=True)

    class Meta:
        model = NotificationSettings
        fields = [
            "email_enabled",
            "telegram_linked",
            "telegram_username",
            "telegram_bot",
            "telegram_link_code",
            "telegram_link_expires_at",
            "webhook_url",
            "webhook_secret_masked",
            "timezone",
            "quiet_start",
            "quiet_end",
            "quiet_mode",
            "daily_summary_hour",
        ]
        read_only_fields = fields

    def get_telegram_bot(self, obj: NotificationSettings) -> str:
        return str(getattr(settings, "TELEGRAM_BOT_USERNAME", "") or "")


class SettingsPatchSerializer(StrictInput):
    email_enabled = serializers.BooleanField(required=False)
    webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=500)
    timezone = serializers.CharField(required=False, max_length=64)
    quiet_start = serializers.TimeField(required=False, allow_null=True)
    quiet_end = serializers.TimeField(required=False, allow_null=True)
    quiet_mode = serializers.ChoiceField(choices=NotificationSettings.QuietMode.choices, required=False)
    daily_summary_hour = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=23)


class WebhookSecretSerializer(serializers.Serializer[Any]):
    webhook_secret = serializers.CharField(help_text="Shown only in this answer; store it in your receiver.")


class SettingsApi(APIView):
    @extend_schema(responses=SettingsSerializer)
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(SettingsSerializer(selectors.notification_settings_for_user(user=request.user)).data)

    @extend_schema(request=SettingsPatchSerializer, responses=SettingsSerializer)
    def patch(self, request: AuthenticatedRequest) -> Response:
        data = SettingsPatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        prefs = preferences.notification_settings_update(
            user=request.user, request=request._request, **data.validated_data
        )
        return Response(SettingsSerializer(prefs).data)


class WebhookSecretApi(APIView):
    @extend_schema(request=None, responses=WebhookSecretSerializer)
    def post(self, request: AuthenticatedRequest) -> Response:
        secret = preferences.webhook_secret_rotate(user=request.user, request=request._request)
        return Response({"webhook_secret": secret})


class TelegramLinkApi(APIView):
    @extend_schema(request=None, responses=SettingsSerializer)
    def post(self, request: AuthenticatedRequest) -> Response:
        prefs = telegram_link.telegram_link_start(user=request.user, request=request._request)
        return Response(SettingsSerializer(prefs).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: AuthenticatedRequest) -> Response:
        telegram_link.telegram_unlink(user=request.user, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertRuleSerializer(serializers.ModelSerializer[AlertRule]):
    class Meta:
        model = AlertRule
        fields = ["id", "name", "events", "channels", "threshold", "is_enabled", "created_at", "updated_at"]
        read_only_fields = fields


class AlertRuleInputSerializer(StrictInput):
    name = serializers.CharField(required=False, allow_blank=True, max_length=80)
    events = serializers.ListField(child=serializers.ChoiceField(choices=Event.choices), allow_empty=False)
    channels = serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices), allow_empty=False)
    threshold = serializers.DecimalField(max_digits=28, decimal_places=10, required=False, allow_null=True)
    is_enabled = serializers.BooleanField(required=False)


class AlertRulePatchSerializer(AlertRuleInputSerializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.choices), allow_empty=False, required=False
    )
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), allow_empty=False, required=False
    )


class AlertRuleListApi(generics.GenericAPIView[AlertRule]):
    serializer_class = AlertRuleSerializer

    @extend_schema(responses=AlertRuleSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        page = self.paginate_queryset(selectors.alert_rule_list_for_user(user=request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=AlertRuleInputSerializer, responses={201: AlertRuleSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = AlertRuleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule = preferences.alert_rule_create(user=request.user, request=request._request, **data.validated_data)
        return Response(AlertRuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class AlertRuleDetailApi(APIView):
    @extend_schema(responses=AlertRuleSerializer)
    def get(self, request: AuthenticatedRequest, rule_id: int) -> Response:
        return Response(AlertRuleSerializer(selectors.alert_rule_get_for_user(user=request.user, rule_id=rule_id)).data)

    @extend_schema(request=AlertRulePatchSerializer, responses=AlertRuleSerializer)
    def patch(self, request: AuthenticatedRequest, rule_id: int) -> Response:
        rule = selectors.alert_rule_get_for_user(user=request.user, rule_id=rule_id)
        data = AlertRulePatchSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        rule = preferences.alert_rule_update(
            rule=rule, user=request.user, request=request._request, **data.validated_data
        )
        return Response(AlertRuleSerializer(rule).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: AuthenticatedRequest, rule_id: int) -> Response:
        rule = selectors.alert_rule_get_for_user(user=request.user, rule_id=rule_id)
        preferences.alert_rule_delete(rule=rule, user=request.user, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliverySerializer(serializers.ModelSerializer[Delivery]):
    title = serializers.CharField(source="notification.title", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "notification",
            "title",
            "event",
            "channel",
            "status",
            "attempts",
            "last_error",
            "due_at",
            "sent_at",
            "batch_id",
            "batch_size",
            "created_at",
        ]
        read_only_fields = fields


class DeliveryListQuery(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Delivery.Status.choices, required=False)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)


class DeliveryListApi(generics.GenericAPIView[Delivery]):
    serializer_class = DeliverySerializer

    @extend_schema(parameters=[DeliveryListQuery], responses=DeliverySerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        query = DeliveryListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        qs = selectors.delivery_list_for_user(user=request.user, **query.validated_data)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


urlpatterns: list[URLPattern] = [
    path("notifications/", NotificationListApi.as_view(), name="notification-list"),
    path("notifications/read-all/", NotificationReadAllApi.as_view(), name="notification-read-all"),
    path("notifications/<int:notification_id>/", NotificationDetailApi.as_view(), name="notification-detail"),
    path("notifications/<int:notification_id>/read/", NotificationReadApi.as_view(), name="notification-read"),
    path("notification-settings/", SettingsApi.as_view(), name="notification-settings"),
    path("notification-settings/webhook-secret/", WebhookSecretApi.as_view(), name="notification-webhook-secret"),
    path("notification-settings/telegram-link/", TelegramLinkApi.as_view(), name="notification-telegram-link"),
    path("alert-rules/", AlertRuleListApi.as_view(), name="alert-rule-list"),
    path("alert-rules/<int:rule_id>/", AlertRuleDetailApi.as_view(), name="alert-rule-detail"),
    path("deliveries/", DeliveryListApi.as_view(), name="delivery-list"),
]
