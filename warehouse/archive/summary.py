"""What the archive holds: per-partition status against Kafka, and the ledger's totals.

:func:`archive_status` compares the ledger with Kafka's offsets (lag per partition);
:func:`ledger_summary` and :func:`write_ledger_summary` total the ledger per topic into
``<root>/_summary.json``, the small document the DAG's Asset event and the UI read
instead of walking the whole ledger.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include.settings import Settings
from warehouse.archive.layout import archived_topics
from warehouse.archive.ledger import Ledger, filesystem_for, write_atomically
from warehouse.archive.run import PartitionResult, partitions_of

SUMMARY_FILE = "_summary.json"


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    archived_to: int | None  # the ledger's next offset
    beginning_offset: int
    end_offset: int
    lag: int  # records in Kafka not archived yet
    files: int
    rows: int
    rejected: int
    lost: int


def archive_status(settings: Settings, *, root: str | None = None) -> list[PartitionStatus]:
    """Per partition: archived up to, Kafka's offsets, lag, files, rows, rejected, lost."""
    from kafka import TopicPartition

    from include.kafka_clients import make_consumer, translate_kafka_errors

    ledger = Ledger(root or settings.archive_root)
    entries = ledger.entries()
    consumer = make_consumer(settings, group_id=None)
    statuses = []
    try:
        with translate_kafka_errors(settings):
            for topic in archived_topics(settings):
                tps = [TopicPartition(topic, p) for p in partitions_of(settings, topic, consumer)]
                beginnings = consumer.beginning_offsets(tps)
                ends = consumer.end_offsets(tps)
                for tp in tps:
                    mine = [e for e in entries if e.topic == topic and e.partition == tp.partition]
                    archived_to = max((e.end_offset for e in mine), default=None)
                    done = max(archived_to or 0, beginnings[tp])
                    statuses.append(
                        PartitionStatus(
                            topic=topic,
                            partition=tp.partition,
                            archived_to=archived_to,
                            beginning_offset=beginnings[tp],
                            end_offset=ends[tp],
                            lag=max(0, ends[tp] - done),
                            files=len({f.path for e in mine for f in e.files}),
                            rows=sum(e.rows for e in mine),
                            rejected=sum(e.rejected for e in mine),
                            lost=sum(e.lost_before for e in mine),
                        )
                    )
    finally:
        consumer.close()
    return statuses


def ledger_summary(root: str) -> dict[str, Any]:
    """Totals of the ledger per topic: what the DAG reports and puts on the Asset event."""
    summary: dict[str, Any] = {}
    for entry in Ledger(root).entries():
        topic = summary.setdefault(
            entry.topic,
            {"batches": 0, "rows": 0, "rejected": 0, "lost": 0, "files": set(), "partitions": {}},
        )
        topic["batches"] += 1
        topic["rows"] += entry.rows
        topic["rejected"] += entry.rejected
        topic["lost"] += entry.lost_before
        topic["files"].update(f.path for f in entry.files)
        part = str(entry.partition)
        topic["partitions"][part] = max(topic["partitions"].get(part, 0), entry.end_offset)
    for topic in summary.values():
        topic["files"] = len(topic["files"])
    return summary


def run_totals(results: Iterable[PartitionResult | dict[str, Any]]) -> dict[str, Any]:
    """Totals of one run's partition results (objects or their ``to_dict()``)."""
    bodies = [r.to_dict() if isinstance(r, PartitionResult) else r for r in results]
    return {
        "rows": sum(r["rows"] for r in bodies),
        "rejected": sum(r["rejected"] for r in bodies),
        "lost": sum(r["lost"] for r in bodies),
        "files": sum(r["files"] for r in bodies),
        "batch_ids": [b for r in bodies for b in r["batch_ids"]],
        "dates": sorted({d for r in bodies for d in r["dates"]}),
    }


def write_ledger_summary(root: str, last_run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``<root>/_summary.json``: the ledger's totals per topic and the last run's.

    A small document an operator (or a UI) reads instead of walking the whole ledger.
    """
    import json

    summary = {
        "updated_at": datetime.now(UTC).isoformat(),
        "topics": ledger_summary(root),
        "last_run": last_run or {},
    }
    fs, base = filesystem_for(root)
    write_atomically(fs, posixpath.join(base, SUMMARY_FILE), json.dumps(summary, indent=1).encode())
    return summary
