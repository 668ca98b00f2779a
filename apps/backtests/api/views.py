"""Backtests API views: thin, owner-scoped through the selectors (another user's job is a 404 on
every route), writes through the services (a 400 names the field: ``params.fast``,
``settings.costs.fee``, ``instrument``, ``start``, ``space.fast.low``...).

    /api/v1/backtests/                 GET list (?status=&strategy=&instrument=), POST create (201)
    /api/v1/backtests/{id}/            GET
    /api/v1/backtests/{id}/cancel/     POST
    /api/v1/backtests/{id}/rerun/      POST (201, the new backtest)
    /api/v1/backtests/{id}/trades/     GET (paginated)
    /api/v1/backtests/{id}/equity/     GET (chart curves, downsampled)
    /api/v1/optimisations/             GET list, POST create;  {id}/  {id}/cancel/  {id}/trials/  {id}/heatmap/?x=&y=
    /api/v1/walk-forwards/             GET list, POST create;  {id}/  {id}/cancel/
    /api/v1/monte-carlos/              GET list (?status=&backtest=), POST create from a backtest id;
                                       {id}/  {id}/cancel/
"""

from collections.abc import Callable
from typing import Any

from django.db.models import Model, QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.backtests import selectors, services
from apps.backtests.api import serializers as s
from apps.backtests.models import BacktestTrade, OptimisationTrial
from apps.backtests.services.runs import RunInputError
from apps.common.errors import NotFound
from apps.users.requests import AuthenticatedRequest


def _created(request: AuthenticatedRequest, route: str, obj: Model, data: Any) -> Response:
    location = request.build_absolute_uri(reverse(route, args=[obj.pk]))
    return Response(data, status=status.HTTP_201_CREATED, headers={"Location": location})


class _OwnedListApi(generics.GenericAPIView[Any]):
    """GET: the user's jobs of one kind, filtered and paginated."""

    query_serializer: type[serializers.Serializer[Any]] = s.JobListQuerySerializer
    list_selector: Callable[..., QuerySet[Any]]

    def get_queryset(self) -> QuerySet[Any]:
        query = self.query_serializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.filters() if isinstance(query, s.JobListQuerySerializer) else dict(query.validated_data)
        return type(self).list_selector(user=self.request.user, filters=filters)

    def list_response(self) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


# --- backtests ----------------------------------------------------------------------------------


class BacktestListCreateApi(_OwnedListApi):
    serializer_class = s.BacktestSerializer
    list_selector = selectors.backtest_list_for_user

    @extend_schema(parameters=[s.JobListQuerySerializer], responses=s.BacktestSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return self.list_response()

    @extend_schema(request=s.RunInputSerializer, responses={201: s.BacktestDetailSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = s.RunInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        backtest = services.backtest_create(owner=request.user, **data.run_kwargs())
        return _created(request, "api:backtest-detail", backtest, s.BacktestDetailSerializer(backtest).data)


class BacktestDetailApi(APIView):
    @extend_schema(responses=s.BacktestDetailSerializer)
    def get(self, request: AuthenticatedRequest, backtest_id: int) -> Response:
        backtest = selectors.backtest_get_for_user(user=request.user, backtest_id=backtest_id)
        return Response(s.BacktestDetailSerializer(backtest).data)


class BacktestCancelApi(APIView):
    @extend_schema(request=None, responses=s.BacktestDetailSerializer)
    def post(self, request: AuthenticatedRequest, backtest_id: int) -> Response:
        backtest = selectors.backtest_get_for_user(user=request.user, backtest_id=backtest_id)
        backtest = services.backtest_cancel(backtest=backtest, actor=request.user)
        return Response(s.BacktestDetailSerializer(backtest).data)


class BacktestRerunApi(APIView):
    @extend_schema(request=None, responses={201: s.BacktestDetailSerializer})
    def post(self, request: AuthenticatedRequest, backtest_id: int) -> Response:
        backtest = selectors.backtest_get_for_user(user=request.user, backtest_id=backtest_id)
        rerun = services.backtest_rerun(backtest=backtest, actor=request.user)
        return _created(request, "api:backtest-detail", rerun, s.BacktestDetailSerializer(rerun).data)


class BacktestTradesApi(generics.GenericAPIView[BacktestTrade]):
    serializer_class = s.BacktestTradeSerializer

    @extend_schema(responses=s.BacktestTradeSerializer(many=True))
    def get(self, request: AuthenticatedRequest, backtest_id: int) -> Response:
        backtest = selectors.backtest_get_for_user(user=request.user, backtest_id=backtest_id)
        page = self.paginate_queryset(selectors.backtest_trades(backtest=backtest))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class BacktestEquityApi(APIView):
    @extend_schema(responses=s.EquitySerializer)
    def get(self, request: AuthenticatedRequest, backtest_id: int) -> Response:
        backtest = selectors.backtest_get_for_user(user=request.user, backtest_id=backtest_id)
        empty = {"t": [], "equity": [], "drawdown": [], "benchmark": [], "points": 0, "bars": 0}
        return Response({**empty, **(backtest.equity or {})})


# --- optimisations ------------------------------------------------------------------------------


class OptimisationListCreateApi(_OwnedListApi):
    serializer_class = s.OptimisationSerializer
    list_selector = selectors.optimisation_list_for_user

    @extend_schema(parameters=[s.JobListQuerySerializer], responses=s.OptimisationSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return self.list_response()

    @extend_schema(request=s.OptimisationInputSerializer, responses={201: s.OptimisationDetailSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = s.OptimisationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        optimisation = services.optimisation_create(
            owner=request.user, seed=data.validated_data["seed"], **data.run_kwargs(), **data.search_kwargs()
        )
        return _created(
            request, "api:optimisation-detail", optimisation, s.OptimisationDetailSerializer(optimisation).data
        )


class OptimisationDetailApi(APIView):
    @extend_schema(responses=s.OptimisationDetailSerializer)
    def get(self, request: AuthenticatedRequest, optimisation_id: int) -> Response:
        optimisation = selectors.optimisation_get_for_user(user=request.user, optimisation_id=optimisation_id)
        return Response(s.OptimisationDetailSerializer(optimisation).data)


class OptimisationCancelApi(APIView):
    @extend_schema(request=None, responses=s.OptimisationDetailSerializer)
    def post(self, request: AuthenticatedRequest, optimisation_id: int) -> Response:
        optimisation = selectors.optimisation_get_for_user(user=request.user, optimisation_id=optimisation_id)
        optimisation = services.optimisation_cancel(optimisation=optimisation, actor=request.user)
        return Response(s.OptimisationDetailSerializer(optimisation).data)


class OptimisationTrialsApi(generics.GenericAPIView[OptimisationTrial]):
    serializer_class = s.OptimisationTrialSerializer

    @extend_schema(parameters=[s.TrialsQuerySerializer], responses=s.OptimisationTrialSerializer(many=True))
    def get(self, request: AuthenticatedRequest, optimisation_id: int) -> Response:
        optimisation = selectors.optimisation_get_for_user(user=request.user, optimisation_id=optimisation_id)
        query = s.TrialsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        trials = selectors.optimisation_trials(
            optimisation=optimisation, feasible_only=query.validated_data["feasible"]
        )
        page = self.paginate_queryset(trials)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class OptimisationHeatmapApi(APIView):
    @extend_schema(parameters=[s.HeatmapQuerySerializer], responses=s.HeatmapSerializer)
    def get(self, request: AuthenticatedRequest, optimisation_id: int) -> Response:
        optimisation = selectors.optimisation_get_for_user(user=request.user, optimisation_id=optimisation_id)
        query = s.HeatmapQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(selectors.optimisation_heatmap(optimisation=optimisation, **query.validated_data))


# --- walk-forwards ------------------------------------------------------------------------------


class WalkForwardListCreateApi(_OwnedListApi):
    serializer_class = s.WalkForwardSerializer
    list_selector = selectors.walk_forward_list_for_user

    @extend_schema(parameters=[s.JobListQuerySerializer], responses=s.WalkForwardSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return self.list_response()

    @extend_schema(request=s.WalkForwardInputSerializer, responses={201: s.WalkForwardDetailSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = s.WalkForwardInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        walk_forward = services.walk_forward_create(
            owner=request.user,
            mode=given["mode"],
            windows_count=given["windows_count"],
            train_ratio=given["train_ratio"],
            **data.run_kwargs(),
            **data.search_kwargs(),
        )
        return _created(
            request, "api:walkforward-detail", walk_forward, s.WalkForwardDetailSerializer(walk_forward).data
        )


class WalkForwardDetailApi(APIView):
    @extend_schema(responses=s.WalkForwardDetailSerializer)
    def get(self, request: AuthenticatedRequest, walk_forward_id: int) -> Response:
        walk_forward = selectors.walk_forward_get_for_user(user=request.user, walk_forward_id=walk_forward_id)
        return Response(s.WalkForwardDetailSerializer(walk_forward).data)


class WalkForwardCancelApi(APIView):
    @extend_schema(request=None, responses=s.WalkForwardDetailSerializer)
    def post(self, request: AuthenticatedRequest, walk_forward_id: int) -> Response:
        walk_forward = selectors.walk_forward_get_for_user(user=request.user, walk_forward_id=walk_forward_id)
        walk_forward = services.walk_forward_cancel(walk_forward=walk_forward, actor=request.user)
        return Response(s.WalkForwardDetailSerializer(walk_forward).data)


# --- Monte Carlo --------------------------------------------------------------------------------


class MonteCarloListCreateApi(_OwnedListApi):
    serializer_class = s.MonteCarloSerializer
    query_serializer = s.MonteCarloListQuerySerializer
    list_selector = selectors.monte_carlo_list_for_user

    @extend_schema(parameters=[s.MonteCarloListQuerySerializer], responses=s.MonteCarloSerializer(many=True))
    def get(self, request: AuthenticatedRequest) -> Response:
        return self.list_response()

    @extend_schema(request=s.MonteCarloInputSerializer, responses={201: s.MonteCarloDetailSerializer})
    def post(self, request: AuthenticatedRequest) -> Response:
        data = s.MonteCarloInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = dict(data.validated_data)
        try:
            backtest = selectors.backtest_get_for_user(user=request.user, backtest_id=given.pop("backtest"))
        except NotFound:
            # A body field, not the URL: a 400 naming it, the same for another user's backtest.
            raise RunInputError("No such backtest.", field="backtest") from None
        job = services.monte_carlo_create(owner=request.user, backtest=backtest, **given)
        return _created(request, "api:montecarlo-detail", job, s.MonteCarloDetailSerializer(job).data)


class MonteCarloDetailApi(APIView):
    @extend_schema(responses=s.MonteCarloDetailSerializer)
    def get(self, request: AuthenticatedRequest, monte_carlo_id: int) -> Response:
        job = selectors.monte_carlo_get_for_user(user=request.user, monte_carlo_id=monte_carlo_id)
        return Response(s.MonteCarloDetailSerializer(job).data)


class MonteCarloCancelApi(APIView):
    @extend_schema(request=None, responses=s.MonteCarloDetailSerializer)
    def post(self, request: AuthenticatedRequest, monte_carlo_id: int) -> Response:
        job = selectors.monte_carlo_get_for_user(user=request.user, monte_carlo_id=monte_carlo_id)
        job = services.monte_carlo_cancel(monte_carlo=job, actor=request.user)
        return Response(s.MonteCarloDetailSerializer(job).data)
