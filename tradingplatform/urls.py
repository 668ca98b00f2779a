from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.common import views as common_views
from apps.strategies import webhook_views

api_v1: list[URLPattern | URLResolver] = [
    path("", include("apps.users.api_urls")),
    path("", include("apps.marketdata.api_urls")),
    path("", include("apps.strategies.api_urls")),
    path("", include("apps.backtests.api_urls")),
    path("", include("apps.accounts.api_urls")),
    path("", include("apps.trades.api_urls")),
    path("", include("apps.marketplace.api_urls")),
    path("", include("apps.ml.api_urls")),
    path("", include("apps.notifications.api_urls")),
    # Last: any other /api/v1/ path is a JSON 404, in DEBUG too.
    re_path(r"^.*$", common_views.api_not_found, name="not-found"),
]

urlpatterns = [
    path("", include("apps.users.urls")),
    path("markets/", include("apps.marketdata.urls")),
    path("strategies/", include("apps.strategies.urls")),
    path("backtests/", include("apps.backtests.urls")),
    path("trades/", include("apps.trades.urls")),
    path("accounts/", include("apps.accounts.urls")),
    path("marketplace/", include("apps.marketplace.urls")),
    path("ml/", include("apps.ml.urls")),
    path("notifications/", include("apps.notifications.urls")),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("hooks/tradingview/<str:token>/", webhook_views.tradingview_hook, name="tradingview-hook"),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", common_views.healthz, name="healthz"),
    path("metrics", common_views.metrics, name="metrics"),
]

handler404 = "apps.common.views.not_found"
handler500 = "apps.common.views.server_error"
