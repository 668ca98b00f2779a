from django.urls import path

from apps.trades import api

urlpatterns = [
    path("orders/", api.OrderListCreateApi.as_view(), name="order-list"),
    path("orders/<int:order_id>/", api.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<int:order_id>/cancel/", api.OrderCancelApi.as_view(), name="order-cancel"),
    path("fills/", api.FillListApi.as_view(), name="fill-list"),
    path("positions/", api.PositionListApi.as_view(), name="position-list"),
    path("risk-events/", api.RiskEventListApi.as_view(), name="risk-event-list"),
]
