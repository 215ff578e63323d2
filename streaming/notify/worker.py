"""One receiver's worker: its notifications delivered in order, retried until done.

A transient failure (down, 5xx, a timeout) is retried with a growing backoff for
``CLIMATEWATCH_NOTIFY_GIVE_UP_AFTER_S``; a refusal for good is parked at once. The outcome
goes back to the service, which records it and then counts the alerts done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from include.events import Alert
from streaming.notify.config import ResolvedRoute
from streaming.notify.messages import Notification
from streaming.notify.receivers import PermanentDeliveryError, Sender, TransientDeliveryError

if TYPE_CHECKING:
    from streaming.notify.service import NotifyService

log = logging.getLogger("climatewatch.notify")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 15.0


@dataclass
class Job:
    """One notification for one receiver, and the alert offsets waiting for it."""

    notification: Notification
    route: ResolvedRoute
    offsets: list[tuple[Any, int]] = field(default_factory=list)  # (TopicPartition, offset)
    read_at: float = field(default_factory=time.monotonic)
    reminder_of: bytes | None = None  # the log key of a reminder or a silence-end delivery


@dataclass
class PendingGroup:
    route: ResolvedRoute
    key: str
    first_at: float
    alerts: list[Alert] = field(default_factory=list)
    offsets: list[tuple[Any, int]] = field(default_factory=list)
    read_at: float = field(default_factory=time.monotonic)


class ReceiverWorker(threading.Thread):
    """Delivers one receiver's notifications in order, retrying until done."""

    def __init__(self, service: NotifyService, sender: Sender) -> None:
        super().__init__(name=f"notify-{sender.name}", daemon=True)
        self.service = service
        self.sender = sender
        self.jobs: queue.Queue[Job | None] = queue.Queue()

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            try:
                self._deliver(job)
            except Exception as exc:  # the log could not be written: stop the service
                self.service.fail(exc)
                return

    def _deliver(self, job: Job) -> None:
        service = self.service
        notification = job.notification
        started = time.monotonic()
        backoff = BACKOFF_FIRST_S
        attempts = 0
        while True:
            if service.stopping.is_set():
                return  # not recorded: read again (uncommitted) or re-swept after a restart
            attempts += 1
            try:
                self.sender.send(notification)
            except PermanentDeliveryError as exc:
                service.park(job, str(exc))
                return
            except TransientDeliveryError as exc:
                service.metrics.deliveries.labels(self.sender.name, "retried").inc()
                if attempts == 1 or attempts % 10 == 0:
                    log.warning(
                        "receiver failed, retrying",
                        extra={
                            "receiver": self.sender.name,
                            "delivery_id": notification.delivery_id,
                            "attempt": attempts,
                            "error": str(exc),
                        },
                    )
                if time.monotonic() - started >= service.settings.notify_give_up_after_s:
                    service.park(job, f"gave up after {attempts} attempts: {exc}")
                    return
                service.stopping.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            service.delivered(job, attempts)
            return
