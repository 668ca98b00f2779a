from django.urls import path

from apps.users.consumers import EventsConsumer

websocket_urlpatterns = [
    path("ws/", EventsConsumer.as_asgi()),
]
