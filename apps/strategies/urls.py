from django.urls import path

from apps.strategies import views

app_name = "strategies"

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("rules/", views.rule_set_list, name="rule-list"),
    path("rules/new/", views.rule_set_new, name="rule-new"),
    path("rules/<int:rule_set_id>/edit/", views.rule_set_edit, name="rule-edit"),
    path("rules/<int:rule_set_id>/delete/", views.rule_set_delete, name="rule-delete"),
    path("<slug:key>/", views.strategy_detail, name="detail"),
]
