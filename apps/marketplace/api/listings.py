"""Listings API: thin, scoped through the selectors (a listing that is not approved does not exist
for anyone but its owner and staff: 404 on every route), writes through the services (a 400
names the field). Unknown input fields are refused (400), so ``status`` or ``stats_return``
cannot be slipped in.

    GET    /api/v1/listings/                          approved listings (?q=&asset_class=&risk_level=
                                                      &pricing=free|paid&live_only=true&sort=return|
                                                      drawdown|sharpe|followers|age|newest), paginated
    POST   /api/v1/listings/                          publish a running deployment as a draft (201)
    GET    /api/v1/listings/mine/                     the caller's own listings, any state
    GET    /api/v1/listings/{id}/
    PATCH  /api/v1/listings/{id}/                     the owner's (an approved one's new pricing goes
                                                      back to review)
    POST   /api/v1/listings/{id}/submit/              draft | rejected -> pending (fresh 2FA if enabled)
    GET    /api/v1/listings/{id}/track-record/        the verified daily equity curve and numbers
    GET    /api/v1/listings/{id}/trades/              the leader's recent fills (delayed for non-subscribers)
    GET    /api/v1/listings/{id}/reviews/             shown reviews, paginated
    POST   /api/v1/listings/{id}/reviews/             the caller's review (create, or edit theirs)
"""

from decimal import Decimal
from typing import Any

from django.urls import URLPattern, path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.marketplace.models import Listing, Review
from apps.marketplace.selectors import listings as selectors
from apps.marketplace.selectors.listings import SORTS
from apps.marketplace.services import listings as services
from apps.marketplace.services import reviews as review_services
from apps.strategies.api_deployments import StrictInputSerializer
from apps.users.requests import AuthenticatedRequest


class ListingSerializer(serializers.ModelSerializer[Listing]):
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    label = serializers.SerializerMethodField()  # type: ignore[assignment]  # a field, not Field.label
    is_free = serializers.BooleanField(read_only=True)
    deployment = serializers.SerializerMethodField(help_text="The deployment's id, for its owner only.")
    rating_avg = serializers.SerializerMethodField()
    rating_count = serializers.SerializerMethodField()

    class Meta:
        model = Listing
        fields = [
            "id",
            "title",
            "description",
            "description_html",
            "tags",
            "asset_class",
            "risk_level",
            "currency",
            "min_allocation",
            "monthly_fee",
            "performance_fee_pct",
            "is_free",
            "trade_delay_minutes",
            "status",
            "status_display",
            "status_reason",
            "deployment",
            "is_live",
            "label",
            "stats_return",
            "stats_max_drawdown",
            "stats_sharpe",
            "stats_trades",
            "stats_followers",
            "stats_capital",
            "stats_since",
            "stats_updated_at",
            "rating_avg",
            "rating_count",
            "submitted_at",
            "approved_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_label(self, obj: Listing) -> str:
        return "live" if obj.is_live else "paper"

    def get_deployment(self, obj: Listing) -> int | None:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return obj.deployment_id if user is not None and user.pk == obj.owner_id else None

    def get_rating_avg(self, obj: Listing) -> float | None:
        value = getattr(obj, "rating_avg", None)
        return round(float(value), 2) if value is not None else None

    def get_rating_count(self, obj: Listing) -> int:
        return int(getattr(obj, "rating_count", 0) or 0)


class ListingInputSerializer(StrictInputSerializer):
    deployment = serializers.IntegerField(help_text="One of your running strategy deployments.")
    title = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True, default="", help_text="Markdown.")
    tags = serializers.ListField(
        child=serializers.CharField(allow_blank=True, max_length=100), required=False, default=list, max_length=50
    )
    asset_class = serializers.ChoiceField(choices=Listing.AssetClass.choices, default=Listing.AssetClass.CRYPTO)
    risk_level = serializers.ChoiceField(choices=Listing.Risk.choices, default=Listing.Risk.MEDIUM)
    min_allocation = serializers.DecimalField(max_digits=28, decimal_places=10, required=False, default=Decimal(0))
    monthly_fee = serializers.DecimalField(max_digits=28, decimal_places=10, required=False, default=Decimal(0))
    performance_fee_pct = serializers.DecimalField(
        max_digits=5, decimal_places=2, required=False, default=Decimal(0), help_text="0-50, of new equity highs."
    )
    trade_delay_minutes = serializers.IntegerField(required=False, default=0)

    def service_kwargs(self) -> dict[str, Any]:
        data = dict(self.validated_data)
        if "deployment" in data:
            data["deployment_id"] = data.pop("deployment")
        return data


class ListingPatchSerializer(ListingInputSerializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)
        del self.fields["deployment"]


class ListingQuerySerializer(serializers.Serializer[Any]):
    q = serializers.CharField(required=False, allow_blank=True, max_length=100)
    asset_class = serializers.ChoiceField(choices=Listing.AssetClass.choices, required=False)
    risk_level = serializers.ChoiceField(choices=Listing.Risk.choices, required=False)
    pricing = serializers.ChoiceField(choices=["free", "paid"], required=False)
    live_only = serializers.BooleanField(required=False, default=False)
    sort = serializers.ChoiceField(choices=list(SORTS), required=False, default="return")


class TradeSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    side = serializers.CharField()
    symbol = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=28, decimal_places=10)
    price = serializers.DecimalField(max_digits=28, decimal_places=10)
    filled_at = serializers.DateTimeField()


class ReviewSerializer(serializers.ModelSerializer[Review]):
    is_own = serializers.SerializerMethodField()

    class Meta:
        model = Review
        fields = ["id", "rating", "text", "is_own", "created_at", "updated_at"]
        read_only_fields = fields

    def get_is_own(self, obj: Review) -> bool:
        request = self.context.get("request")
        return getattr(getattr(request, "user", None), "pk", None) == obj.author_id


class ReviewInputSerializer(StrictInputSerializer):
    rating = serializers.IntegerField(min_value=1, max_value=5)
    text = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


def _detail(request: AuthenticatedRequest, listing_id: int) -> dict[str, Any]:
    listing = selectors.listing_get_for_user(user=request.user, listing_id=listing_id)
    return dict(ListingSerializer(listing, context={"request": request}).data)


class ListingListCreateApi(generics.GenericAPIView[Listing]):
    serializer_class = ListingSerializer

    def get_queryset(self) -> Any:
        query = ListingQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.listing_list_public(filters=query.validated_data)

    @extend_schema(parameters=[ListingQuerySerializer], responses=ListingSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=ListingInputSerializer, responses={201: ListingSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = ListingInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        listing = services.listing_create(owner=request.user, request=request._request, **data.service_kwargs())
        location = request.build_absolute_uri(reverse("api:listing-detail", args=[listing.pk]))
        return Response(_detail(request, listing.pk), status=status.HTTP_201_CREATED, headers={"Location": location})


class MyListingsApi(generics.GenericAPIView[Listing]):
    serializer_class = ListingSerializer

    def get_queryset(self) -> Any:
        return selectors.listing_list_for_owner(user=self.request.user)  # type: ignore[arg-type]

    @extend_schema(responses=ListingSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ListingDetailApi(APIView):
    @extend_schema(responses=ListingSerializer)
    def get(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        return Response(_detail(request, listing_id))

    @extend_schema(request=ListingPatchSerializer, responses=ListingSerializer)
    def patch(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        listing = selectors.listing_get_owned(user=request.user, listing_id=listing_id)
        data = ListingPatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.listing_update(listing=listing, actor=request.user, **data.service_kwargs())
        return Response(_detail(request, listing_id))


class ListingSubmitApi(APIView):
    @extend_schema(request=None, responses=ListingSerializer)
    def post(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        listing = selectors.listing_get_owned(user=request.user, listing_id=listing_id)
        services.listing_submit(listing=listing, actor=request.user, request=request._request)
        return Response(_detail(request, listing_id))


class ListingTrackRecordApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        listing = selectors.listing_get_for_user(user=request.user, listing_id=listing_id)
        backtests = [
            {
                "id": b.pk if b.owner_id == request.user.pk else None,
                "instrument": b.instrument.symbol,
                "timeframe": b.timeframe,
                "start_at": b.start_at,
                "end_at": b.end_at,
                "metrics": b.metrics,
            }
            for b in selectors.listing_backtests(listing=listing)
        ]
        return Response(
            {
                "verified": selectors.listing_track_record(listing=listing),
                "backtests_hypothetical": backtests,
            }
        )


class ListingTradesApi(APIView):
    @extend_schema(responses=TradeSerializer(many=True))
    def get(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        listing = selectors.listing_get_for_user(user=request.user, listing_id=listing_id)
        delay = selectors.listing_trade_delay_for(user=request.user, listing=listing)
        trades = selectors.listing_recent_trades(user=request.user, listing=listing)
        return Response(
            {"delay_minutes": int(delay.total_seconds() // 60), "results": TradeSerializer(trades, many=True).data}
        )


class ListingReviewsApi(generics.GenericAPIView[Review]):
    serializer_class = ReviewSerializer

    @extend_schema(responses=ReviewSerializer(many=True))
    def get(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        listing = selectors.listing_get_for_user(user=request.user, listing_id=listing_id)
        page = self.paginate_queryset(selectors.review_list_for_listing(listing=listing))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=ReviewInputSerializer, responses={200: ReviewSerializer, 201: ReviewSerializer})
    def post(self, request: AuthenticatedRequest, listing_id: int) -> Response:
        listing = selectors.listing_get_for_user(user=request.user, listing_id=listing_id)
        data = ReviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        existed = selectors.review_get_own(user=request.user, listing=listing) is not None
        review = review_services.review_save(author=request.user, listing=listing, **data.validated_data)
        return Response(
            self.get_serializer(review).data, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        )


urlpatterns: list[URLPattern] = [
    path("listings/", ListingListCreateApi.as_view(), name="listing-list"),
    path("listings/mine/", MyListingsApi.as_view(), name="listing-mine"),
    path("listings/<int:listing_id>/", ListingDetailApi.as_view(), name="listing-detail"),
    path("listings/<int:listing_id>/submit/", ListingSubmitApi.as_view(), name="listing-submit"),
    path("listings/<int:listing_id>/track-record/", ListingTrackRecordApi.as_view(), name="listing-track-record"),
    path("listings/<int:listing_id>/trades/", ListingTradesApi.as_view(), name="listing-trades"),
    path("listings/<int:listing_id>/reviews/", ListingReviewsApi.as_view(), name="listing-reviews"),
]
