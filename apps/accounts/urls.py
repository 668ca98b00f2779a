from django.urls import path

from apps.accounts import views

app_name = "accounts"

# Mounted at /accounts/ beside allauth's login/, signup/, password/... (no name is shared).
urlpatterns = [
    path("", views.account_list, name="list"),
    path("connect/<str:kind>/", views.account_connect, name="connect"),
    path("<int:account_id>/", views.account_detail, name="detail"),
    path("<int:account_id>/status/", views.account_status, name="status"),
    path("<int:account_id>/test/", views.account_test, name="test"),
    path("<int:account_id>/edit/", views.account_edit, name="edit"),
    path("<int:account_id>/reconnect/", views.account_reconnect, name="reconnect"),
    path("<int:account_id>/disable/", views.account_disable, name="disable"),
]
