from django.urls import path

from apps.backtests.api import views

urlpatterns = [
    path("backtests/", views.BacktestListCreateApi.as_view(), name="backtest-list"),
    path("backtests/<int:backtest_id>/", views.BacktestDetailApi.as_view(), name="backtest-detail"),
    path("backtests/<int:backtest_id>/cancel/", views.BacktestCancelApi.as_view(), name="backtest-cancel"),
    path("backtests/<int:backtest_id>/rerun/", views.BacktestRerunApi.as_view(), name="backtest-rerun"),
    path("backtests/<int:backtest_id>/trades/", views.BacktestTradesApi.as_view(), name="backtest-trades"),
    path("backtests/<int:backtest_id>/equity/", views.BacktestEquityApi.as_view(), name="backtest-equity"),
    path("optimisations/", views.OptimisationListCreateApi.as_view(), name="optimisation-list"),
    path("optimisations/<int:optimisation_id>/", views.OptimisationDetailApi.as_view(), name="optimisation-detail"),
    path(
        "optimisations/<int:optimisation_id>/cancel/",
        views.OptimisationCancelApi.as_view(),
        name="optimisation-cancel",
    ),
    path(
        "optimisations/<int:optimisation_id>/trials/",
        views.OptimisationTrialsApi.as_view(),
        name="optimisation-trials",
    ),
    path(
        "optimisations/<int:optimisation_id>/heatmap/",
        views.OptimisationHeatmapApi.as_view(),
        name="optimisation-heatmap",
    ),
    path("walk-forwards/", views.WalkForwardListCreateApi.as_view(), name="walkforward-list"),
    path("walk-forwards/<int:walk_forward_id>/", views.WalkForwardDetailApi.as_view(), name="walkforward-detail"),
    path(
        "walk-forwards/<int:walk_forward_id>/cancel/",
        views.WalkForwardCancelApi.as_view(),
        name="walkforward-cancel",
    ),
    path("monte-carlos/", views.MonteCarloListCreateApi.as_view(), name="montecarlo-list"),
    path("monte-carlos/<int:monte_carlo_id>/", views.MonteCarloDetailApi.as_view(), name="montecarlo-detail"),
    path("monte-carlos/<int:monte_carlo_id>/cancel/", views.MonteCarloCancelApi.as_view(), name="montecarlo-cancel"),
]
