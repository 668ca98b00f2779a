from django.urls import path

from apps.strategies import api

urlpatterns = [
    path("strategies/", api.StrategyListApi.as_view(), name="strategy-list"),
    path("strategies/<str:key>/", api.StrategyDetailApi.as_view(), name="strategy-detail"),
    path("rule-sets/", api.RuleSetListCreateApi.as_view(), name="ruleset-list"),
    path("rule-sets/validate/", api.RuleSetValidateApi.as_view(), name="ruleset-validate"),
    path("rule-sets/indicators/", api.RuleIndicatorsApi.as_view(), name="ruleset-indicators"),
    path("rule-sets/<int:rule_set_id>/", api.RuleSetDetailApi.as_view(), name="ruleset-detail"),
]
