from django.urls import path

from apps.marketdata import views

app_name = "marketdata"

urlpatterns = [
    path("", views.instrument_list, name="instrument-list"),
    path("<int:instrument_id>/", views.instrument_chart, name="instrument-chart"),
]
