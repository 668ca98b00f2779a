from django.urls import path

from apps.backtests import views

app_name = "backtests"

urlpatterns = [
    path("", views.backtest_list, name="list"),
    path("new/", views.backtest_new, name="new"),
    path("<int:backtest_id>/", views.backtest_detail, name="detail"),
    path("<int:backtest_id>/status/", views.backtest_status, name="status"),
    path("<int:backtest_id>/cancel/", views.backtest_cancel, name="cancel"),
    path("<int:backtest_id>/rerun/", views.backtest_rerun, name="rerun"),
    path("<int:backtest_id>/report/", views.backtest_report, name="report"),
    path("<int:backtest_id>/trades.csv", views.backtest_trades_csv, name="trades-csv"),
    path("<int:backtest_id>/monte-carlo/new/", views.monte_carlo_new, name="monte-carlo-new"),
    path("optimisations/new/", views.optimisation_new, name="optimisation-new"),
    path("optimisations/<int:optimisation_id>/", views.optimisation_detail, name="optimisation-detail"),
    path("optimisations/<int:optimisation_id>/status/", views.optimisation_status, name="optimisation-status"),
    path("optimisations/<int:optimisation_id>/cancel/", views.optimisation_cancel, name="optimisation-cancel"),
    path(
        "optimisations/<int:optimisation_id>/backtest/",
        views.optimisation_backtest_best,
        name="optimisation-backtest-best",
    ),
    path("walk-forwards/new/", views.walk_forward_new, name="walk-forward-new"),
    path("walk-forwards/<int:walk_forward_id>/", views.walk_forward_detail, name="walk-forward-detail"),
    path("walk-forwards/<int:walk_forward_id>/status/", views.walk_forward_status, name="walk-forward-status"),
    path("walk-forwards/<int:walk_forward_id>/cancel/", views.walk_forward_cancel, name="walk-forward-cancel"),
    path("monte-carlo/<int:monte_carlo_id>/", views.monte_carlo_detail, name="monte-carlo-detail"),
    path("monte-carlo/<int:monte_carlo_id>/status/", views.monte_carlo_status, name="monte-carlo-status"),
    path("monte-carlo/<int:monte_carlo_id>/cancel/", views.monte_carlo_cancel, name="monte-carlo-cancel"),
]
