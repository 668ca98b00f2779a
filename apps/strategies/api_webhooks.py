"""Webhooks API: a deployment's TradingView webhook for its owner (another user's deployment is
a 404 on every route). The secret appears only in the answer of the call that made it.

    GET   /api/v1/deployments/{id}/webhook/            the configuration and the URL
    POST  /api/v1/deployments/{id}/webhook/enable/     {"rate_limit_per_minute": 30} (optional);
                                                       201 with the secret the first time, 200 after
    POST  /api/v1/deployments/{id}/webhook/disable/
    POST  /api/v1/deployments/{id}/webhook/rotate/     a new secret; the old one stops working
    GET   /api/v1/deployments/{id}/webhook/signals/    every attempt, accepted or refused, paginated
"""

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.strategies.api_deployments import StrictInputSerializer
from apps.strategies.models import Deployment, DeploymentWebhook, WebhookSignal
from apps.strategies.webhooks import selectors
from apps.strategies.webhooks import services as webhook_services
from apps.users.requests import AuthenticatedRequest


class WebhookSerializer(serializers.Serializer[Any]):
    deployment = serializers.IntegerField()
    is_configured = serializers.BooleanField(help_text="False until the webhook is first enabled.")
    is_enabled = serializers.BooleanField()
    url = serializers.CharField(allow_null=True, help_text="Where alerts are POSTed.")
    rate_limit_per_minute = serializers.IntegerField(allow_null=True)
    secret_rotated_at = serializers.DateTimeField(allow_null=True)
    last_signal_at = serializers.DateTimeField(allow_null=True)


class WebhookWithSecretSerializer(WebhookSerializer):
    secret = serializers.CharField(
        allow_null=True, help_text="Shown only here, when made (first enable, rotate); null otherwise."
    )


class EnableSerializer(StrictInputSerializer):
    rate_limit_per_minute = serializers.IntegerField(required=False, allow_null=True, default=None)


class WebhookSignalSerializer(serializers.ModelSerializer[WebhookSignal]):
    class Meta:
        model = WebhookSignal
        fields = [
            "id",
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
        ]
        read_only_fields = fields


def _config(request: Request, deployment: Deployment, webhook: DeploymentWebhook | None) -> dict[str, Any]:
    return {
        "deployment": deployment.pk,
        "is_configured": webhook is not None,
        "is_enabled": bool(webhook and webhook.is_enabled),
        "url": request.build_absolute_uri(reverse("tradingview-hook", args=[webhook.token])) if webhook else None,
        "rate_limit_per_minute": webhook.rate_limit_per_minute if webhook else None,
        "secret_rotated_at": webhook.secret_rotated_at if webhook else None,
        "last_signal_at": webhook.last_signal_at if webhook else None,
    }


class WebhookDetailApi(APIView):
    @extend_schema(responses=WebhookSerializer)
    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment, webhook = selectors.webhook_get_for_user(user=request.user, deployment_id=deployment_id)
        return Response(WebhookSerializer(_config(request, deployment, webhook)).data)


class WebhookEnableApi(APIView):
    @extend_schema(
        request=EnableSerializer, responses={200: WebhookWithSecretSerializer, 201: WebhookWithSecretSerializer}
    )
    def post(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment, _ = selectors.webhook_get_for_user(user=request.user, deployment_id=deployment_id)
        data = EnableSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        webhook, secret = webhook_services.webhook_enable(
            deployment=deployment,
            actor=request.user,
            rate_limit_per_minute=data.validated_data["rate_limit_per_minute"],
        )
        body = {**_config(request, deployment, webhook), "secret": secret}
        code = status.HTTP_201_CREATED if secret is not None else status.HTTP_200_OK
        return Response(WebhookWithSecretSerializer(body).data, status=code)


class WebhookDisableApi(APIView):
    @extend_schema(request=None, responses=WebhookSerializer)
    def post(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment, _ = selectors.webhook_get_for_user(user=request.user, deployment_id=deployment_id)
        webhook = webhook_services.webhook_disable(deployment=deployment, actor=request.user)
        return Response(WebhookSerializer(_config(request, deployment, webhook)).data)


class WebhookRotateApi(APIView):
    @extend_schema(request=None, responses=WebhookWithSecretSerializer)
    def post(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment, _ = selectors.webhook_get_for_user(user=request.user, deployment_id=deployment_id)
        webhook, secret = webhook_services.webhook_rotate(deployment=deployment, actor=request.user)
        body = {**_config(request, deployment, webhook), "secret": secret}
        return Response(WebhookWithSecretSerializer(body).data)


class WebhookSignalListApi(generics.GenericAPIView[Any]):
    serializer_class = WebhookSignalSerializer

    @extend_schema(responses=WebhookSignalSerializer(many=True))
    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        queryset = selectors.webhook_signal_list_for_user(user=request.user, deployment_id=deployment_id)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
