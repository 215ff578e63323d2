"""Notification service: notifications per second to a local webhook, and alert latency.

`climatewatch notify` runs as its own process (its default route: every alert to
CLIMATEWATCH_WEBHOOK_URL, grouped by rule and region) against a fresh broker; the webhook
is a ThreadingHTTPServer in this process that answers 200 at once and notes when each
alert (``body["alerts"]``) arrived. Two measurements, each against a baseline of the same
run:

1. Throughput: N alerts (default 20,000; --quick 2,000; distinct ids, keyed by region,
   50 regions) preloaded on the alerts topic; the service is started and timed until the
   webhook got all N (from its first request: the service's start-up — Python, state
   topics, group join — is shown on its own row). Baseline: a bare kafka-python loop in a
   consumer group of its own over the same records (poll, orjson decode), timed from its
   partitions' assignment. Also the service's peak RSS, and whether its delivery log and
   its commits caught up.
2. Latency: with the service caught up, alerts are produced in real time (default 100/s
   for 60 s; --quick 50/s for 15 s). Latency of an alert = its request's arrival at the
   webhook minus when it was produced (also in its ``emitted_at``). Baseline under the same
   load: a bare consumer in its own process on the alerts topic, record timestamp → poll
   returns it (one Kafka hop, as in stream_latency.py).

Prints a table; --json adds one JSON object of the figures as the last line.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._broker import bench_broker, bench_settings
from bench._common import hop_probe, peak_rss_mb, percentile, print_json
from include.contract import format_ts
from include.events import Alert
from include.kafka_clients import make_consumer, make_producer
from include.settings import Settings

REGIONS = [f"bench-r{r:02d}" for r in range(50)]
STOP_TIMEOUT_S = 30.0


def fail(reason: str) -> SystemExit:
    """Exit non-zero with a one-line reason."""
    return SystemExit(f"notify_throughput: {' '.join(reason.split())}")


# --- the webhook ------------------------------------------------------------------------------
class Webhook:
    """A local receiver: 200 at once; the arrival (wall clock) of every alert id it got."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.arrived: dict[str, float] = {}  # alert id -> first arrival (time.time())
        self.requests: list[tuple[float, int]] = []  # (time.monotonic(), alerts in the body)
        self.alerts = 0  # alerts in bodies, repeats included
        self.distinct: dict[str, int] = {}  # id prefix ("tp", "lat") -> distinct ids arrived
        self.malformed = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/notify"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _received(self, body: bytes) -> None:
        now, mono = time.time(), time.monotonic()
        try:
            ids = [str(a["alert_id"]) for a in orjson.loads(body)["alerts"]]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            ids = None
        with self.changed:
            if ids is None:
                self.malformed += 1
            else:
                self.requests.append((mono, len(ids)))
                self.alerts += len(ids)
                for alert_id in ids:
                    if alert_id not in self.arrived:
                        self.arrived[alert_id] = now
                        prefix = alert_id.partition("-")[0]
                        self.distinct[prefix] = self.distinct.get(prefix, 0) + 1
            self.changed.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                webhook._received(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --- the service --------------------------------------------------------------------------------
class Service:
    """``climatewatch notify`` as its own process, its log in a file."""

    def __init__(self, settings: Settings, webhook_url: str, log_path: Path) -> None:
        from include.ops.stack import settings_environment

        env = {
            **os.environ,
            **settings_environment(settings),
            "CLIMATEWATCH_WEBHOOK_URL": webhook_url,
            "CLIMATEWATCH_NOTIFY_METRICS_PORT": "0",
        }
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "include.ops.cli", "notify"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[1],
        )

    def last_log_line(self) -> str:
        lines = self.log_path.read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "(no output)"

    def check_alive(self, what: str) -> None:
        code = self.process.poll()
        if code is not None:
            raise fail(f"the notify service exited ({code}) {what}: {self.last_log_line()}")

    def stop(self) -> tuple[float, int | None]:
        """SIGTERM, then a kill after a timeout: (seconds to exit, exit code; None: killed)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
                self._log.close()
                return time.monotonic() - started, None
        self._log.close()
        return time.monotonic() - started, self.process.returncode


def wait_until(
    webhook: Webhook, done: Callable[[], bool], timeout_s: float, what: str, service: Service
) -> None:
    """Until ``done()`` (checked whenever the webhook gets a request), or exit with a reason."""
    deadline = time.monotonic() + timeout_s
    with webhook.changed:
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
            webhook.changed.wait(min(left, 0.5))
            service.check_alive(f"while waiting for {what}")


# --- alerts ------------------------------------------------------------------------------------
def make_alert(alert_id: str, region: str, emitted: datetime) -> bytes:
    start = emitted.replace(second=0, microsecond=0) - timedelta(minutes=1)
    return Alert(
        alert_id=alert_id,
        rule="heat",
        severity="warning",
        region=region,
        window_start=format_ts(start),
        window_end=format_ts(start + timedelta(minutes=1)),
        value=35.2,
        threshold=30.0,
        status="firing",
        message="mean above threshold (benchmark)",
        emitted_at=format_ts(emitted),
    ).to_json()


def preload(settings: Settings, total: int) -> float:
    """``total`` alerts ``tp-NNNNNN`` on the alerts topic; returns the seconds it took."""
    started = time.perf_counter()
    producer = make_producer(settings, linger_ms=20, batch_size=512 * 1024)
    now = datetime.now(UTC)
    for i in range(total):
        region = REGIONS[i % len(REGIONS)]
        producer.send(
            settings.topic_alerts, key=region.encode(), value=make_alert(f"tp-{i:06d}", region, now)
        )
    producer.flush(timeout=300)
    producer.close()
    return time.perf_counter() - started


def bare_consume(settings: Settings, total: int, timeout_s: float) -> float:
    """The throughput baseline: a bare consume loop in a group of its own over the alerts
    topic (orjson decode); alerts per second from its assignment to the ``total``-th."""
    from kafka import ConsumerRebalanceListener

    assigned_at: list[float] = []

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        def on_partitions_assigned(self, assigned: Any) -> None:
            assigned_at.append(time.perf_counter())

    consumer = make_consumer(settings, group_id=f"bench-bare-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([settings.topic_alerts], listener=Listener())
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < total:
        if time.monotonic() > deadline:
            raise fail(f"the bare consumer read {seen:,} of {total:,} alerts in {timeout_s:.0f} s")
        for batch in consumer.poll(timeout_ms=500).values():
            for record in batch:
                orjson.loads(record.value)
            seen += len(batch)
    elapsed = time.perf_counter() - assigned_at[0]
    consumer.close()
    return total / elapsed


def log_and_commits(settings: Settings, timeout_s: float) -> tuple[int, int]:
    """(records on the delivery log, alerts the notify group has not committed): waits up
    to ``timeout_s`` for its commits to reach the end of the alerts topic."""
    from kafka import TopicPartition

    consumer = make_consumer(settings, group_id=settings.notify_group_id)
    try:
        log_tps = [
            TopicPartition(settings.topic_notify_deliveries, p)
            for p in consumer.partitions_for_topic(settings.topic_notify_deliveries) or ()
        ]
        alert_tps = [
            TopicPartition(settings.topic_alerts, p)
            for p in consumer.partitions_for_topic(settings.topic_alerts) or ()
        ]
        deadline = time.monotonic() + timeout_s
        while True:
            ends = consumer.end_offsets(alert_tps)
            behind = sum(end - (consumer.committed(tp) or 0) for tp, end in ends.items())
            if behind == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        logged = sum(consumer.end_offsets(log_tps).values())
    finally:
        consumer.close()  # never subscribed: leaves the group's offsets alone
    return logged, behind


# --- latency -----------------------------------------------------------------------------------
def produce_steady(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    """Alerts ``lat-NNNNNN`` in real time at ``rate`` for ``seconds``: id -> send time."""
    producer = make_producer(settings, linger_ms=1)
    sent_at: dict[str, float] = {}
    started = time.time()
    sent = 0
    while (now := time.time()) - started < seconds:
        due = int((now - started) * rate)
        while sent < due:
            region = REGIONS[sent % len(REGIONS)]
            alert_id = f"lat-{sent:06d}"
            at = time.time()
            value = make_alert(alert_id, region, datetime.fromtimestamp(at, UTC))
            sent_at[alert_id] = at
            producer.send(settings.topic_alerts, key=region.encode(), value=value)
            sent += 1
        time.sleep(0.001)
    producer.flush(timeout=60)
    producer.close()
    return sent_at


def measure_latency(
    settings: Settings, webhook: Webhook, service: Service, rate: float, seconds: float
) -> tuple[list[float], list[float], float]:
    """(service latencies in the order the alerts were sent, one-hop latencies) in
    seconds, under the same steady load, and the alerts per second the webhook got from the
    first send to the last arrival (below the offered rate: the service fell behind)."""
    ctx = mp.get_context("spawn")
    ready, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    probe = ctx.Process(
        target=hop_probe, args=(settings, settings.topic_alerts, ready, stop, results)
    )
    probe.start()
    try:
        if not ready.wait(timeout=60):
            raise fail("the baseline consumer was not assigned its partitions within 60 s")
        time.sleep(1)
        sent_at = produce_steady(settings, rate, seconds)
        wait_until(
            webhook,
            lambda: webhook.distinct.get("lat", 0) >= len(sent_at),  # ids sent: all distinct
            60 + len(sent_at) / 20,  # a backlog drained at 20 alerts/s at least
            f"the {len(sent_at):,} alerts of the latency run at the webhook",
            service,
        )
        stop.set()
        hops: list[float] = results.get(timeout=60)
    finally:
        stop.set()
        probe.join(timeout=30)
        if probe.is_alive():
            probe.kill()
    with webhook.changed:
        latencies = [webhook.arrived[alert_id] - at for alert_id, at in sent_at.items()]
        last = max(webhook.arrived[alert_id] for alert_id in sent_at)
    if len(hops) < len(sent_at):
        raise fail(f"the baseline consumer saw {len(hops):,} of {len(sent_at):,} alerts")
    delivered_rate = len(sent_at) / (last - min(sent_at.values()))
    return latencies, hops, delivered_rate


# --- the run -----------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--alerts", type=int, help="preloaded alerts (default 20,000)")
    parser.add_argument("--rate", type=float, help="alerts/s of the latency run (default 100)")
    parser.add_argument("--seconds", type=float, help="length of the latency run (default 60)")
    parser.add_argument("--json", action="store_true", help="the figures as JSON, last line")
    return parser.parse_args()


def ms(seconds: float) -> str:
    return f"{1000 * seconds:,.1f}"


def main() -> None:
    args = parse_args()
    total = args.alerts or (2_000 if args.quick else 20_000)
    rate = args.rate or (50.0 if args.quick else 100.0)
    seconds = args.seconds or (15.0 if args.quick else 60.0)
    deliver_timeout_s = 120 + total / 50  # 50 alerts/s at least, after a 2-minute start
    tag = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {"bench": "notify_throughput", "alerts": total}

    with bench_broker() as (broker, tmp):
        settings = bench_settings(
            broker,
            tmp,
            topic_notify_deliveries=f"bench-{tag}-deliveries",
            topic_notify_dlq=f"bench-{tag}-undeliverable",
            topic_silences=f"bench-{tag}-silences",
            notify_group_id=f"bench-{tag}-notify",
        )
        preload_s = preload(settings, total)
        print(f"preloaded {total:,} alerts in {preload_s:.1f} s", flush=True)
        bare_rates = [bare_consume(settings, total, deliver_timeout_s) for _ in range(3)]
        bare_rate = statistics.median(bare_rates)  # each in a group of its own, from offset 0
        print(
            f"bare consume loop: {', '.join(f'{r:,.0f}' for r in bare_rates)} alerts/s",
            flush=True,
        )

        webhook = Webhook()
        service = Service(settings, webhook.url, tmp / "notify.log")
        try:
            wait_until(
                webhook,
                lambda: webhook.distinct.get("tp", 0) >= total,
                deliver_timeout_s,
                f"all {total:,} preloaded alerts at the webhook",
                service,
            )
            with webhook.changed:
                first_at, first_n = webhook.requests[0]
                last_at = webhook.requests[-1][0]
                notifications = len(webhook.requests)
                repeats = webhook.alerts - len(webhook.arrived)
                malformed = webhook.malformed
            service_rate = (total - first_n) / (last_at - first_at) if last_at > first_at else 0.0
            startup_s = first_at - service.started
            launch_to_all_s = last_at - service.started
            print(f"service: {service_rate:,.0f} alerts/s", flush=True)
            logged, behind = log_and_commits(settings, 30)
            rss_after_throughput = peak_rss_mb(service.process.pid)

            latencies, hops, delivered_rate = measure_latency(
                settings, webhook, service, rate, seconds
            )
            with webhook.changed:
                latency_notifications = len(webhook.requests) - notifications
            rss = peak_rss_mb(service.process.pid)
        finally:
            stop_s, code = service.stop()
            webhook.stop()

    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    hop_p50, hop_p99 = statistics.median(hops), percentile(hops, 0.99)
    quarter = max(1, len(latencies) // 4)  # a p50 growing from the first to the last
    early, late = statistics.median(latencies[:quarter]), statistics.median(latencies[-quarter:])
    out.update(
        bare_alerts_per_s=round(bare_rate, 1),
        service_alerts_per_s=round(service_rate, 1),
        ratio_service_bare=round(service_rate / bare_rate, 4),
        service_startup_s=round(startup_s, 2),
        service_launch_to_all_s=round(launch_to_all_s, 2),
        notifications=notifications,
        alerts_per_notification=round(total / notifications, 2),
        repeated_alerts=repeats,
        malformed_bodies=malformed,
        delivery_log_records=logged,
        uncommitted_after_30s=behind,
        rss_mb_after_throughput=round(rss_after_throughput, 1),
        service_peak_rss_mb=round(rss, 1),
        latency_rate_per_s=rate,
        latency_seconds=seconds,
        latency_alerts=len(latencies),
        latency_notifications=latency_notifications,
        latency_delivered_per_s=round(delivered_rate, 1),
        latency_p50_ms=round(1000 * p50, 2),
        latency_p50_first_quarter_ms=round(1000 * early, 2),
        latency_p50_last_quarter_ms=round(1000 * late, 2),
        latency_p99_ms=round(1000 * p99, 2),
        hop_p50_ms=round(1000 * hop_p50, 2),
        hop_p99_ms=round(1000 * hop_p99, 2),
        ratio_p50_service_hop=round(p50 / hop_p50, 2),
        ratio_p99_service_hop=round(p99 / hop_p99, 2),
        sigterm_to_exit_s=round(stop_s, 2),
        service_exit_code=code,
    )

    print()
    print(f"| notify throughput, {total:,} alerts preloaded, {len(REGIONS)} regions | value |")
    print("|---|---|")
    print(
        f"| (a) bare kafka-python consume loop + orjson decode, median of 3 (alerts/s) "
        f"| {bare_rate:,.0f} |"
    )
    print(
        f"| (b) climatewatch notify → local webhook, first to last request (alerts/s) "
        f"| {service_rate:,.0f} |"
    )
    print(f"| ratio b/a | {service_rate / bare_rate:.3f} |")
    print(f"| service start-up: launch → first request (s) | {startup_s:.1f} |")
    print(f"| launch → all {total:,} at the webhook (s) | {launch_to_all_s:.1f} |")
    print(
        f"| notifications (requests) / alerts per notification | {notifications:,} / "
        f"{total / notifications:.1f} |"
    )
    print(
        f"| alerts received more than once / bodies without alerts | {repeats:,} / {malformed:,} |"
    )
    print(f"| delivery-log records / alerts not committed 30 s after | {logged:,} / {behind:,} |")
    print(
        f"| service peak RSS (MB), after throughput / at the end | "
        f"{rss_after_throughput:,.0f} / {rss:,.0f} |"
    )
    print()
    print(
        f"| notify latency at {rate:,.0f} alerts/s for {seconds:.0f} s "
        f"({len(latencies):,} alerts) | p50 (ms) | p99 (ms) |"
    )
    print("|---|---|---|")
    print(f"| (c) produce → webhook request, through the service | {ms(p50)} | {ms(p99)} |")
    print(f"| (d) baseline: one Kafka hop, produce → bare poll | {ms(hop_p50)} | {ms(hop_p99)} |")
    print(f"| ratio c/d | {p50 / hop_p50:.1f} | {p99 / hop_p99:.1f} |")
    print(
        f"| (c) p50 of the first / last quarter of the run (ms; growing: a backlog) "
        f"| {ms(early)} / {ms(late)} | |"
    )
    print(
        f"| (c) alerts/s at the webhook, first send → last arrival (offered {rate:,.0f}) "
        f"| {delivered_rate:,.1f} | |"
    )
    print(
        f"| (c) notifications / alerts per notification | {latency_notifications:,} / "
        f"{len(latencies) / max(1, latency_notifications):.2f} | |"
    )
    print()
    print(f"service stopped by SIGTERM in {stop_s:.1f} s, exit code {code}")
    if args.json:
        print_json(out)
    if code != 0:
        raise fail(f"the notify service exited with {code} on SIGTERM")


if __name__ == "__main__":
    main()
