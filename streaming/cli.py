"""``climatewatch stream`` and ``climatewatch alerts tail``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console()
alerts_app = typer.Typer(
    help="Alerts: follow them, silence a region, acknowledge one.", no_args_is_help=True
)


def stream(
    until_caught_up: Annotated[
        bool, typer.Option(help="Exit once everything in the topic at start is processed.")
    ] = False,
    max_runtime: Annotated[float | None, typer.Option(help="Exit after this many seconds.")] = None,
) -> None:
    """Run the speed layer: windowed regional statistics and real-time alerts."""
    from include.logs import configure_logging
    from include.settings import get_settings
    from streaming.processor import StreamProcessor, install_signal_handlers

    configure_logging()
    settings = get_settings()
    processor = StreamProcessor(settings)
    processor.metrics.serve(settings.metrics_port)
    install_signal_handlers(processor)
    processor.run(until_caught_up=until_caught_up, max_runtime_s=max_runtime)


@alerts_app.command("tail")
def tail(
    from_beginning: Annotated[bool, typer.Option(help="Show past alerts first.")] = False,
) -> None:
    """Show alerts as they arrive on the alerts topic (Ctrl-C stops)."""
    from kafka import TopicPartition

    from include.events import Alert
    from include.kafka_clients import make_consumer
    from include.settings import get_settings

    settings = get_settings()
    consumer = make_consumer(settings)
    partitions = [
        TopicPartition(settings.topic_alerts, p)
        for p in consumer.partitions_for_topic(settings.topic_alerts) or ()
    ]
    consumer.assign(partitions)
    (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*partitions)
    console.print(f"alerts on {settings.topic_alerts} (Ctrl-C stops)")
    try:
        while True:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    alert = Alert.from_json(record.value)
                    style = "bold red" if alert.status == "firing" else "green"
                    console.print(
                        f"[{style}]{alert.status:<8}[/] {alert.window_end} {alert.severity:<8} "
                        f"{alert.rule:<15} {alert.region:<12} {alert.message}"
                    )
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
