"""Strategies API: the catalogue of code strategies and the user's rule sets.

    GET    /api/v1/strategies/                   every public strategy with its Params JSON schema
    GET    /api/v1/strategies/{key}/
    GET    /api/v1/rule-sets/                    the user's rule sets (paginated)
    POST   /api/v1/rule-sets/                    {name, description, rules | conditions}
    GET    /api/v1/rule-sets/{id}/
    PUT    /api/v1/rule-sets/{id}/   PATCH  DELETE
    POST   /api/v1/rule-sets/validate/           {rules | conditions} -> normalised rules, or 400
    GET    /api/v1/rule-sets/indicators/         what the rule editor offers

Rules come as JSON (``{"version": 1, "enter_long": COND, ...}``) or as text conditions per slot
(``{"enter_long": "rsi(14) < 30 and close > sma(200)"}``). A 400 names the offending path, e.g.
``rules.enter_long.all[0].left.indicator`` or ``conditions.exit_long``.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.strategies import selectors, services
from apps.strategies.models import RuleSet
from apps.users.requests import AuthenticatedRequest

# --- catalogue ----------------------------------------------------------------------------------


class StrategyCatalogueSerializer(serializers.Serializer[Any]):
    key = serializers.CharField()
    name = serializers.CharField()
    summary = serializers.CharField()
    documentation = serializers.CharField()
    params_schema = serializers.DictField(help_text="JSON Schema of the parameters: types, defaults, bounds.")
    warmup = serializers.IntegerField(help_text="Bars needed before the first signal (default parameters).")


class StrategyListApi(APIView):
    @extend_schema(responses=StrategyCatalogueSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(StrategyCatalogueSerializer(selectors.strategy_catalogue(), many=True).data)


class StrategyDetailApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("key", str, OpenApiParameter.PATH)], responses=StrategyCatalogueSerializer
    )
    def get(self, request: AuthenticatedRequest, key: str) -> Response:
        return Response(StrategyCatalogueSerializer(selectors.strategy_get(key=key)).data)


# --- rule sets ----------------------------------------------------------------------------------


class RuleSetSerializer(serializers.ModelSerializer[RuleSet]):
    text = serializers.SerializerMethodField(help_text="Each slot's condition in the text form (null when empty).")

    class Meta:
        model = RuleSet
        fields = ["id", "name", "description", "rules", "text", "created_at", "updated_at"]
        read_only_fields = fields

    def get_text(self, obj: RuleSet) -> dict[str, str | None]:
        return services.rules_as_text(rules=obj.rules)


class RulesInputSerializer(serializers.Serializer[Any]):
    rules = serializers.JSONField(
        required=False, help_text='{"version": 1, "enter_long": COND|null, "exit_long": ..., ...}'
    )
    conditions = serializers.DictField(
        child=serializers.CharField(allow_blank=True, allow_null=True),
        required=False,
        help_text='Text per slot, e.g. {"enter_long": "rsi(14) < 30", "exit_long": "rsi(14) > 70"}.',
    )

    def rules_value(self) -> dict[str, Any]:
        data = self.validated_data
        return services.rules_normalise(rules=data.get("rules"), conditions=data.get("conditions"))


class RuleSetInputSerializer(RulesInputSerializer):
    name = serializers.CharField(max_length=services.NAME_MAX_LENGTH)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class RuleSetPatchSerializer(RulesInputSerializer):
    name = serializers.CharField(max_length=services.NAME_MAX_LENGTH, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class RulesValidatedSerializer(serializers.Serializer[Any]):
    rules = serializers.JSONField(help_text="The normalised rules, as they would be stored.")
    text = serializers.DictField(child=serializers.CharField(allow_null=True))


class RuleIndicatorArgSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["int", "float"])
    default = serializers.FloatField()
    low = serializers.FloatField()
    high = serializers.FloatField()
    help = serializers.CharField()


class RuleIndicatorSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    help = serializers.CharField()
    args = RuleIndicatorArgSerializer(many=True)
    outputs = serializers.ListField(child=serializers.CharField(), help_text="Empty: a single series.")
    default_output = serializers.CharField(allow_null=True)


class RuleSetListCreateApi(generics.GenericAPIView[RuleSet]):
    serializer_class = RuleSetSerializer

    def get_queryset(self) -> Any:
        return selectors.rule_set_list_for_user(user=self.request.user)  # type: ignore[arg-type]

    @extend_schema(responses=RuleSetSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RuleSetSerializer(page, many=True).data)

    @extend_schema(request=RuleSetInputSerializer, responses={201: RuleSetSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = RuleSetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule_set = services.rule_set_create(
            owner=request.user,
            name=data.validated_data["name"],
            description=data.validated_data["description"],
            rules=data.rules_value(),
        )
        headers = {"Location": f"{request.path}{rule_set.pk}/"}
        return Response(RuleSetSerializer(rule_set).data, status=status.HTTP_201_CREATED, headers=headers)


class RuleSetDetailApi(APIView):
    @extend_schema(responses=RuleSetSerializer)
    def get(self, request: AuthenticatedRequest, rule_set_id: int) -> Response:
        rule_set = selectors.rule_set_get_for_user(user=request.user, rule_set_id=rule_set_id)
        return Response(RuleSetSerializer(rule_set).data)

    @extend_schema(request=RuleSetInputSerializer, responses=RuleSetSerializer)
    def put(self, request: AuthenticatedRequest, rule_set_id: int) -> Response:
        rule_set = selectors.rule_set_get_for_user(user=request.user, rule_set_id=rule_set_id)
        data = RuleSetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule_set = services.rule_set_update(
            rule_set=rule_set,
            name=data.validated_data["name"],
            description=data.validated_data["description"],
            rules=data.rules_value(),
        )
        return Response(RuleSetSerializer(rule_set).data)

    @extend_schema(request=RuleSetPatchSerializer, responses=RuleSetSerializer)
    def patch(self, request: AuthenticatedRequest, rule_set_id: int) -> Response:
        rule_set = selectors.rule_set_get_for_user(user=request.user, rule_set_id=rule_set_id)
        data = RuleSetPatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        has_rules = "rules" in given or "conditions" in given
        rule_set = services.rule_set_update(
            rule_set=rule_set,
            name=given.get("name", rule_set.name),
            description=given.get("description", rule_set.description),
            rules=data.rules_value() if has_rules else rule_set.rules,
        )
        return Response(RuleSetSerializer(rule_set).data)

    @extend_schema(responses={204: None})
    def delete(self, request: AuthenticatedRequest, rule_set_id: int) -> Response:
        rule_set = selectors.rule_set_get_for_user(user=request.user, rule_set_id=rule_set_id)
        services.rule_set_delete(rule_set=rule_set)
        return Response(status=status.HTTP_204_NO_CONTENT)


class RuleSetValidateApi(APIView):
    @extend_schema(request=RulesInputSerializer, responses=RulesValidatedSerializer)
    def post(self, request: AuthenticatedRequest) -> Response:
        data = RulesInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rules = data.rules_value()
        return Response({"rules": rules, "text": services.rules_as_text(rules=rules)})


class RuleIndicatorsApi(APIView):
    @extend_schema(responses=RuleIndicatorSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(selectors.rule_indicators())
