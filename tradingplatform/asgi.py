"""ASGI entry point: HTTP through Django, websockets through Channels.

`LoopRecordingApp` remembers the event loop the server runs on, so that code in other threads
(Celery worker threads in embedded mode) can hand live events to it; see apps.common.broadcast.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings.dev")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.common.broadcast import LoopRecordingApp  # noqa: E402
from apps.users.ws_auth import WebsocketAuthMiddleware  # noqa: E402
from tradingplatform.routing import websocket_urlpatterns  # noqa: E402

application = LoopRecordingApp(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
        }
    )
)
