"""Deployments API: thin, owner-scoped through the selectors (another user's deployment is a 404
on every route), writes through the services (a 400 names the field: ``params.fast``,
``settings.exits.stop_loss``, ``risk.max_drawdown``, ``account_id``...).

    GET    /api/v1/deployments/                    the user's deployments (?status=&account=&instrument=)
    POST   /api/v1/deployments/                    create a draft (201)
    GET    /api/v1/deployments/{id}/
    PATCH  /api/v1/deployments/{id}/               while draft or paused
    DELETE /api/v1/deployments/{id}/               a draft only (204)
    POST   /api/v1/deployments/{id}/start/         {"mode": "paper" | "live"} (live: fresh second factor)
    POST   /api/v1/deployments/{id}/pause/
    POST   /api/v1/deployments/{id}/resume/
    POST   /api/v1/deployments/{id}/stop/          {"close_positions": false}
    GET    /api/v1/deployments/{id}/signals/       paginated
    GET    /api/v1/deployments/{id}/orders/        paginated
    GET    /api/v1/deployments/{id}/fills/         paginated
    GET    /api/v1/deployments/{id}/equity/        P&L after each fill, and the current summary
    GET    /api/v1/deployments/{id}/chart/         candles + fill markers (?instrument=&bars=)
"""

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.strategies import selectors
from apps.strategies.models import Deployment, Signal
from apps.strategies.services import deployments as services
from apps.trades.models import Fill, Order
from apps.users.requests import AuthenticatedRequest


class StrictInputSerializer(serializers.Serializer[Any]):
    """Refuses fields it does not know: a misspelt ``stop_loss`` must not silently trade without
    a stop, and ``owner``, ``status`` or ``fence`` cannot be slipped in."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(self.fields))
                raise serializers.ValidationError({name: [f"Unknown field; this takes: {known}."] for name in unknown})
        return super().to_internal_value(data)


class DeploymentSerializer(serializers.ModelSerializer[Deployment]):
    account_name = serializers.CharField(source="account.name", read_only=True)
    account_kind = serializers.CharField(source="account.kind", read_only=True)
    instruments = serializers.SerializerMethodField()
    status_display = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "name",
            "status",
            "status_display",
            "status_reason",
            "account",
            "account_name",
            "account_kind",
            "strategy_key",
            "params",
            "rule_set",
            "instruments",
            "timeframe",
            "capital",
            "settings",
            "risk",
            "is_reduce_only",
            "fence",
            "started_at",
            "stopped_at",
            "last_bar_ts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_instruments(self, obj: Deployment) -> list[dict[str, Any]]:
        return [{"id": i.pk, "symbol": i.symbol, "venue": i.venue} for i in obj.instruments.all()]


class DeploymentInputSerializer(StrictInputSerializer):
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)
    account = serializers.IntegerField(help_text="One of your trading accounts.")
    strategy = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Registry key, e.g. sma_cross (see /strategies/)."
    )
    params = serializers.DictField(required=False, default=dict, help_text='e.g. {"fast": 10, "slow": 30}')
    rule_set = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="One of your rule sets."
    )
    instruments = serializers.ListField(child=serializers.IntegerField(), min_length=1, help_text="Instrument ids.")
    timeframe = serializers.CharField()
    capital = serializers.DecimalField(max_digits=28, decimal_places=10, help_text="Quote currency allocated.")
    settings = serializers.DictField(
        required=False,
        default=dict,
        help_text="fill, entry, limit_offset, allow_short, costs{...}, sizing{...}, exits{...}.",
    )
    risk = serializers.DictField(
        required=False,
        default=dict,
        help_text="max_position_notional, daily_loss_limit, max_drawdown, ... (null = none).",
    )

    RENAMES = {
        "account": "account_id",
        "strategy": "strategy_key",
        "rule_set": "rule_set_id",
        "instruments": "instrument_ids",
    }

    def service_kwargs(self) -> dict[str, Any]:
        return {self.RENAMES.get(name, name): value for name, value in self.validated_data.items()}


class DeploymentPatchSerializer(DeploymentInputSerializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


class StartSerializer(StrictInputSerializer):
    mode = serializers.ChoiceField(choices=["paper", "live"], default="paper")


class StopSerializer(StrictInputSerializer):
    close_positions = serializers.BooleanField(default=False)


class SignalSerializer(serializers.ModelSerializer[Signal]):
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = Signal
        fields = ["id", "instrument", "symbol", "bar_ts", "action", "price", "details", "created_at"]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer[Order]):
    class Meta:
        model = Order
        fields = [
            "id",
            "client_order_id",
            "exchange_order_id",
            "instrument",
            "symbol",
            "source",
            "leg",
            "bar_ts",
            "side",
            "type",
            "quantity",
            "price",
            "stop_price",
            "reduce_only",
            "status",
            "status_reason",
            "filled_quantity",
            "average_price",
            "fees",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class FillSerializer(serializers.ModelSerializer[Fill]):
    class Meta:
        model = Fill
        fields = [
            "id",
            "order",
            "instrument",
            "trade_id",
            "side",
            "quantity",
            "price",
            "fee",
            "fee_currency",
            "expected_price",
            "slippage_bps",
            "realized_pnl",
            "filled_at",
        ]
        read_only_fields = fields


class ListQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Deployment.Status.choices, required=False)
    account = serializers.IntegerField(required=False, min_value=1)
    instrument = serializers.IntegerField(required=False, min_value=1)


class ChartQuerySerializer(serializers.Serializer[Any]):
    instrument = serializers.IntegerField(required=False, min_value=1)
    bars = serializers.IntegerField(required=False, min_value=1, max_value=5000, default=selectors.CHART_BARS)


def _detail(deployment: Deployment) -> dict[str, Any]:
    return dict(DeploymentSerializer(deployment).data)


def _fresh(request: AuthenticatedRequest, deployment: Deployment) -> dict[str, Any]:
    return _detail(selectors.deployment_get_for_user(user=request.user, deployment_id=deployment.pk))


class DeploymentListCreateApi(generics.GenericAPIView[Deployment]):
    serializer_class = DeploymentSerializer

    def get_queryset(self) -> Any:
        query = ListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.deployment_list_for_user(user=self.request.user, filters=query.validated_data)  # type: ignore[arg-type]

    @extend_schema(parameters=[ListQuerySerializer], responses=DeploymentSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=DeploymentInputSerializer, responses={201: DeploymentSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = DeploymentInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_create(owner=request.user, **data.service_kwargs())
        location = request.build_absolute_uri(reverse("api:deployment-detail", args=[deployment.pk]))
        return Response(_fresh(request, deployment), status=status.HTTP_201_CREATED, headers={"Location": location})


class DeploymentDetailApi(APIView):
    @extend_schema(responses=DeploymentSerializer)
    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        return Response(_detail(selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)))

    @extend_schema(request=DeploymentPatchSerializer, responses=DeploymentSerializer)
    def patch(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        data = DeploymentPatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_update(deployment=deployment, actor=request.user, **data.service_kwargs())
        return Response(_fresh(request, deployment))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        services.deployment_delete(deployment=deployment, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeploymentStartApi(APIView):
    @extend_schema(request=StartSerializer, responses=DeploymentSerializer)
    def post(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        data = StartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_start(
            deployment=deployment, mode=data.validated_data["mode"], request=request._request, actor=request.user
        )
        return Response(_fresh(request, deployment))


class DeploymentPauseApi(APIView):
    @extend_schema(request=None, responses=DeploymentSerializer)
    def post(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        deployment = services.deployment_pause(deployment=deployment, actor=request.user)
        return Response(_fresh(request, deployment))


class DeploymentResumeApi(APIView):
    @extend_schema(request=None, responses=DeploymentSerializer)
    def post(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        deployment = services.deployment_resume(deployment=deployment, request=request._request, actor=request.user)
        return Response(_fresh(request, deployment))


class DeploymentStopApi(APIView):
    @extend_schema(request=StopSerializer, responses=DeploymentSerializer)
    def post(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        data = StopSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_stop(
            deployment=deployment, close_positions=data.validated_data["close_positions"], actor=request.user
        )
        return Response(_fresh(request, deployment))


class _SubListApi(generics.GenericAPIView[Any]):
    list_selector: Any

    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        page = self.paginate_queryset(type(self).list_selector(deployment=deployment))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class DeploymentSignalsApi(_SubListApi):
    serializer_class = SignalSerializer
    list_selector = selectors.deployment_signals

    @extend_schema(responses=SignalSerializer(many=True))
    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        return super().get(request, deployment_id)


class DeploymentOrdersApi(_SubListApi):
    serializer_class = OrderSerializer
    list_selector = selectors.deployment_orders

    @extend_schema(responses=OrderSerializer(many=True))
    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        return super().get(request, deployment_id)


class DeploymentFillsApi(_SubListApi):
    serializer_class = FillSerializer
    list_selector = selectors.deployment_fills

    @extend_schema(responses=FillSerializer(many=True))
    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        return super().get(request, deployment_id)


class DeploymentEquityApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: AuthenticatedRequest, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
        series = selectors.deployment_equity_series(deployment=deployment)
        return Response({**series, "summary": selectors.deployment_pnl(deployment=deployment)})


class DeploymentChartApi(APIView):
    @extend_schema(parameters=[ChartQuerySerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, deployment_id: int) -> Response:
        deployment = selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)  # type: ignore[arg-type]
        query = ChartQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            selectors.deployment_chart(
                deployment=deployment,
                instrument_id=query.validated_data.get("instrument"),
                bars=query.validated_data["bars"],
            )
        )
