"""ML strategies API: thin, owner-scoped through the selectors (another user's ML strategy or
version is a 404 on every route), writes through the services (a 400 names the field:
``label.horizon``, ``decision.threshold``, ``model_params.max_iter``, ``schedule.cron``...).

    GET    /api/v1/ml/strategies/                                the user's ML strategies
    POST   /api/v1/ml/strategies/                                create (201)
    GET    /api/v1/ml/strategies/{id}/
    PATCH  /api/v1/ml/strategies/{id}/                           any fields (instruments and timeframes until trained)
    DELETE /api/v1/ml/strategies/{id}/                           204; 409 while a deployment trades it
    POST   /api/v1/ml/strategies/{id}/train/                     202, the queued version; 409 while one is active
    POST   /api/v1/ml/strategies/{id}/rollback/                  the version promoted again
    GET    /api/v1/ml/strategies/{id}/versions/                  newest first, paginated
    GET    /api/v1/ml/strategies/{id}/versions/{number}/         with folds, OOS backtest, config (never the model file)
    POST   /api/v1/ml/strategies/{id}/versions/{number}/promote/ a rejected or retired version, by hand
    POST   /api/v1/ml/strategies/{id}/versions/{number}/cancel/  a queued or running training
    GET    /api/v1/ml/strategies/{id}/drift/                     drift checks, newest first, paginated
    POST   /api/v1/ml/strategies/{id}/backtest/                  201, a queued backtest of the promoted model
    POST   /api/v1/ml/strategies/{id}/deploy/                    201, a paper deployment (or a draft)
    GET    /api/v1/ml/features/                                  the feature catalogue
"""

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.backtests.api.serializers import BacktestDetailSerializer
from apps.ml import selectors, services
from apps.ml.api import serializers as s
from apps.ml.models import DriftCheck, ModelVersion
from apps.strategies.api_deployments import DeploymentSerializer
from apps.users.requests import AuthenticatedRequest


def _detail(request: AuthenticatedRequest, pk: int) -> dict[str, Any]:
    return dict(s.MLStrategySerializer(selectors.ml_strategy_get(user=request.user, pk=pk)).data)


def _input(request: AuthenticatedRequest) -> dict[str, Any]:
    data = s.MLStrategyInputSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    clean = dict(data.validated_data)
    for key in ("label", "decision", "validation", "schedule"):
        if clean.get(key) is not None:
            clean[key] = dict(clean[key])
    return clean


def _version(request: AuthenticatedRequest, ml_strategy_id: int, number: int) -> ModelVersion:
    return selectors.version_get(user=request.user, ml_strategy_id=ml_strategy_id, number=number)


class MLStrategyListCreateApi(generics.GenericAPIView[Any]):
    serializer_class = s.MLStrategySerializer

    @extend_schema(responses=s.MLStrategySerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        page = self.paginate_queryset(selectors.ml_strategies_for(user=request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=s.MLStrategyInputSerializer, responses={201: s.MLStrategySerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        ml_strategy = services.ml_strategy_create(owner=request.user, data=_input(request))
        location = request.build_absolute_uri(reverse("api:ml-strategy-detail", args=[ml_strategy.pk]))
        return Response(
            _detail(request, ml_strategy.pk), status=status.HTTP_201_CREATED, headers={"Location": location}
        )


class MLStrategyDetailApi(APIView):
    @extend_schema(responses=s.MLStrategySerializer)
    def get(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        return Response(_detail(request, ml_strategy_id))

    @extend_schema(request=s.MLStrategyInputSerializer, responses=s.MLStrategySerializer)
    def patch(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        data = _input(request)
        if data:
            services.ml_strategy_update(ml_strategy=ml_strategy, data=data, actor=request.user)
        return Response(_detail(request, ml_strategy.pk))

    @extend_schema(responses={204: None})
    def delete(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        services.ml_strategy_delete(ml_strategy=ml_strategy, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MLStrategyTrainApi(APIView):
    @extend_schema(request=None, responses={202: s.VersionSerializer})
    def post(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        version = services.training_start(ml_strategy=ml_strategy, trigger="manual", requested_by=request.user)
        version = _version(request, ml_strategy.pk, version.number)
        location = request.build_absolute_uri(reverse("api:ml-version-detail", args=[ml_strategy.pk, version.number]))
        return Response(
            s.VersionSerializer(version).data, status=status.HTTP_202_ACCEPTED, headers={"Location": location}
        )


class MLStrategyRollbackApi(APIView):
    @extend_schema(request=None, responses=s.VersionSerializer)
    def post(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        version = services.version_rollback(ml_strategy=ml_strategy, actor=request.user)
        return Response(s.VersionSerializer(_version(request, ml_strategy.pk, version.number)).data)


class MLVersionListApi(generics.GenericAPIView[ModelVersion]):
    serializer_class = s.VersionSerializer

    @extend_schema(responses=s.VersionSerializer(many=True))
    def get(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        page = self.paginate_queryset(selectors.versions_for(ml_strategy=ml_strategy))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class MLVersionDetailApi(APIView):
    @extend_schema(responses=s.VersionDetailSerializer)
    def get(self, request: AuthenticatedRequest, ml_strategy_id: int, number: int) -> Response:
        return Response(s.VersionDetailSerializer(_version(request, ml_strategy_id, number)).data)


class MLVersionPromoteApi(APIView):
    @extend_schema(request=s.PromoteInputSerializer, responses=s.VersionSerializer)
    def post(self, request: AuthenticatedRequest, ml_strategy_id: int, number: int) -> Response:
        version = _version(request, ml_strategy_id, number)
        data = s.PromoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.version_promote(version=version, actor=request.user, reason=data.validated_data["reason"])
        return Response(s.VersionSerializer(_version(request, ml_strategy_id, number)).data)


class MLVersionCancelApi(APIView):
    @extend_schema(request=None, responses=s.VersionSerializer)
    def post(self, request: AuthenticatedRequest, ml_strategy_id: int, number: int) -> Response:
        version = _version(request, ml_strategy_id, number)
        services.training_cancel(version=version, actor=request.user)
        return Response(s.VersionSerializer(_version(request, ml_strategy_id, number)).data)


class MLDriftListApi(generics.GenericAPIView[DriftCheck]):
    serializer_class = s.DriftCheckSerializer

    @extend_schema(responses=s.DriftCheckSerializer(many=True))
    def get(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        page = self.paginate_queryset(selectors.drift_checks_for(ml_strategy=ml_strategy))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class MLBacktestApi(APIView):
    @extend_schema(request=s.BacktestInputSerializer, responses={201: BacktestDetailSerializer})
    def post(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        data = s.BacktestInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        backtest = services.ml_backtest_start(owner=request.user, ml_strategy=ml_strategy, data=data.validated_data)
        location = request.build_absolute_uri(reverse("api:backtest-detail", args=[backtest.pk]))
        return Response(
            BacktestDetailSerializer(backtest).data, status=status.HTTP_201_CREATED, headers={"Location": location}
        )


class MLDeployApi(APIView):
    @extend_schema(request=s.DeployInputSerializer, responses={201: DeploymentSerializer})
    def post(self, request: AuthenticatedRequest, ml_strategy_id: int) -> Response:
        ml_strategy = selectors.ml_strategy_get(user=request.user, pk=ml_strategy_id)
        data = s.DeployInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.ml_deploy(owner=request.user, ml_strategy=ml_strategy, data=data.validated_data)
        location = request.build_absolute_uri(reverse("api:deployment-detail", args=[deployment.pk]))
        return Response(
            DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED, headers={"Location": location}
        )


class MLFeaturesApi(APIView):
    @extend_schema(responses=s.FeatureSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return Response(s.FeatureSerializer(selectors.feature_catalogue(), many=True).data)
