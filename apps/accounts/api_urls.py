from django.urls import path

from apps.accounts import api

urlpatterns = [
    path("accounts/", api.AccountListCreateApi.as_view(), name="account-list"),
    path("accounts/<int:account_id>/", api.AccountDetailApi.as_view(), name="account-detail"),
    path("accounts/<int:account_id>/test/", api.AccountTestApi.as_view(), name="account-test"),
    path("accounts/<int:account_id>/balances/", api.AccountBalancesApi.as_view(), name="account-balances"),
    path("accounts/<int:account_id>/reconnect/", api.AccountReconnectApi.as_view(), name="account-reconnect"),
]
