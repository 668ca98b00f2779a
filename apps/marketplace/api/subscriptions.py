"""Copy-trading API: thin, owner-scoped through the selectors (another user's subscription, or
another leader's listing, is a 404 on every route), writes through the subscription services (a
400 names the field). Unknown input fields are refused with 400, so ``status``, ``follower`` or
``high_water_mark`` cannot be slipped in.

    GET    /api/v1/subscriptions/                        the user's subscriptions (?status=&listing=&account=)
    POST   /api/v1/subscriptions/                        subscribe (201): listing, account, allocation, ...
    GET    /api/v1/subscriptions/{id}/                   with the copy book's P&L
    PATCH  /api/v1/subscriptions/{id}/                   allocation, sizing, limits, show_identity
    POST   /api/v1/subscriptions/{id}/pause/
    POST   /api/v1/subscriptions/{id}/resume/
    POST   /api/v1/subscriptions/{id}/unsubscribe/       {"close_positions": false}
    GET    /api/v1/subscriptions/{id}/copies/            copied trades beside the leader's fills, paginated
    GET    /api/v1/subscriptions/{id}/fees/              the fee statement (entries and totals)
    GET    /api/v1/leader/listings/{id}/followers/       the listing owner's followers summary and table
"""

from typing import Any

from django.urls import URLPattern, path, reverse
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.marketplace.models import CopyTrade, FeeEntry, Subscription
from apps.marketplace.selectors import subscriptions as selectors
from apps.marketplace.services.events import copy_slippage_bps
from apps.strategies.api_deployments import StrictInputSerializer
from apps.users.requests import AuthenticatedRequest

MONEY: dict[str, Any] = {"max_digits": 28, "decimal_places": 10}


def _services() -> Any:
    from apps.marketplace.services import subscriptions

    return subscriptions


class SubscriptionSerializer(serializers.ModelSerializer[Subscription]):
    listing_title = serializers.CharField(source="listing.title", read_only=True)
    currency = serializers.CharField(source="listing.currency", read_only=True)
    account_name = serializers.CharField(source="account.name", read_only=True)
    account_kind = serializers.CharField(source="account.kind", read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "listing",
            "listing_title",
            "currency",
            "account",
            "account_name",
            "account_kind",
            "deployment",
            "status",
            "status_display",
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
        ]
        read_only_fields = fields


class PnlSerializer(serializers.Serializer[Any]):
    equity = serializers.DecimalField(**MONEY)
    realized_pnl = serializers.DecimalField(**MONEY)
    unrealized_pnl = serializers.DecimalField(**MONEY)
    fees = serializers.DecimalField(**MONEY)
    net_pnl = serializers.DecimalField(**MONEY)
    fills = serializers.IntegerField()


class SubscriptionDetailSerializer(SubscriptionSerializer):
    pnl = serializers.SerializerMethodField()

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "pnl"]
        read_only_fields = fields

    @extend_schema_field(PnlSerializer)
    def get_pnl(self, obj: Subscription) -> dict[str, Any]:
        return dict(PnlSerializer(selectors.subscription_pnl(subscription=obj)).data)


class SubscriptionCreateSerializer(StrictInputSerializer):
    listing = serializers.IntegerField(help_text="An approved listing of another user.")
    account = serializers.IntegerField(help_text="One of your active trading accounts.")
    allocation = serializers.DecimalField(**MONEY, help_text="The most capital the copies may use.")
    sizing_mode = serializers.ChoiceField(choices=Subscription.Sizing.choices, default=Subscription.Sizing.EQUITY_RATIO)
    multiplier = serializers.DecimalField(**MONEY, required=False, help_text="Multiplier mode: x the leader's size.")
    fixed_notional = serializers.DecimalField(**MONEY, required=False, allow_null=True)
    max_loss = serializers.DecimalField(**MONEY, required=False, allow_null=True)
    max_position_notional = serializers.DecimalField(**MONEY, required=False, allow_null=True)
    max_price_deviation_pct = serializers.DecimalField(max_digits=7, decimal_places=3, required=False, allow_null=True)
    open_existing = serializers.BooleanField(default=False)
    show_identity = serializers.BooleanField(default=False)

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.validated_data)
        data.pop("listing")
        data["account_id"] = data.pop("account")
        return data


class SubscriptionPatchSerializer(StrictInputSerializer):
    allocation = serializers.DecimalField(**MONEY, required=False)
    sizing_mode = serializers.ChoiceField(choices=Subscription.Sizing.choices, required=False)
    multiplier = serializers.DecimalField(**MONEY, required=False)
    fixed_notional = serializers.DecimalField(**MONEY, required=False, allow_null=True)
    max_loss = serializers.DecimalField(**MONEY, required=False, allow_null=True)
    max_position_notional = serializers.DecimalField(**MONEY, required=False, allow_null=True)
    max_price_deviation_pct = serializers.DecimalField(max_digits=7, decimal_places=3, required=False, allow_null=True)
    show_identity = serializers.BooleanField(required=False)


class UnsubscribeSerializer(StrictInputSerializer):
    close_positions = serializers.BooleanField(default=False)


class PauseSerializer(StrictInputSerializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=300)


class ListQuerySerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Subscription.Status.choices, required=False)
    listing = serializers.IntegerField(required=False, min_value=1)
    account = serializers.IntegerField(required=False, min_value=1)


class CopyTradeSerializer(serializers.ModelSerializer[CopyTrade]):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    leader_filled_at = serializers.DateTimeField(source="leader_fill.filled_at", read_only=True)
    symbol = serializers.SerializerMethodField()
    order_status = serializers.SerializerMethodField()
    filled_quantity = serializers.SerializerMethodField()
    average_price = serializers.SerializerMethodField()
    slippage_bps = serializers.SerializerMethodField()

    class Meta:
        model = CopyTrade
        fields = [
            "id",
            "leader_fill",
            "leader_filled_at",
            "symbol",
            "side",
            "leader_quantity",
            "leader_price",
            "status",
            "status_display",
            "code",
            "reason",
            "quantity",
            "reference_price",
            "order",
            "order_status",
            "filled_quantity",
            "average_price",
            "slippage_bps",
            "created_at",
        ]
        read_only_fields = fields

    def get_symbol(self, obj: CopyTrade) -> str:
        return obj.order.symbol if obj.order is not None else ""

    def get_order_status(self, obj: CopyTrade) -> str | None:
        return obj.order.status if obj.order is not None else None

    @extend_schema_field(serializers.DecimalField(**MONEY, allow_null=True))
    def get_filled_quantity(self, obj: CopyTrade) -> str | None:
        return None if obj.order is None else str(obj.order.filled_quantity)

    @extend_schema_field(serializers.DecimalField(**MONEY, allow_null=True))
    def get_average_price(self, obj: CopyTrade) -> str | None:
        if obj.order is None or obj.order.average_price is None:
            return None
        return str(obj.order.average_price)

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True))
    def get_slippage_bps(self, obj: CopyTrade) -> str | None:
        average = obj.order.average_price if obj.order is not None else None
        value = copy_slippage_bps(side=obj.side, leader_price=obj.leader_price, follower_price=average)
        return None if value is None else str(value)


class FeeEntrySerializer(serializers.ModelSerializer[FeeEntry]):
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)

    class Meta:
        model = FeeEntry
        fields = [
            "id",
            "kind",
            "kind_display",
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
        ]
        read_only_fields = fields


class FeeStatementSerializer(serializers.Serializer[Any]):
    currency = serializers.CharField()
    accrued = serializers.DecimalField(**MONEY)
    collected = serializers.DecimalField(**MONEY)
    waived = serializers.DecimalField(**MONEY)
    total = serializers.DecimalField(**MONEY, help_text="Owed or paid: accrued + collected.")
    entries = FeeEntrySerializer(many=True)


class FollowerSerializer(serializers.Serializer[Any]):
    number = serializers.IntegerField(help_text="Order of joining the listing.")
    name = serializers.CharField(source="display_name", help_text="'Follower #n' unless the follower shows identity.")
    email = serializers.EmailField(allow_null=True, help_text="Only when the follower allowed it.")
    status = serializers.CharField()
    allocation = serializers.DecimalField(**MONEY)
    pnl = serializers.DecimalField(**MONEY, help_text="Net P&L of the follower's copy book.")
    fees = serializers.DecimalField(**MONEY, help_text="Fees accrued or collected.")
    started_at = serializers.DateTimeField()


class FollowersSerializer(serializers.Serializer[Any]):
    listing = serializers.IntegerField(source="listing.pk")
    title = serializers.CharField(source="listing.title")
    currency = serializers.CharField(source="listing.currency")
    followers = serializers.IntegerField(help_text="Copying now (active).")
    paused = serializers.IntegerField()
    capital = serializers.DecimalField(**MONEY, help_text="Allocations of active and paused followers.")
    followers_pnl = serializers.DecimalField(**MONEY)
    fees_gross = serializers.DecimalField(**MONEY, help_text="Fees accrued or collected.")
    fees_leader = serializers.DecimalField(**MONEY, help_text="The leader's share of fees_gross.")
    fees_platform = serializers.DecimalField(**MONEY)
    results = FollowerSerializer(many=True, source="rows")


def _detail(request: AuthenticatedRequest, subscription_id: int) -> dict[str, Any]:
    subscription = selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
    return dict(SubscriptionDetailSerializer(subscription).data)


class SubscriptionListCreateApi(generics.GenericAPIView[Subscription]):
    serializer_class = SubscriptionSerializer

    def get_queryset(self) -> Any:
        query = ListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.subscription_list_for_user(user=self.request.user, filters=query.validated_data)

    @extend_schema(parameters=[ListQuerySerializer], responses=SubscriptionSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=SubscriptionCreateSerializer, responses={201: SubscriptionDetailSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = SubscriptionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        listing = selectors.listing_get_for_subscribe(user=request.user, listing_id=data.validated_data["listing"])
        subscription = _services().subscription_create(
            follower=request.user, listing=listing, request=request._request, **data.service_kwargs()
        )
        location = request.build_absolute_uri(reverse("api:subscription-detail", args=[subscription.pk]))
        return Response(
            _detail(request, subscription.pk), status=status.HTTP_201_CREATED, headers={"Location": location}
        )


class SubscriptionDetailApi(APIView):
    @extend_schema(responses=SubscriptionDetailSerializer)
    def get(self, request: AuthenticatedRequest, subscription_id: int) -> Response:
        return Response(_detail(request, subscription_id))

    @extend_schema(request=SubscriptionPatchSerializer, responses=SubscriptionDetailSerializer)
    def patch(self, request: AuthenticatedRequest, subscription_id: int) -> Response:
        subscription = selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
        data = SubscriptionPatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data:
            _services().subscription_update(subscription=subscription, actor=request.user, **data.validated_data)
        return Response(_detail(request, subscription.pk))


class SubscriptionPauseApi(APIView):
    @extend_schema(request=PauseSerializer, responses=SubscriptionDetailSerializer)
    def post(self, request: AuthenticatedRequest, subscription_id: int) -> Response:
        subscription = selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
        data = PauseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reason = data.validated_data["reason"] or "Paused by the follower."
        _services().subscription_pause(subscription=subscription, actor=request.user, reason=reason)
        return Response(_detail(request, subscription.pk))


class SubscriptionResumeApi(APIView):
    @extend_schema(request=None, responses=SubscriptionDetailSerializer)
    def post(self, request: AuthenticatedRequest, subscription_id: int) -> Response:
        subscription = selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
        _services().subscription_resume(subscription=subscription, actor=request.user, request=request._request)
        return Response(_detail(request, subscription.pk))


class SubscriptionUnsubscribeApi(APIView):
    @extend_schema(request=UnsubscribeSerializer, responses=SubscriptionDetailSerializer)
    def post(self, request: AuthenticatedRequest, subscription_id: int) -> Response:
        subscription = selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
        data = UnsubscribeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        _services().subscription_unsubscribe(
            subscription=subscription, actor=request.user, close_positions=data.validated_data["close_positions"]
        )
        return Response(_detail(request, subscription.pk))


class SubscriptionCopiesApi(generics.GenericAPIView[CopyTrade]):
    serializer_class = CopyTradeSerializer

    @extend_schema(responses=CopyTradeSerializer(many=True))
    def get(self, request: AuthenticatedRequest, subscription_id: int) -> Response:
        subscription = selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
        page = self.paginate_queryset(selectors.subscription_copies(subscription=subscription))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class SubscriptionFeesApi(APIView):
    @extend_schema(responses=FeeStatementSerializer)
    def get(self, request: AuthenticatedRequest, subscription_id: int) -> Response:
        subscription = selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
        return Response(FeeStatementSerializer(selectors.fee_statement(subscription=subscription)).data)


class LeaderFollowersApi(APIView):
    @extend_schema(responses=FollowersSerializer)
    def get(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        listing = selectors.leader_listing_get_for_user(user=request.user, listing_id=listing_id)
        return Response(FollowersSerializer(selectors.leader_listing_summary(listing=listing)).data)


urlpatterns: list[URLPattern] = [
    path("subscriptions/", SubscriptionListCreateApi.as_view(), name="subscription-list"),
    path("subscriptions/<int:subscription_id>/", SubscriptionDetailApi.as_view(), name="subscription-detail"),
    path("subscriptions/<int:subscription_id>/pause/", SubscriptionPauseApi.as_view(), name="subscription-pause"),
    path("subscriptions/<int:subscription_id>/resume/", SubscriptionResumeApi.as_view(), name="subscription-resume"),
    path(
        "subscriptions/<int:subscription_id>/unsubscribe/",
        SubscriptionUnsubscribeApi.as_view(),
        name="subscription-unsubscribe",
    ),
    path("subscriptions/<int:subscription_id>/copies/", SubscriptionCopiesApi.as_view(), name="subscription-copies"),
    path("subscriptions/<int:subscription_id>/fees/", SubscriptionFeesApi.as_view(), name="subscription-fees"),
    path("leader/listings/<int:listing_id>/followers/", LeaderFollowersApi.as_view(), name="leader-followers"),
]
