"""Alert notifiers: a structured log line always, and optionally a webhook and e-mail.

Notifications run on a worker thread with their own retries: a slow or failing notifier
never stops the stream and never loses the alert (the alerts topic already has it); each
failure is logged and counted.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

import orjson

from include.events import Alert
from include.settings import Settings
from streaming.metrics import StreamMetrics

log = logging.getLogger("climatewatch.alerts")

RETRIES = 4
BACKOFF_S = 0.5


def webhook_payload(alert: Alert) -> bytes:
    """JSON that Slack-style incoming webhooks accept (``text``), with the alert itself."""
    icon = ":fire:" if alert.status == "firing" else ":white_check_mark:"
    text = (
        f"{icon} [{alert.severity}] {alert.rule} {alert.status} in {alert.region}: {alert.message}"
    )
    return orjson.dumps({"text": text, "alert": orjson.loads(alert.to_json())})


class Notifier:
    def __init__(self, settings: Settings, metrics: StreamMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.queue: queue.Queue[Alert | None] = queue.Queue(maxsize=10_000)
        self.worker = threading.Thread(target=self._work, name="notifier", daemon=True)
        self.worker.start()

    def notify(self, alert: Alert) -> None:
        log.warning(
            "alert %s %s %s",
            alert.status,
            alert.rule,
            alert.region,
            extra={
                "alert_id": alert.alert_id,
                "severity": alert.severity,
                "value": alert.value,
                "threshold": alert.threshold,
                "text": alert.message,
            },
        )
        if self.settings.webhook_url or (self.settings.smtp_host and self.settings.alert_email_to):
            try:
                self.queue.put_nowait(alert)
            except queue.Full:
                self.metrics.notifications.labels("queue", "dropped").inc()
                log.error(
                    "notification queue full: alert kept on the topic only",
                    extra={"alert_id": alert.alert_id},
                )

    def close(self, timeout_s: float = 10.0) -> None:
        self.queue.put(None)
        self.worker.join(timeout=timeout_s)

    def _work(self) -> None:
        while (alert := self.queue.get()) is not None:
            if self.settings.webhook_url:
                self._with_retries("webhook", lambda alert=alert: self._post(alert))
            if self.settings.smtp_host and self.settings.alert_email_to:
                self._with_retries("email", lambda alert=alert: self._mail(alert))

    def _with_retries(self, name: str, send: object) -> None:
        for attempt in range(1, RETRIES + 1):
            try:
                send()  # type: ignore[operator]
                self.metrics.notifications.labels(name, "delivered").inc()
                return
            except Exception as exc:
                self.metrics.notifications.labels(name, "failed_attempt").inc()
                log.warning(
                    "%s notification failed (attempt %d/%d): %s", name, attempt, RETRIES, exc
                )
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        self.metrics.notifications.labels(name, "given_up").inc()
        log.error("%s notification given up after %d attempts", name, RETRIES)

    def _post(self, alert: Alert) -> None:
        request = urllib.request.Request(
            self.settings.webhook_url or "",
            data=webhook_payload(alert),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.settings.webhook_timeout_s) as response:
            if response.status >= 300:
                raise urllib.error.HTTPError(
                    request.full_url, response.status, "not accepted", response.headers, None
                )

    def _mail(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[ClimateWatch] {alert.rule} {alert.status} in {alert.region}"
        message["From"] = self.settings.alert_email_from
        message["To"] = self.settings.alert_email_to or ""
        message.set_content(
            f"{alert.message}\n\nrule: {alert.rule}\nseverity: {alert.severity}\nregion: {alert.region}\n"
            f"window: {alert.window_start} .. {alert.window_end}\nvalue: {alert.value}\nthreshold: {alert.threshold}\n"
            f"alert id: {alert.alert_id}\n"
        )
        with smtplib.SMTP(
            self.settings.smtp_host or "",
            self.settings.smtp_port,
            timeout=self.settings.webhook_timeout_s,
        ) as smtp:
            smtp.send_message(message)
