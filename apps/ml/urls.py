from django.urls import path

from apps.ml.views import actions, pages

app_name = "ml"

urlpatterns = [
    path("", pages.ml_list, name="list"),
    path("new/", pages.ml_new, name="new"),
    path("<int:pk>/", pages.ml_detail, name="detail"),
    path("<int:pk>/edit/", pages.ml_edit, name="edit"),
    path("<int:pk>/status/", pages.ml_status, name="status"),
    path("<int:pk>/train/", actions.ml_train, name="train"),
    path("<int:pk>/versions/<int:number>/cancel/", actions.ml_cancel, name="cancel"),
    path("<int:pk>/versions/<int:number>/promote/", actions.ml_promote, name="promote"),
    path("<int:pk>/rollback/", actions.ml_rollback, name="rollback"),
    path("<int:pk>/schedule/", actions.ml_schedule, name="schedule"),
    path("<int:pk>/backtest/", actions.ml_backtest, name="backtest"),
    path("<int:pk>/deploy/", actions.ml_deploy, name="deploy"),
    path("<int:pk>/delete/", actions.ml_delete, name="delete"),
]
