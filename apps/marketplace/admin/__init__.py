"""The marketplace's admin: listings and reviews (review queue, approve / reject / suspend,
moderation) and subscriptions, copies and fees (read-mostly facts)."""

from apps.marketplace.admin import listings, subscriptions  # noqa: F401  (registers the ModelAdmins)
