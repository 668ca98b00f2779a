from apps.marketplace.views import listings, subscriptions

app_name = "marketplace"

urlpatterns = [*listings.urlpatterns, *subscriptions.urlpatterns]
