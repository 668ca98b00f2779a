from django.urls import path

from apps.users import api

urlpatterns = [
    path("me/", api.MeApi.as_view(), name="me"),
    path("tokens/", api.ApiTokenListCreateApi.as_view(), name="token-list"),
    path("tokens/<uuid:public_id>/", api.ApiTokenDetailApi.as_view(), name="token-detail"),
]
