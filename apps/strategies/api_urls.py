from django.urls import path

from apps.strategies import api, api_deployments, api_webhooks

urlpatterns = [
    path("strategies/", api.StrategyListApi.as_view(), name="strategy-list"),
    path("strategies/<str:key>/", api.StrategyDetailApi.as_view(), name="strategy-detail"),
    path("rule-sets/", api.RuleSetListCreateApi.as_view(), name="ruleset-list"),
    path("rule-sets/validate/", api.RuleSetValidateApi.as_view(), name="ruleset-validate"),
    path("rule-sets/indicators/", api.RuleIndicatorsApi.as_view(), name="ruleset-indicators"),
    path("rule-sets/<int:rule_set_id>/", api.RuleSetDetailApi.as_view(), name="ruleset-detail"),
]

urlpatterns += [
    path("deployments/", api_deployments.DeploymentListCreateApi.as_view(), name="deployment-list"),
    path("deployments/<int:deployment_id>/", api_deployments.DeploymentDetailApi.as_view(), name="deployment-detail"),
    path(
        "deployments/<int:deployment_id>/start/", api_deployments.DeploymentStartApi.as_view(), name="deployment-start"
    ),
    path(
        "deployments/<int:deployment_id>/pause/", api_deployments.DeploymentPauseApi.as_view(), name="deployment-pause"
    ),
    path(
        "deployments/<int:deployment_id>/resume/",
        api_deployments.DeploymentResumeApi.as_view(),
        name="deployment-resume",
    ),
    path("deployments/<int:deployment_id>/stop/", api_deployments.DeploymentStopApi.as_view(), name="deployment-stop"),
    path(
        "deployments/<int:deployment_id>/signals/",
        api_deployments.DeploymentSignalsApi.as_view(),
        name="deployment-signals",
    ),
    path(
        "deployments/<int:deployment_id>/orders/",
        api_deployments.DeploymentOrdersApi.as_view(),
        name="deployment-orders",
    ),
    path(
        "deployments/<int:deployment_id>/fills/", api_deployments.DeploymentFillsApi.as_view(), name="deployment-fills"
    ),
    path(
        "deployments/<int:deployment_id>/equity/",
        api_deployments.DeploymentEquityApi.as_view(),
        name="deployment-equity",
    ),
    path(
        "deployments/<int:deployment_id>/chart/", api_deployments.DeploymentChartApi.as_view(), name="deployment-chart"
    ),
]

urlpatterns += [
    path(
        "deployments/<int:deployment_id>/webhook/", api_webhooks.WebhookDetailApi.as_view(), name="deployment-webhook"
    ),
    path(
        "deployments/<int:deployment_id>/webhook/enable/",
        api_webhooks.WebhookEnableApi.as_view(),
        name="deployment-webhook-enable",
    ),
    path(
        "deployments/<int:deployment_id>/webhook/disable/",
        api_webhooks.WebhookDisableApi.as_view(),
        name="deployment-webhook-disable",
    ),
    path(
        "deployments/<int:deployment_id>/webhook/rotate/",
        api_webhooks.WebhookRotateApi.as_view(),
        name="deployment-webhook-rotate",
    ),
    path(
        "deployments/<int:deployment_id>/webhook/signals/",
        api_webhooks.WebhookSignalListApi.as_view(),
        name="deployment-webhook-signals",
    ),
]
