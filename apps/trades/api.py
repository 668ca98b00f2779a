"""Orders, fills, positions and risk events API: thin, owner-scoped through the selectors
(another user's order, fill, position, risk event or account is a 404 on every route), writes
through the services.

    /api/v1/orders/                 GET list (?account=&deployment=&status=&instrument=),
                                    POST a manual order (201; Idempotency-Key header honoured)
    /api/v1/orders/{id}/            GET (with its fills)
    /api/v1/orders/{id}/cancel/     POST (cancels always go through, whatever the kill switches say)
    /api/v1/fills/                  GET list (?account=&deployment=&order=)
    /api/v1/positions/              GET list (?account=&deployment=&open=true), unrealised P&L at the
                                    last close
    /api/v1/risk-events/            GET list (?account=&deployment=&kind=): refused orders and why

A manual order passes the same risk checks as a strategy's: a refusal is 422 with the stable
``code`` (max_position, kill_switch, reduce_only, …) and the message, and the refused order is
recorded (REJECTED, with a risk event). Bad input is 400 naming the field. ``Idempotency-Key``:
the same key from the same user gives the same order (its client order id is derived from a hash
of the user and the key), so a retried POST never places a second order; the same key with
different parameters is 409. Fields the server owns (user, owner, status, filled_quantity, …)
are refused as unknown.

The platform kill switch is not exposed here (admin only).
"""

from decimal import Decimal
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.trades import selectors
from apps.trades.models import Fill, Order, Position, RiskEvent
from apps.trades.risk.prices import last_prices
from apps.trades.services.manual import IDEMPOTENCY_HEADER, manual_order_place, order_cancel_for_user
from apps.users.requests import AuthenticatedRequest


class StrictInputSerializer(serializers.Serializer[Any]):
    """Refuses fields it does not know: `user`, `owner`, `status` or `filled_quantity` cannot
    be slipped in, and a misspelt `stop_price` does not silently become "no stop"."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(self.fields))
                raise serializers.ValidationError({name: [f"Unknown field; this takes: {known}."] for name in unknown})
        return super().to_internal_value(data)


def _positive(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=28, decimal_places=10, min_value=Decimal("1e-10"), **kwargs)


# --- input ---------------------------------------------------------------------------------------


class BracketInputSerializer(StrictInputSerializer):
    stop_loss = serializers.FloatField(
        required=False, min_value=0.0001, max_value=0.99, help_text="Fraction of the fill price."
    )
    take_profit = serializers.FloatField(
        required=False, min_value=0.0001, max_value=100, help_text="Fraction of the fill price."
    )
    stop_price = _positive(required=False)
    target_price = _positive(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Give a stop (stop_loss or stop_price) and/or a target.")
        if "stop_loss" in attrs and "stop_price" in attrs:
            raise serializers.ValidationError({"stop_price": ["Give stop_loss or stop_price, not both."]})
        if "take_profit" in attrs and "target_price" in attrs:
            raise serializers.ValidationError({"target_price": ["Give take_profit or target_price, not both."]})
        return attrs


class AlgoInputSerializer(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=[Order.Algo.TWAP, Order.Algo.ICEBERG])
    slices = serializers.IntegerField(required=False, min_value=2, max_value=500, help_text="TWAP: children.")
    interval_seconds = serializers.FloatField(
        required=False, min_value=1, max_value=86_400, help_text="TWAP: seconds between children."
    )
    visible = _positive(required=False, help_text="Iceberg: the quantity shown at a time.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["kind"] == Order.Algo.TWAP:
            if "slices" not in attrs or "interval_seconds" not in attrs:
                raise serializers.ValidationError("A TWAP needs slices and interval_seconds.")
        elif "visible" not in attrs:
            raise serializers.ValidationError({"visible": ["An iceberg needs the visible quantity."]})
        return attrs


class OrderInputSerializer(StrictInputSerializer):
    account = serializers.IntegerField(help_text="One of your trading accounts.")
    instrument = serializers.IntegerField(help_text="Instrument id (see /instruments/).")
    side = serializers.ChoiceField(choices=Order.Side.choices)
    type = serializers.ChoiceField(choices=Order.Type.choices, default=Order.Type.MARKET)
    quantity = _positive(help_text="Base units (rounded down to the instrument's step).")
    price = _positive(required=False, allow_null=True, default=None, help_text="Limit price (limit, stop_limit).")
    stop_price = _positive(required=False, allow_null=True, default=None, help_text="Trigger (stop, stop_limit).")
    reduce_only = serializers.BooleanField(required=False, default=False)
    bracket = BracketInputSerializer(required=False, allow_null=True, default=None)
    algo = AlgoInputSerializer(required=False, allow_null=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs["type"]
        if kind in (Order.Type.LIMIT, Order.Type.STOP_LIMIT) and attrs.get("price") is None:
            raise serializers.ValidationError({"price": ["A limit order needs a price."]})
        if kind in (Order.Type.STOP, Order.Type.STOP_LIMIT) and attrs.get("stop_price") is None:
            raise serializers.ValidationError({"stop_price": ["A stop order needs a stop price."]})
        if kind in (Order.Type.MARKET, Order.Type.STOP) and attrs.get("price") is not None:
            raise serializers.ValidationError({"price": [f"A {kind} order takes no limit price."]})
        if kind in (Order.Type.MARKET, Order.Type.LIMIT) and attrs.get("stop_price") is not None:
            raise serializers.ValidationError({"stop_price": [f"A {kind} order takes no stop price."]})
        if attrs.get("bracket") and attrs.get("reduce_only"):
            raise serializers.ValidationError({"bracket": ["A reduce-only order has no bracket."]})
        if attrs.get("algo") and (attrs.get("bracket") or attrs.get("reduce_only")):
            raise serializers.ValidationError({"algo": ["An algo order has no bracket and is not reduce-only."]})
        algo = attrs.get("algo")
        if algo and algo["kind"] == Order.Algo.ICEBERG and algo["visible"] >= attrs["quantity"]:
            raise serializers.ValidationError({"algo": {"visible": ["Must be below the quantity."]}})
        return attrs


class OrderListQuerySerializer(serializers.Serializer[Any]):
    account = serializers.IntegerField(required=False)
    deployment = serializers.IntegerField(required=False)
    instrument = serializers.IntegerField(required=False)
    status = serializers.MultipleChoiceField(choices=Order.Status.choices, required=False)


class FillListQuerySerializer(serializers.Serializer[Any]):
    account = serializers.IntegerField(required=False)
    deployment = serializers.IntegerField(required=False)
    order = serializers.IntegerField(required=False)


class PositionListQuerySerializer(serializers.Serializer[Any]):
    account = serializers.IntegerField(required=False)
    deployment = serializers.IntegerField(required=False)
    open = serializers.BooleanField(required=False, default=False, help_text="Only positions not flat.")


class RiskEventListQuerySerializer(serializers.Serializer[Any]):
    account = serializers.IntegerField(required=False)
    deployment = serializers.IntegerField(required=False)
    kind = serializers.ChoiceField(choices=RiskEvent.Kind.choices, required=False)


# --- output --------------------------------------------------------------------------------------


class TradeFillSerializer(serializers.ModelSerializer[Fill]):
    order = serializers.IntegerField(source="order_id", read_only=True)
    account = serializers.IntegerField(source="account_id", read_only=True)
    deployment = serializers.IntegerField(source="deployment_id", read_only=True, allow_null=True)
    instrument = serializers.IntegerField(source="instrument_id", read_only=True)
    client_order_id = serializers.CharField(source="order.client_order_id", read_only=True)
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = Fill
        fields = [
            "id",
            "order",
            "client_order_id",
            "account",
            "deployment",
            "instrument",
            "symbol",
            "trade_id",
            "side",
            "quantity",
            "price",
            "fee",
            "fee_currency",
            "is_maker",
            "expected_price",
            "slippage_bps",
            "realized_pnl",
            "filled_at",
        ]
        read_only_fields = fields


class TradeOrderSerializer(serializers.ModelSerializer[Order]):
    account = serializers.IntegerField(source="account_id", read_only=True)
    deployment = serializers.IntegerField(source="deployment_id", read_only=True, allow_null=True)
    instrument = serializers.IntegerField(source="instrument_id", read_only=True)
    parent = serializers.IntegerField(source="parent_id", read_only=True, allow_null=True)  # type: ignore[assignment]

    class Meta:
        model = Order
        fields = [
            "id",
            "account",
            "deployment",
            "instrument",
            "symbol",
            "client_order_id",
            "exchange_order_id",
            "source",
            "leg",
            "side",
            "type",
            "quantity",
            "price",
            "stop_price",
            "reduce_only",
            "expected_price",
            "algo",
            "algo_params",
            "bracket",
            "parent",
            "oco_group",
            "status",
            "status_reason",
            "filled_quantity",
            "average_price",
            "fees",
            "bar_ts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TradeOrderDetailSerializer(TradeOrderSerializer):
    fills = serializers.SerializerMethodField()

    class Meta(TradeOrderSerializer.Meta):
        fields = [*TradeOrderSerializer.Meta.fields, "fills"]
        read_only_fields = fields

    def get_fills(self, order: Order) -> list[dict[str, Any]]:
        return list(
            TradeFillSerializer(
                selectors.order_fills(order=order).select_related("order", "instrument"), many=True
            ).data
        )


class TradePositionSerializer(serializers.ModelSerializer[Position]):
    account = serializers.IntegerField(source="account_id", read_only=True)
    deployment = serializers.IntegerField(source="deployment_id", read_only=True, allow_null=True)
    instrument = serializers.IntegerField(source="instrument_id", read_only=True)
    mark_price = serializers.SerializerMethodField()
    unrealized_pnl = serializers.SerializerMethodField()

    class Meta:
        model = Position
        fields = [
            "id",
            "account",
            "deployment",
            "instrument",
            "symbol",
            "quantity",
            "average_price",
            "realized_pnl",
            "fees",
            "mark_price",
            "unrealized_pnl",
            "stop_price",
            "target_price",
            "opened_at",
            "updated_at",
        ]
        read_only_fields = fields

    def _mark(self, position: Position) -> Decimal | None:
        marks: dict[int, Decimal] = self.context.get("marks", {})
        return marks.get(position.instrument_id)

    def get_mark_price(self, position: Position) -> str | None:
        mark = self._mark(position)
        return str(mark) if mark is not None else None

    def get_unrealized_pnl(self, position: Position) -> str | None:
        mark = self._mark(position)
        if mark is None or position.average_price is None:
            return None
        return str(unrealized_pnl(position, mark))


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    """(mark - average entry) x signed quantity: what closing at ``mark`` would realise."""
    if position.average_price is None or not position.quantity:
        return Decimal(0)
    return ((mark - position.average_price) * position.quantity).quantize(Decimal("0.00000001"))


class RiskEventSerializer(serializers.ModelSerializer[RiskEvent]):
    account = serializers.IntegerField(source="account_id", read_only=True)
    deployment = serializers.IntegerField(source="deployment_id", read_only=True, allow_null=True)
    order = serializers.IntegerField(source="order_id", read_only=True, allow_null=True)
    client_order_id = serializers.SerializerMethodField()

    class Meta:
        model = RiskEvent
        fields = [
            "id",
            "account",
            "deployment",
            "order",
            "client_order_id",
            "kind",
            "code",
            "message",
            "details",
            "created_at",
        ]
        read_only_fields = fields

    def get_client_order_id(self, event: RiskEvent) -> str | None:
        return event.order.client_order_id if event.order_id and event.order is not None else None


# --- views ---------------------------------------------------------------------------------------


class _ListApi(generics.GenericAPIView[Any]):
    query_serializer: type[serializers.Serializer[Any]]

    def filters(self) -> dict[str, Any]:
        query = self.query_serializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)

    def page(self, queryset: Any, **context: Any) -> Response:
        page = self.paginate_queryset(queryset)
        serializer = self.get_serializer_class()(page, many=True, context={"request": self.request, **context})
        return self.get_paginated_response(serializer.data)


class OrderListCreateApi(_ListApi):
    serializer_class = TradeOrderSerializer
    query_serializer = OrderListQuerySerializer

    @extend_schema(parameters=[OrderListQuerySerializer], responses=TradeOrderSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        f = self.filters()
        return self.page(
            selectors.order_list_for_user(
                user=request.user,
                account_id=f.get("account"),
                deployment_id=f.get("deployment"),
                instrument_id=f.get("instrument"),
                status=sorted(f["status"]) if f.get("status") else None,
            )
        )

    @extend_schema(
        request=OrderInputSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Retry-safe key: the same key gives the same order.",
            )
        ],
        responses={201: TradeOrderDetailSerializer, 200: TradeOrderDetailSerializer},
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = OrderInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order, created = manual_order_place(
            user=request.user, data=dict(data.validated_data), idempotency_key=request.headers.get(IDEMPOTENCY_HEADER)
        )
        order = selectors.order_get_for_user(user=request.user, order_id=order.pk)
        location = request.build_absolute_uri(reverse("api:order-detail", args=[order.pk]))
        return Response(
            TradeOrderDetailSerializer(order).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": location, **({} if created else {"Idempotent-Replayed": "true"})},
        )


class OrderDetailApi(APIView):
    @extend_schema(responses=TradeOrderDetailSerializer)
    def get(self, request: AuthenticatedRequest, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        return Response(TradeOrderDetailSerializer(order).data)


class OrderCancelApi(APIView):
    @extend_schema(request=None, responses=TradeOrderDetailSerializer)
    def post(self, request: AuthenticatedRequest, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        order = order_cancel_for_user(order=order, actor=request.user)
        return Response(TradeOrderDetailSerializer(order).data)


class FillListApi(_ListApi):
    serializer_class = TradeFillSerializer
    query_serializer = FillListQuerySerializer

    @extend_schema(parameters=[FillListQuerySerializer], responses=TradeFillSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        f = self.filters()
        return self.page(
            selectors.fill_list_for_user(
                user=request.user,
                account_id=f.get("account"),
                deployment_id=f.get("deployment"),
                order_id=f.get("order"),
            )
        )


class PositionListApi(_ListApi):
    serializer_class = TradePositionSerializer
    query_serializer = PositionListQuerySerializer

    @extend_schema(parameters=[PositionListQuerySerializer], responses=TradePositionSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        f = self.filters()
        queryset = selectors.position_list_for_user(
            user=request.user, account_id=f.get("account"), deployment_id=f.get("deployment"), open_only=f["open"]
        )
        page = self.paginate_queryset(queryset)
        rows = list(page) if page is not None else list(queryset)
        marks = last_prices(instrument_ids={p.instrument_id for p in rows})
        serializer = TradePositionSerializer(rows, many=True, context={"request": request, "marks": marks})
        return self.get_paginated_response(serializer.data)


class RiskEventListApi(_ListApi):
    serializer_class = RiskEventSerializer
    query_serializer = RiskEventListQuerySerializer

    @extend_schema(parameters=[RiskEventListQuerySerializer], responses=RiskEventSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        f = self.filters()
        return self.page(
            selectors.risk_event_list_for_user(
                user=request.user, account_id=f.get("account"), deployment_id=f.get("deployment"), kind=f.get("kind")
            )
        )
