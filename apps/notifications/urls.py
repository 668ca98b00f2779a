"""Portal pages of the notifications app (see views.py)."""

from apps.notifications.views import urlpatterns_list

app_name = "notifications"

urlpatterns = urlpatterns_list
