from django.urls import URLPattern, path

from apps.ml.api import views

PREFIX = "ml/strategies/<int:ml_strategy_id>/"

urlpatterns: list[URLPattern] = [
    path("ml/strategies/", views.MLStrategyListCreateApi.as_view(), name="ml-strategy-list"),
    path(PREFIX, views.MLStrategyDetailApi.as_view(), name="ml-strategy-detail"),
    path(f"{PREFIX}train/", views.MLStrategyTrainApi.as_view(), name="ml-strategy-train"),
    path(f"{PREFIX}rollback/", views.MLStrategyRollbackApi.as_view(), name="ml-strategy-rollback"),
    path(f"{PREFIX}versions/", views.MLVersionListApi.as_view(), name="ml-version-list"),
    path(f"{PREFIX}versions/<int:number>/", views.MLVersionDetailApi.as_view(), name="ml-version-detail"),
    path(f"{PREFIX}versions/<int:number>/promote/", views.MLVersionPromoteApi.as_view(), name="ml-version-promote"),
    path(f"{PREFIX}versions/<int:number>/cancel/", views.MLVersionCancelApi.as_view(), name="ml-version-cancel"),
    path(f"{PREFIX}drift/", views.MLDriftListApi.as_view(), name="ml-drift-list"),
    path(f"{PREFIX}backtest/", views.MLBacktestApi.as_view(), name="ml-strategy-backtest"),
    path(f"{PREFIX}deploy/", views.MLDeployApi.as_view(), name="ml-strategy-deploy"),
    path("ml/features/", views.MLFeaturesApi.as_view(), name="ml-features"),
]
