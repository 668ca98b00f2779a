"""Trading accounts API: thin, owner-scoped through the selectors (another user's account is a
404 on every route), writes through the services.

    /api/v1/accounts/                  GET list (?kind=), POST connect (kind: paper | ccxt | ib)
    /api/v1/accounts/{id}/             GET, PATCH (name, risk_limits), DELETE (disable; 409 while
                                       deployments or orders are active)
    /api/v1/accounts/{id}/test/        POST: queue a connection test (202); the result arrives as
                                       the websocket event ``account.tested`` and in balances/
    /api/v1/accounts/{id}/balances/    GET: the last test (ok, message, balances, permissions)
    /api/v1/accounts/{id}/reconnect/   POST: replace an exchange account's key

Secrets are write-only: ``api_key``, ``secret`` and ``password`` are accepted by POST and never
returned; responses carry ``credentials_hint`` ("key …a1b2") only. Connecting a live account
(ccxt, ib) needs a session whose second factor was verified in the last 15 minutes, as creating
an API token does; with an API token alone it is refused with 403 ``reauth_required``.
"""

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import selectors, services
from apps.accounts.models import TradingAccount
from apps.users.requests import AuthenticatedRequest

# Non-secret connection settings shown per kind (the rest of `connection` stays internal).
CONNECTION_FIELDS = {
    TradingAccount.Kind.PAPER: ("costs", "allow_short"),
    TradingAccount.Kind.IB: ("host", "port", "client_id", "account_code"),
    TradingAccount.Kind.CCXT: (),
}


class StrictInputSerializer(serializers.Serializer[Any]):
    """Refuses fields it does not know: a misspelt field must not silently become a default,
    and `owner`, `status` or `credentials_encrypted` cannot be slipped in."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(self.fields))
                raise serializers.ValidationError({name: [f"Unknown field; this takes: {known}."] for name in unknown})
        return super().to_internal_value(data)


# --- output -----------------------------------------------------------------------------------


class AccountSerializer(serializers.ModelSerializer[TradingAccount]):
    connection = serializers.SerializerMethodField()

    class Meta:
        model = TradingAccount
        fields = [
            "id",
            "name",
            "kind",
            "exchange_id",
            "market_type",
            "is_testnet",
            "base_currency",
            "credentials_hint",
            "connection",
            "status",
            "status_reason",
            "trading_state",
            "trading_state_reason",
            "risk_limits",
            "last_tested_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_connection(self, obj: TradingAccount) -> dict[str, Any]:
        allowed = CONNECTION_FIELDS.get(TradingAccount.Kind(obj.kind), ())
        return {key: value for key, value in (obj.connection or {}).items() if key in allowed}


class AccountDetailSerializer(AccountSerializer):
    class Meta(AccountSerializer.Meta):
        fields = [*AccountSerializer.Meta.fields, "last_test"]
        read_only_fields = fields


class BalanceSerializer(serializers.Serializer[Any]):
    asset = serializers.CharField()
    free = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True)
    locked = serializers.DecimalField(max_digits=38, decimal_places=18, coerce_to_string=True)


class PermissionsSerializer(serializers.Serializer[Any]):
    can_trade = serializers.BooleanField(allow_null=True)
    can_withdraw = serializers.BooleanField(allow_null=True)
    can_margin = serializers.BooleanField(allow_null=True)
    can_futures = serializers.BooleanField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)


class LastTestSerializer(serializers.Serializer[Any]):
    account_id = serializers.IntegerField()
    tested_at = serializers.DateTimeField(allow_null=True)
    ok = serializers.BooleanField(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    balances = BalanceSerializer(many=True)
    balances_total = serializers.IntegerField()
    permissions = PermissionsSerializer(allow_null=True)


class QueuedSerializer(serializers.Serializer[Any]):
    queued = serializers.BooleanField()
    account_id = serializers.IntegerField()


# --- input ------------------------------------------------------------------------------------


class PaperCreateSerializer(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=TradingAccount.Kind.choices)
    name = serializers.CharField(max_length=200)
    balances = serializers.DictField(
        child=serializers.DecimalField(max_digits=28, decimal_places=10),
        help_text='Starting balances per asset, e.g. {"USDT": "10000"}.',
    )
    base_currency = serializers.CharField(max_length=12, required=False, default="USDT")
    costs = serializers.DictField(
        required=False, default=dict, help_text="Backtest engine costs: fee, maker_fee, fee_fixed, slippage, …"
    )


class ExchangeCreateSerializer(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=TradingAccount.Kind.choices)
    name = serializers.CharField(max_length=200)
    exchange_id = serializers.CharField(max_length=40, help_text="A ccxt exchange id, e.g. binance.")
    api_key = serializers.CharField(max_length=512, write_only=True)
    secret = serializers.CharField(max_length=512, write_only=True, style={"input_type": "password"})
    password = serializers.CharField(
        max_length=512, write_only=True, required=False, default="", allow_blank=True, help_text="Passphrase, if any."
    )
    market_type = serializers.ChoiceField(choices=TradingAccount.MarketType.choices, required=False, default="spot")
    is_testnet = serializers.BooleanField(required=False, default=False)


class IbCreateSerializer(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=TradingAccount.Kind.choices)
    name = serializers.CharField(max_length=200)
    host = serializers.CharField(max_length=253)
    port = serializers.IntegerField()
    client_id = serializers.IntegerField()
    account_code = serializers.CharField(max_length=40)
    base_currency = serializers.CharField(max_length=12, required=False, default="USD")


CREATE_SERIALIZERS: dict[str, type[StrictInputSerializer]] = {
    "paper": PaperCreateSerializer,
    "ccxt": ExchangeCreateSerializer,
    "ib": IbCreateSerializer,
}
CREATE_REQUEST = PolymorphicProxySerializer(
    component_name="AccountCreate",
    serializers=[PaperCreateSerializer, ExchangeCreateSerializer, IbCreateSerializer],
    resource_type_field_name="kind",
)


class KindSerializer(serializers.Serializer[Any]):
    # The same choice set everywhere, so the schema has one enum for it (TradingAccount.Kind).
    kind = serializers.ChoiceField(choices=TradingAccount.Kind.choices)


class AccountUpdateSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    risk_limits = serializers.DictField(required=False)


class ReconnectSerializer(StrictInputSerializer):
    api_key = serializers.CharField(max_length=512, write_only=True)
    secret = serializers.CharField(max_length=512, write_only=True, style={"input_type": "password"})
    password = serializers.CharField(max_length=512, write_only=True, required=False, default="", allow_blank=True)


class ListQuerySerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=TradingAccount.Kind.choices, required=False)


# --- views ------------------------------------------------------------------------------------


def _connect(request: AuthenticatedRequest, data: dict[str, Any]) -> TradingAccount:
    kind = data.pop("kind")
    owner = request.user
    if kind == "paper":
        return services.account_connect_paper(owner=owner, request=request._request, **data)
    if kind == "ccxt":
        return services.account_connect_exchange(owner=owner, request=request._request, **data)
    return services.account_connect_ib(owner=owner, request=request._request, **data)


class AccountListCreateApi(generics.GenericAPIView[TradingAccount]):
    serializer_class = AccountSerializer

    @extend_schema(parameters=[ListQuerySerializer], responses=AccountSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        query = ListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        accounts = selectors.account_list_for_user(user=request.user, kind=query.validated_data.get("kind"))
        page = self.paginate_queryset(accounts)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=CREATE_REQUEST, responses={201: AccountDetailSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        kind = KindSerializer(data={"kind": request.data.get("kind") if hasattr(request.data, "get") else None})
        kind.is_valid(raise_exception=True)
        data = CREATE_SERIALIZERS[kind.validated_data["kind"]](data=request.data)
        data.is_valid(raise_exception=True)
        account = _connect(request, dict(data.validated_data))
        location = request.build_absolute_uri(reverse("api:account-detail", args=[account.pk]))
        return Response(
            AccountDetailSerializer(account).data, status=status.HTTP_201_CREATED, headers={"Location": location}
        )


class AccountDetailApi(APIView):
    @extend_schema(responses=AccountDetailSerializer)
    def get(self, request: AuthenticatedRequest, account_id: int) -> Response:
        account = selectors.account_get_for_user(user=request.user, account_id=account_id)
        return Response(AccountDetailSerializer(account).data)

    @extend_schema(request=AccountUpdateSerializer, responses=AccountDetailSerializer)
    def patch(self, request: AuthenticatedRequest, account_id: int) -> Response:
        account = selectors.account_get_for_user(user=request.user, account_id=account_id)
        data = AccountUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = services.account_update(
            account=account, actor=request.user, request=request._request, **data.validated_data
        )
        return Response(AccountDetailSerializer(account).data)

    @extend_schema(responses={204: None})
    def delete(self, request: AuthenticatedRequest, account_id: int) -> Response:
        account = selectors.account_get_for_user(user=request.user, account_id=account_id)
        services.account_disable(account=account, actor=request.user, request=request._request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccountTestApi(APIView):
    @extend_schema(request=None, responses={202: QueuedSerializer})
    def post(self, request: AuthenticatedRequest, account_id: int) -> Response:
        account = selectors.account_get_for_user(user=request.user, account_id=account_id)
        services.account_test_request(account=account, actor=request.user, request=request._request)
        return Response({"queued": True, "account_id": account.pk}, status=status.HTTP_202_ACCEPTED)


class AccountBalancesApi(APIView):
    @extend_schema(responses=LastTestSerializer)
    def get(self, request: AuthenticatedRequest, account_id: int) -> Response:
        account = selectors.account_get_for_user(user=request.user, account_id=account_id)
        last = account.last_test or {}
        return Response(
            {
                "account_id": account.pk,
                "tested_at": account.last_tested_at,
                "ok": last.get("ok"),
                "message": last.get("message", ""),
                "balances": last.get("balances", []),
                "balances_total": last.get("balances_total", len(last.get("balances", []))),
                "permissions": last.get("permissions"),
            }
        )


class AccountReconnectApi(APIView):
    @extend_schema(request=ReconnectSerializer, responses=AccountDetailSerializer)
    def post(self, request: AuthenticatedRequest, account_id: int) -> Response:
        account = selectors.account_get_for_user(user=request.user, account_id=account_id)
        data = ReconnectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = services.account_reconnect_exchange(account=account, request=request._request, **data.validated_data)
        return Response(AccountDetailSerializer(account).data)
