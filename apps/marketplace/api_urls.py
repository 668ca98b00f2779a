from apps.marketplace.api import listings, subscriptions

urlpatterns = [*listings.urlpatterns, *subscriptions.urlpatterns]
