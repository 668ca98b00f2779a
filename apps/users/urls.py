from django.urls import path

from apps.users import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("2fa/", views.two_factor_index, name="two_factor_index"),
    path("2fa/setup/", views.two_factor_setup, name="two_factor_setup"),
    path("2fa/verify/", views.two_factor_verify, name="two_factor_verify"),
    path("2fa/disable/", views.two_factor_disable, name="two_factor_disable"),
    path("2fa/backup-codes/", views.backup_codes_regenerate, name="backup_codes_regenerate"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<uuid:public_id>/revoke/", views.token_revoke, name="token_revoke"),
]
