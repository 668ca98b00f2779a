from django.urls import path

from apps.strategies import deployment_views, views, webhook_views

app_name = "strategies"

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("rules/", views.rule_set_list, name="rule-list"),
    path("rules/new/", views.rule_set_new, name="rule-new"),
    path("rules/<int:rule_set_id>/edit/", views.rule_set_edit, name="rule-edit"),
    path("rules/<int:rule_set_id>/delete/", views.rule_set_delete, name="rule-delete"),
    path("deployments/", deployment_views.deployment_list, name="deployment-list"),
    path("deployments/new/", deployment_views.deployment_new, name="deployment-new"),
    path("deployments/<int:deployment_id>/", deployment_views.deployment_detail, name="deployment-detail"),
    path("deployments/<int:deployment_id>/edit/", deployment_views.deployment_edit, name="deployment-edit"),
    path(
        "deployments/<int:deployment_id>/<slug:action>/",
        deployment_views.deployment_action,
        name="deployment-action",
    ),
    path(
        "deployments/<int:deployment_id>/webhook/<slug:action>/",
        webhook_views.webhook_action,
        name="deployment-webhook",
    ),
    path("<slug:key>/", views.strategy_detail, name="detail"),
]
