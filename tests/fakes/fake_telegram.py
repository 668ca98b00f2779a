"""FakeTelegram: a local HTTP server that answers the Telegram Bot API methods the platform
uses (``sendMessage``, ``getUpdates``), for one bot token.

    with FakeTelegram(token="123:abc") as tg:          # settings.TELEGRAM_API_URL = tg.url
        tg.user_sends(chat_id=42, text="/start ABCD2345")
        ...
        assert tg.sent == [{"chat_id": "42", "text": "..."}]

``getUpdates`` returns the queued updates with ``update_id >= offset`` (as Telegram does, and
forgets older ones). A wrong token answers 401 ``Unauthorized``. Knobs: ``fail_with`` = an HTTP
status (e.g. 500, 429, 403) every sendMessage answers with, ``None`` = succeed.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeTelegram:
    def __init__(self, token: str = "123456:TEST-token") -> None:  # noqa: S107 - a fake bot token
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: int | None = None
        self._next_update = 1000
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                status, answer = fake.handle(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = path[len(prefix) :]
        with self._lock:
            self.requests.append((method, body))
            if method == "sendMessage":
                if self.fail_with is not None:
                    return self.fail_with, {"ok": False, "error_code": self.fail_with, "description": "Fake failure"}
                if not body.get("chat_id") or not body.get("text"):
                    return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
                self.sent.append({"chat_id": str(body["chat_id"]), "text": body["text"]})
                return 200, {"ok": True, "result": {"message_id": len(self.sent), "chat": {"id": body["chat_id"]}}}
            if method == "getUpdates":
                offset = int(body.get("offset") or 0)
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
                return 200, {"ok": True, "result": list(self.updates)}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def user_sends(self, *, chat_id: int, text: str, username: str = "trader") -> int:
        with self._lock:
            self._next_update += 1
            update = {
                "update_id": self._next_update,
                "message": {
                    "message_id": self._next_update,
                    "chat": {"id": chat_id, "type": "private", "username": username},
                    "from": {"id": chat_id, "username": username},
                    "text": text,
                },
            }
            self.updates.append(update)
            return self._next_update

    def replies_to(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == str(chat_id)]

    def start(self) -> "FakeTelegram":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeTelegram":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
