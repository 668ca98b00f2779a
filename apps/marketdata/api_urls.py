from django.urls import path

from apps.marketdata import api

urlpatterns = [
    path("instruments/", api.InstrumentListApi.as_view(), name="instrument-list"),
    path("instruments/<int:instrument_id>/", api.InstrumentDetailApi.as_view(), name="instrument-detail"),
    path("instruments/<int:instrument_id>/candles/", api.InstrumentCandlesApi.as_view(), name="instrument-candles"),
    path(
        "instruments/<int:instrument_id>/structure/", api.InstrumentStructureApi.as_view(), name="instrument-structure"
    ),
]
