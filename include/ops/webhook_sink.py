"""A local webhook receiver for ``make demo``: shows the notifications a person would get.

The demo points the notification service's default route at it when no receiver is
configured, so a new user sees an alert travel from a sensor to a message.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from include.processes import free_port


@dataclass
class Received:
    count: int = 0
    last: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


class WebhookSink:
    """Accepts POSTed notifications on 127.0.0.1 and keeps their count and the last text."""

    def __init__(self) -> None:
        self.received = Received()
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/notifications"

    def start(self) -> WebhookSink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                text = ""
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                    text = str(orjson.loads(body).get("text", ""))
                with received.lock:
                    received.count += 1
                    received.last = text or body[:200].decode("utf-8", "replace")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:  # the demo's screen is the log
                return

        return Handler
