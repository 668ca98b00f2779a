from django.urls import path

from apps.trades import views

app_name = "trades"

urlpatterns = [
    path("", views.order_list, name="orders"),
    path("new/", views.order_new, name="order-new"),
    path("<int:order_id>/", views.order_detail, name="order-detail"),
    path("<int:order_id>/cancel/", views.order_cancel, name="order-cancel"),
    path("fills/", views.fill_list, name="fills"),
    path("positions/", views.position_list, name="positions"),
    path("risk-events/", views.risk_event_list, name="risk-events"),
]
