from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.errors import NotFound
from apps.users import services
from apps.users.models import ApiToken, User
from apps.users.requests import AuthenticatedRequest
from apps.users.selectors import api_token_get_for_user, api_token_list_for_user, user_has_second_factor


class MeSerializer(serializers.ModelSerializer[User]):
    has_2fa = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "email", "display_name", "date_joined", "is_staff", "has_2fa"]
        read_only_fields = fields

    def get_has_2fa(self, obj: User) -> bool:
        return user_has_second_factor(user=obj)


class MeApi(APIView):
    @extend_schema(responses=MeSerializer)
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(MeSerializer(request.user).data)


class ApiTokenOutputSerializer(serializers.ModelSerializer[ApiToken]):
    id = serializers.UUIDField(source="public_id", read_only=True)
    prefix = serializers.CharField(source="token_key", read_only=True)
    created_at = serializers.DateTimeField(source="created", read_only=True)
    expires_at = serializers.DateTimeField(source="expiry", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"]
        read_only_fields = fields


class ApiTokenCreateInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=80)
    ttl_days = serializers.IntegerField(min_value=1, max_value=365, required=False, default=90)


class ApiTokenCreatedSerializer(ApiTokenOutputSerializer):
    token = serializers.CharField(read_only=True, help_text="Shown once; store it now.")

    class Meta(ApiTokenOutputSerializer.Meta):
        fields = [*ApiTokenOutputSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ApiTokenListCreateApi(APIView):
    @extend_schema(responses=ApiTokenOutputSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        tokens = api_token_list_for_user(user=request.user)
        return Response(ApiTokenOutputSerializer(tokens, many=True).data)

    @extend_schema(request=ApiTokenCreateInputSerializer, responses={201: ApiTokenCreatedSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        serializer = ApiTokenCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = services.api_token_create(request=request._request, user=request.user, **serializer.validated_data)
        data = dict(ApiTokenOutputSerializer(created.token).data, token=created.plaintext)
        return Response(data, status=status.HTTP_201_CREATED)


class ApiTokenDetailApi(APIView):
    @extend_schema(responses=ApiTokenOutputSerializer)
    def get(self, request: AuthenticatedRequest, public_id: str) -> Response:
        token = api_token_get_for_user(user=request.user, public_id=public_id)
        if token is None:
            raise NotFound("No such token.")
        return Response(ApiTokenOutputSerializer(token).data)

    @extend_schema(responses={204: None})
    def delete(self, request: AuthenticatedRequest, public_id: str) -> Response:
        services.api_token_revoke(request=request._request, user=request.user, public_id=public_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
