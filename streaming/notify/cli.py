"""``climatewatch notify`` and ``climatewatch alerts silence|silences|unsilence|ack``."""

from __future__ import annotations

import getpass
import signal
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from include.errors import ClimateWatchError
from include.settings import Settings
from streaming.notify.state import Silences

console = Console()


def notify(
    max_runtime: Annotated[float | None, typer.Option(help="Exit after this many seconds.")] = None,
) -> None:
    """Run the notification service: alerts from the alerts topic to their receivers."""
    from include.logs import configure_logging
    from include.settings import get_settings
    from streaming.notify.service import NotifyService

    configure_logging()
    settings = get_settings()
    service = NotifyService(settings)
    service.metrics.serve(settings.notify_metrics_port)
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run(max_runtime_s=max_runtime)


def _publish(settings: Settings, key: bytes, value: bytes | None) -> None:
    """One record to the silences topic, acknowledged by the brokers, or a one-line error."""
    from include.kafka_clients import make_producer, translate_kafka_errors

    producer = make_producer(settings, linger_ms=0)
    try:
        with translate_kafka_errors(settings):
            producer.send(settings.topic_silences, value, key).get(
                timeout=settings.producer_delivery_timeout_ms / 1000
            )
    finally:
        producer.close(timeout=10)


def read_silences(settings: Settings) -> Silences:
    """The silences topic read to its end (the state every notification service holds)."""
    from include.kafka_clients import make_consumer, translate_kafka_errors
    from streaming.notify.reading import read_to_end

    consumer = make_consumer(settings)
    state = Silences()
    try:
        with translate_kafka_errors(settings):
            read_to_end(
                settings,
                consumer,
                [settings.topic_silences],
                lambda _topic, key, value: state.apply(key, value),
                timeout_s=30,
            )
    finally:
        consumer.close()
    return state


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container without a passwd entry
        return "unknown"


def silence(
    region: Annotated[str, typer.Option(help="Region to silence.")],
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d, 1h30m.")],
    comment: Annotated[str, typer.Option(help="Why (maintenance, a known fault…).")],
    rule: Annotated[str | None, typer.Option(help="Only this rule (default: every rule).")] = None,
) -> None:
    """Hold back the notifications of a region (counted, delivered after if still firing)."""
    from include.settings import get_settings
    from streaming.notify.state import Silence, encode, parse_duration

    length = parse_duration(duration)
    if length is None:
        raise ClimateWatchError(f"--for {duration!r}: expected a duration like 30m, 2h, 1d")
    if not comment.strip():
        raise ClimateWatchError("--comment: say why the region is silenced")
    record = Silence.new(region, rule, length, comment, _who())
    _publish(get_settings(), *encode(record))
    console.print(
        f"silence {record.silence_id}: {region} {rule or 'every rule'} until {record.ends_at}"
    )


def silences(
    all_: Annotated[bool, typer.Option("--all", help="Ended silences too.")] = False,
) -> None:
    """List the silences in force."""
    from include.settings import get_settings

    now = datetime.now(UTC)
    listed = read_silences(get_settings()).listed(now, include_ended=all_)
    if not listed:
        console.print("no silence in force")
    for s in listed:  # one line each: readable, and greppable
        console.print(
            f"{s.silence_id}  {s.region}  {s.rule or 'every rule'}  {s.starts_at} .. {s.ends_at}"
            f"  by {s.created_by}: {s.comment}",
            soft_wrap=True,
            markup=False,
        )


def unsilence(
    silence_id: Annotated[str, typer.Argument(help="Id from `alerts silences`.")],
) -> None:
    """End a silence now (its held alerts still firing are delivered)."""
    from include.settings import get_settings
    from streaming.notify.state import encode

    settings = get_settings()
    found = read_silences(settings).silences.get(silence_id)
    if found is None:
        raise ClimateWatchError(f"no silence {silence_id!r}: see `climatewatch alerts silences`")
    _publish(settings, *encode(found.ended(datetime.now(UTC))))
    console.print(f"silence {silence_id} ended")


def ack(
    alert_id: Annotated[str, typer.Argument(help="The firing alert's id.")],
    comment: Annotated[str, typer.Option(help="Who handles it, what is done.")] = "",
) -> None:
    """Stop the reminders of a firing alert (its resolution is still sent)."""
    from include.contract import format_ts
    from include.settings import get_settings
    from streaming.notify.state import Ack, encode

    record = Ack(alert_id, format_ts(datetime.now(UTC)), _who(), comment)
    _publish(get_settings(), *encode(record))
    console.print(f"alert {alert_id} acknowledged: no more reminders")


def register(alerts_app: typer.Typer) -> None:
    alerts_app.command("silence")(silence)
    alerts_app.command("silences")(silences)
    alerts_app.command("unsilence")(unsilence)
    alerts_app.command("ack")(ack)
