"""Notifiers against real local servers: a webhook that fails first, and an SMTP server."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from include.events import Alert
from include.settings import load_settings
from streaming.metrics import StreamMetrics
from streaming.notify import Notifier

pytestmark = pytest.mark.unit

ALERT = Alert(
    alert_id="heat-lyon-abc",
    rule="heat",
    severity="warning",
    region="lyon",
    window_start="2026-07-01T12:00:00.000Z",
    window_end="2026-07-01T12:01:00.000Z",
    value=34.2,
    threshold=30.0,
    status="firing",
    message="mean 34.2 °C above 30 °C in lyon",
    emitted_at="2026-07-01T12:01:31.000Z",
)


class FlakyWebhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    failures_left = 2

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if FlakyWebhook.failures_left > 0:
            FlakyWebhook.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        FlakyWebhook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to receive one message."""

    messages: ClassVar[list[str]] = []

    def handle(self) -> None:
        self.wfile.write(b"220 test ESMTP\r\n")
        data: list[str] = []
        in_data = False
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if in_data:
                if line == ".":
                    in_data = False
                    SmtpHandler.messages.append("\n".join(data))
                    self.wfile.write(b"250 queued\r\n")
                else:
                    data.append(line)
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250 test\r\n")
            elif verb == "DATA":
                in_data = True
                self.wfile.write(b"354 go on\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def webhook() -> Iterator[str]:
    FlakyWebhook.received, FlakyWebhook.failures_left = [], 2
    server = HTTPServer(("127.0.0.1", 0), FlakyWebhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture
def smtp_port() -> Iterator[int]:
    SmtpHandler.messages = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def wait_for(condition: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_webhook_that_fails_twice_then_succeeds_gets_the_alert(webhook: str) -> None:
    metrics = StreamMetrics()
    notifier = Notifier(load_settings(webhook_url=webhook), metrics)
    notifier.notify(ALERT)
    wait_for(lambda: FlakyWebhook.received)
    notifier.close()
    payload = FlakyWebhook.received[0]
    assert "heat firing in lyon" in payload["text"]
    assert payload["alert"]["alert_id"] == "heat-lyon-abc"
    assert metrics.notifications.labels("webhook", "failed_attempt")._value.get() == 2
    assert metrics.notifications.labels("webhook", "delivered")._value.get() == 1


def test_unreachable_webhook_never_blocks_and_is_counted() -> None:
    metrics = StreamMetrics()
    notifier = Notifier(
        load_settings(webhook_url="http://127.0.0.1:9/nothing", webhook_timeout_s=0.5), metrics
    )
    started = time.monotonic()
    notifier.notify(ALERT)
    assert time.monotonic() - started < 0.1  # the stream thread is never held up
    wait_for(lambda: metrics.notifications.labels("webhook", "given_up")._value.get() == 1, 30)
    notifier.close()


def test_email_reaches_a_real_smtp_server(smtp_port: int) -> None:
    notifier = Notifier(
        load_settings(smtp_host="127.0.0.1", smtp_port=smtp_port, alert_email_to="ops@example.org"),
        StreamMetrics(),
    )
    notifier.notify(ALERT)
    wait_for(lambda: SmtpHandler.messages)
    notifier.close()
    message = SmtpHandler.messages[0]
    assert "Subject: [ClimateWatch] heat firing in lyon" in message
    assert "To: ops@example.org" in message
    assert "alert id: heat-lyon-abc" in message
