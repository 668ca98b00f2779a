"""WebhookReceiver: a local HTTP server that receives the platform's outgoing webhooks and
verifies them as the settings page tells users to: X-Signature = hex HMAC-SHA256 of
``f"{X-Timestamp}.{raw body}"`` with the shared secret, the timestamp within 5 minutes.

    with WebhookReceiver(secret="whsec_...") as hook:    # the user's webhook_url = hook.url
        ...
        assert hook.received[0]["verified"] and hook.received[0]["json"]["event"] == "order_filled"

A request with a bad or missing signature or an old timestamp answers 401 and is recorded
with ``verified`` False. Knob: ``fail_with`` = an HTTP status every request answers with
(after recording it), ``None`` = 204.
"""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_AGE_SECONDS = 300


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None) -> bool:
    try:
        age = abs((now or time.time()) - int(timestamp))
    except ValueError:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return age <= MAX_AGE_SECONDS and hmac.compare_digest(expected, signature)


class WebhookReceiver:
    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                ok = verify(
                    receiver.secret, self.headers.get("X-Timestamp", ""), body, self.headers.get("X-Signature", "")
                )
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                receiver.received.append({"verified": ok, "json": parsed, "headers": dict(self.headers), "body": body})
                status = receiver.fail_with or (204 if ok else 401)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def verified(self) -> list[dict[str, Any]]:
        return [r for r in self.received if r["verified"]]

    def start(self) -> "WebhookReceiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
