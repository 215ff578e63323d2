"""Data quality: validate each new archive batch with Great Expectations, exactly once.

Which batches are new comes from the archive's ledger: a batch of the readings topic
without a result file under ``<data_dir>/quality/results/`` has not been validated. Each
is read from its own files (rows filtered by its partition and offset range, so a batch
compacted into a shared file is still exactly its own rows), validated against the suite
of :mod:`warehouse.quality.expectations`, and recorded three ways:

- ``quality/results/<batch_id>.json``: the full result, for people and for re-runs;
- ``quality/summary.parquet``: one row per batch, date, region and expectation (region is
  null for batch-wide expectations) — the warehouse's ``quality_results`` view;
- ``quality/data_docs/``: Great Expectations' static HTML site, rebuilt after each run.

A critical failure is quarantined (:mod:`warehouse.archive.quarantine`): a row-level one
sets exactly the failing readings aside — Great Expectations names them (by Kafka offset)
— and the batch's other readings stay in the warehouse; of repeated (sensor, time)
readings the first archived stays. A batch-wide one (the schema) quarantines the whole
batch. Each expectation declares which (:func:`~warehouse.quality.expectations.set_aside_by`).
The warehouse recomputes the dates of what moved, and a ``data_quality`` alert saying how
many readings were set aside goes to the alerts topic. A batch validated again (``--date``)
is read whole, set-aside readings included, so it gets the same verdict and moves nothing
twice. The caller (DAG, CLI) decides whether a critical failure fails the run.

Great Expectations is imported inside functions: it takes seconds to import, and DAG
files and the CLI must stay quick.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.errors import ClimateWatchError
from include.settings import Settings
from warehouse.archive.ledger import Ledger, LedgerEntry, filesystem_for
from warehouse.archive.quarantine import (
    BATCH,
    QUARANTINE_DIR,
    ROW_COLUMNS,
    ROWS,
    QuarantineRecord,
    quarantine_batch,
    quarantine_rows,
    quarantined,
    quarantined_rows,
    release_batch,
)
from warehouse.quality.expectations import (
    CRITICAL,
    RECENT_BATCH,
    SET_ASIDE_BATCH,
    SET_ASIDE_REPEATS,
    BatchFacts,
    archive_column_types,
    batch_span_s,
    expectation_name,
    future_limit,
    set_aside_by,
    with_derived_columns,
)
from warehouse.quality.gx import GxValidator
from warehouse.quality.summary import observed, summary_rows, write_summary

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

RULE = "data_quality"
HISTORY_BATCHES = 5  # recent batches of a partition that say how many sensors it carries


# --- what a run found ------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One failed expectation of one batch."""

    expectation: str
    severity: str
    unexpected_count: int | None
    observed: str | None = None

    def describe(self) -> str:
        count = "" if self.unexpected_count is None else f": {self.unexpected_count:,} unexpected"
        seen = f" (observed {self.observed})" if self.observed not in (None, "") else ""
        return f"{self.expectation} [{self.severity}]{count}{seen}"


@dataclass
class BatchOutcome:
    batch_id: str
    partition: int
    rows: int
    sensors: int
    dates: list[str]
    failures: list[Finding] = field(default_factory=list)
    quarantined: bool = False
    released: bool = False
    seconds: float = 0.0
    quarantine_scope: str | None = None  # "rows" (some readings set aside) or "batch"
    set_aside: int = 0  # readings of the batch out of the warehouse, in quarantine

    @property
    def critical(self) -> list[Finding]:
        return [f for f in self.failures if f.severity == CRITICAL]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.failures if f.severity != CRITICAL]

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["failures"] = [asdict(f) for f in self.failures]
        return body


@dataclass
class QualityRun:
    """What one validation run did (JSON-able for XCom and the CLI)."""

    batches: list[BatchOutcome] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0
    data_docs: str = ""
    alerts_published: int = 0

    @property
    def critical_batches(self) -> list[BatchOutcome]:
        return [b for b in self.batches if b.critical]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": [b.to_dict() for b in self.batches],
            "validated": len(self.batches),
            "rows": self.rows,
            "critical_batches": [b.batch_id for b in self.critical_batches],
            "warning_batches": [b.batch_id for b in self.batches if b.warnings],
            "quarantined": [b.batch_id for b in self.batches if b.quarantined],
            "set_aside": sum(b.set_aside for b in self.batches),
            "seconds": round(self.seconds, 3),
            "data_docs": self.data_docs,
            "alerts_published": self.alerts_published,
        }


# --- which batches ----------------------------------------------------------------------------
def _result_path(settings: Settings, batch_id: str) -> Path:
    return settings.quality_results_dir / f"{batch_id}.json"


def _load_result(settings: Settings, batch_id: str) -> dict[str, Any] | None:
    path = _result_path(settings, batch_id)
    return json.loads(path.read_text()) if path.exists() else None


def batches_to_validate(
    settings: Settings,
    dates: Iterable[str] | None = None,
    entries: list[LedgerEntry] | None = None,
) -> list[LedgerEntry]:
    """Readings batches never validated; with ``dates``, every batch touching them again."""
    if entries is None:
        entries = Ledger(settings.archive_root).entries(settings.topic_readings)
    if dates is not None:
        wanted = set(dates)
        return [e for e in entries if wanted & set(e.dates)]
    return [e for e in entries if not _result_path(settings, e.batch_id).exists()]


# --- reading one batch ------------------------------------------------------------------------
def load_batch(
    settings: Settings,
    entry: LedgerEntry,
    *,
    held: dict[str, QuarantineRecord] | None = None,
) -> pd.DataFrame:
    """The batch's readings as the warehouse would see them (region from the Hive path,
    which the ledger records with each file), with any readings set aside from it.

    Quarantined batches are read from the quarantine area, so a batch can be validated
    again (``--date``) whatever its state; ``held`` (quarantine records by batch id) saves
    reading them again when the caller has them.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fs, base = filesystem_for(settings.archive_root)
    if held is None:
        held = {r.batch_id: r for r in quarantined(settings.archive_root)}
    record = held.get(entry.batch_id)
    moved = record is not None and record.scope == BATCH
    # files all of whose readings were set aside are deleted (an interrupted quarantine
    # may not have taken them out of the ledger yet): their readings are in rows.parquet
    emptied = {f["path"] for f in record.emptied} if record is not None else set()
    tables: list[pa.Table] = []
    for archived in entry.files:
        if archived.dataset != "readings" or archived.path in emptied:
            continue
        relative = f"{QUARANTINE_DIR}/{entry.batch_id}/{archived.path}" if moved else archived.path
        with fs.open_input_file(f"{base}/{relative}") as source:
            table = pq.read_table(source)
        mine = pc.and_(
            pc.equal(table["kafka_partition"], entry.partition),
            pc.and_(
                pc.greater_equal(table["kafka_offset"], entry.start_offset),
                pc.less(table["kafka_offset"], entry.end_offset),
            ),
        )
        table = table.filter(mine)
        table = table.append_column(
            "region", pa.array([archived.region] * table.num_rows, pa.string())
        )
        tables.append(table)
    if record is not None and record.scope == ROWS:
        aside = quarantined_rows(settings.archive_root, entry.batch_id)
        if aside is not None:
            aside = aside.drop_columns([c for c in ROW_COLUMNS if c != "region"])
            if tables:  # an interrupted quarantine: rows in both places count once
                present = pa.concat_arrays([t["kafka_offset"].combine_chunks() for t in tables])
                aside = aside.filter(pc.invert(pc.is_in(aside["kafka_offset"], present)))
            tables.append(aside)
    columns = list(archive_column_types())
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    for column in columns:  # a file missing a column fails the schema check, not here
        if column not in frame:
            frame[column] = None
    return frame[[*columns, *[c for c in frame.columns if c not in columns]]]


def _known_sensors(settings: Settings, entry: LedgerEntry, sensors: int) -> int:
    """Sensors this partition carries: the most seen in its last clean batches."""
    history = sorted(settings.quality_results_dir.glob(f"{entry.topic}-p{entry.partition}-*.json"))
    seen = [sensors]
    for path in history[-HISTORY_BATCHES - 1 :]:
        if path.stem == entry.batch_id:
            continue
        body = json.loads(path.read_text())
        if not any(f["severity"] == CRITICAL for f in body["outcome"]["failures"]):
            seen.append(int(body["outcome"]["sensors"]))
    return max(seen)


def batch_facts(
    settings: Settings, entry: LedgerEntry, frame: pd.DataFrame, *, newest: bool, now: datetime
) -> BatchFacts:
    sensors = int(frame["sensor_id"].nunique())
    archived_at = datetime.fromisoformat(entry.archived_at)
    return BatchFacts(
        batch_id=entry.batch_id,
        archived_at=archived_at,
        span_s=batch_span_s(frame["ts"], future_limit(archived_at), settings.reporting_interval_s),
        known_sensors=_known_sensors(settings, entry, sensors),
        reporting_interval_s=settings.reporting_interval_s,
        check_freshness=newest and now - archived_at <= RECENT_BATCH,
    )


# --- alerts -----------------------------------------------------------------------------------
def quality_alert(outcome: BatchOutcome, frame: pd.DataFrame, now: datetime) -> Any:
    """The ``data_quality`` alert of a quarantine (region ``all``: a batch spans many).

    Its value is the number of readings set aside.
    """
    from include.events import Alert, alert_id_for

    ts = frame["ts"].dropna() if "ts" in frame else frame.iloc[0:0]
    start = ts.min().isoformat() if len(ts) else now.isoformat()
    end = ts.max().isoformat() if len(ts) else now.isoformat()
    if outcome.quarantine_scope == ROWS:
        what = f"{outcome.set_aside:,} of {outcome.rows:,} readings set aside in quarantine"
    else:
        what = f"quarantined whole, all {outcome.set_aside:,} readings set aside"
    return Alert(
        alert_id=alert_id_for(RULE, "all", outcome.batch_id),
        rule=RULE,
        severity="critical",
        region="all",
        window_start=start,
        window_end=end,
        value=float(outcome.set_aside),
        threshold=0.0,
        status="firing",
        message=(
            f"archive batch {outcome.batch_id}: {what}: "
            + "; ".join(f.describe() for f in outcome.critical)
        ),
        emitted_at=now.isoformat(),
    )


def publish_alerts(settings: Settings, alerts: list[Any]) -> int:
    """Send alerts to the alerts topic and check each one's acknowledgement: a send the
    broker refused (or that did not complete within the producer's delivery timeout)
    raises a ClimateWatchError naming the topic (``flush`` alone returns anyway)."""
    if not alerts:
        return 0
    from kafka.errors import KafkaError

    from include.kafka_clients import make_producer, translate_kafka_errors

    topic = settings.topic_alerts
    delivery_ms = settings.producer_delivery_timeout_ms
    request_ms = min(settings.kafka_client_config()["request_timeout_ms"], delivery_ms - 5)
    wait_s = delivery_ms / 1000 + 10  # the producer's retries decide first
    with translate_kafka_errors(settings):
        producer = make_producer(
            settings, delivery_timeout_ms=delivery_ms, request_timeout_ms=max(1, request_ms)
        )
        try:
            try:
                futures = [
                    producer.send(topic, key=alert.region.encode(), value=alert.to_json())
                    for alert in alerts
                ]
                producer.flush(timeout=wait_s)
                for future in futures:
                    future.get(timeout=wait_s)
            except (KafkaError, ValueError) as exc:
                text = (str(exc).strip().splitlines() or [""])[0][:300]
                if type(exc).__name__ not in text:
                    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
                raise ClimateWatchError(
                    f"could not publish {len(alerts)} data-quality alert(s) to topic {topic!r}: "
                    f"{text} (the batches stay quarantined, but these alerts are not on the "
                    "topic)"
                ) from None
        finally:
            try:
                producer.close(timeout=5)
            except KafkaError:  # records still unsent: abandoned, the error above says so
                log.warning("the alerts producer did not close cleanly", exc_info=True)
    return len(alerts)


# --- the run ----------------------------------------------------------------------------------
def validate_batches(
    settings: Settings,
    *,
    dates: Iterable[str] | None = None,
    publish: bool = True,
    progress: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> QualityRun:
    """Validate the new batches (or every batch of ``dates``); quarantine critical failures."""
    from warehouse.stats.recompute import recompute_dates

    started = time.perf_counter()
    now = now or datetime.now(UTC)
    say = progress or log.info
    ledger = Ledger(settings.archive_root).entries(settings.topic_readings)
    entries = batches_to_validate(settings, dates, ledger)
    run = QualityRun()
    if not entries:
        say("data quality: no new archive batch to validate")
        return run
    batch_run = _BatchRun(settings, GxValidator(settings), ledger, now)
    settings.quality_results_dir.mkdir(parents=True, exist_ok=True)
    for number, entry in enumerate(entries, 1):
        outcome = batch_run.validate(entry)
        run.batches.append(outcome)
        run.rows += outcome.rows
        state = _state(outcome)
        say(
            f"data quality {number}/{len(entries)} {entry.batch_id}: {outcome.rows:,} rows, "
            f"{len(outcome.critical)} critical, {len(outcome.warnings)} warning(s), {state} "
            f"({outcome.seconds:.2f} s)"
        )
    write_summary(settings, {e.batch_id for e in entries}, batch_run.summary_rows)
    run.data_docs = batch_run.validator.build_docs()
    if batch_run.touched_dates:
        recompute_dates(settings, sorted(batch_run.touched_dates))
    if publish:
        run.alerts_published = publish_alerts(settings, batch_run.alerts)
    run.seconds = time.perf_counter() - started
    say(
        f"data quality: {len(run.batches)} batch(es), {run.rows:,} rows in {run.seconds:.1f} s; "
        f"{len(run.critical_batches)} failed critical expectations; Data Docs {run.data_docs}"
    )
    return run


def _state(outcome: BatchOutcome) -> str:
    if not outcome.quarantined:
        return "ok"
    if outcome.quarantine_scope == ROWS:
        return f"{outcome.set_aside:,} row(s) SET ASIDE"
    return "QUARANTINED"


class _BatchRun:
    """One run's state across its batches: what to quarantine, alert on and summarise."""

    def __init__(
        self, settings: Settings, validator: GxValidator, ledger: list[LedgerEntry], now: datetime
    ) -> None:
        self.settings = settings
        self.validator = validator
        self.now = now
        self.newest_end: dict[int, int] = {}
        for entry in ledger:
            partition_end = self.newest_end.get(entry.partition, 0)
            self.newest_end[entry.partition] = max(partition_end, entry.end_offset)
        self.held = {r.batch_id: r for r in quarantined(settings.archive_root)}
        self.alerts: list[Any] = []
        self.touched_dates: set[str] = set()
        self.summary_rows: list[dict[str, Any]] = []

    def validate(self, entry: LedgerEntry) -> BatchOutcome:
        """Validate one batch, quarantine what failed a critical rule, record its result."""
        settings, now = self.settings, self.now
        batch_started = time.perf_counter()
        frame = load_batch(settings, entry, held=self.held)
        validation, checked = None, frame
        if not frame.empty:  # an empty batch is only malformed records: rejected/ holds them
            newest = entry.end_offset == self.newest_end.get(entry.partition)
            facts = batch_facts(settings, entry, frame, newest=newest, now=now)
            checked = with_derived_columns(frame, facts)
            validation = self.validator.validate(facts, checked)
        outcome = _outcome(settings, entry, frame, validation)
        unexpected = self._unexpected_rows(checked, validation)
        if outcome.critical and not outcome.released:
            self._quarantine(entry, outcome, checked, validation, unexpected)
        if validation is not None:
            self.summary_rows += summary_rows(entry, validation, unexpected, now)
        outcome.seconds = time.perf_counter() - batch_started
        body = {
            "outcome": outcome.to_dict(),
            "validated_at": now.isoformat(),
            "validation": validation.to_json_dict() if validation else None,
        }
        _result_path(settings, entry.batch_id).write_text(json.dumps(body, default=str))
        return outcome

    def _unexpected_rows(self, frame: pd.DataFrame, validation: Any) -> dict[str, list[dict]]:
        """The rows of each failed row-level expectation (asked only for failures: rare)."""
        found: dict[str, list[dict]] = {}
        for result in validation.results if validation else ():
            if not result.success and result.result.get("unexpected_count"):
                config = result.expectation_config
                found[expectation_name(config)] = self.validator.unexpected_rows(frame, config)
        return found

    def _quarantine(
        self,
        entry: LedgerEntry,
        outcome: BatchOutcome,
        frame: pd.DataFrame,
        validation: Any,
        unexpected: dict[str, list[dict]],
    ) -> None:
        """Set the failing rows aside, or the whole batch for a batch-wide failure."""
        root = self.settings.archive_root
        reason = "; ".join(f.describe() for f in outcome.critical)
        failures = tuple(asdict(f) for f in outcome.critical)
        critical = [
            r
            for r in validation.results
            if not r.success
            and (r.expectation_config.meta or {}).get("severity", CRITICAL) == CRITICAL
        ]
        whole = any(
            set_aside_by(r.expectation_config, r.result.get("unexpected_count") is not None)
            == SET_ASIDE_BATCH
            for r in critical
        )
        verdicts = {} if whole else set_aside_verdicts(frame, critical, unexpected)
        whole = whole or not verdicts  # failing rows Great Expectations did not name
        record = self.held.get(entry.batch_id)
        outcome.quarantined = True
        if record is not None and (whole or record.scope == BATCH):
            if record.scope != BATCH:
                log.warning(
                    "%s: readings already set aside, and now a batch-wide failure (%s): "
                    "release them and validate the batch again to quarantine it whole",
                    entry.batch_id,
                    reason,
                )
            outcome.quarantine_scope, outcome.set_aside = record.scope, record.rows
            return
        if whole:
            record = quarantine_batch(root, entry, reason=reason, failures=failures, now=self.now)
            self.held[entry.batch_id] = record
            outcome.quarantine_scope, outcome.set_aside = BATCH, record.rows
            self.touched_dates.update(record.dates)
            self.alerts.append(quality_alert(outcome, frame, self.now))
            return
        done = quarantine_rows(
            root, entry, verdicts, reason=reason, failures=failures, now=self.now
        )
        self.held[entry.batch_id] = done.record
        outcome.quarantine_scope, outcome.set_aside = ROWS, done.record.rows
        if done.moved:  # not when the batch is validated again: its rows moved already
            self.touched_dates.update(done.moved_dates)
            self.alerts.append(quality_alert(outcome, frame, self.now))


def repeats(frame: pd.DataFrame, offsets: Iterable[int]) -> dict[int, int]:
    """Of the readings at ``offsets`` (all of them repeated (sensor, ts)), each repeat's
    offset -> the offset of the first archived reading it repeats (which stays)."""
    rows = frame[frame["kafka_offset"].isin(list(offsets))].sort_values("kafka_offset")
    first = rows.groupby(["sensor_id", "ts"], dropna=False)["kafka_offset"].transform("min")
    return {
        int(offset): int(kept)
        for offset, kept in zip(rows["kafka_offset"], first, strict=True)
        if offset != kept
    }


def _shown(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "null"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def set_aside_verdicts(
    frame: pd.DataFrame, critical: list[Any], unexpected: dict[str, list[dict]]
) -> dict[int, tuple[str, str]]:
    """Kafka offset -> (failed expectation(s), why) of every reading to set aside."""
    said: dict[int, list[tuple[str, str]]] = {}
    for result in critical:
        config = result.expectation_config
        name = expectation_name(config)
        notes = (config.meta or {}).get("notes", "")
        rows = unexpected.get(name, [])
        if set_aside_by(config, True) == SET_ASIDE_REPEATS:
            offsets = [int(row["kafka_offset"]) for row in rows]
            for repeat, kept in repeats(frame, offsets).items():
                said.setdefault(repeat, []).append((name, f"{notes}: repeats offset {kept}"))
            continue
        column = config.kwargs.get("column")
        for row in rows:
            why = f"{notes}: {column} is {_shown(row.get(column))}" if column else notes
            said.setdefault(int(row["kafka_offset"]), []).append((name, why))
    return {
        offset: ("; ".join(n for n, _ in found), "; ".join(w for _, w in found))
        for offset, found in said.items()
    }


def _outcome(
    settings: Settings, entry: LedgerEntry, frame: pd.DataFrame, validation: Any
) -> BatchOutcome:
    """What one validation found, keeping a person's earlier release of the batch."""
    previous = _load_result(settings, entry.batch_id) or {}
    return BatchOutcome(
        batch_id=entry.batch_id,
        partition=entry.partition,
        rows=len(frame),
        sensors=int(frame["sensor_id"].nunique()),
        dates=list(entry.dates),
        released=bool(previous.get("outcome", {}).get("released")),
        failures=[
            Finding(
                expectation_name(r.expectation_config),
                (r.expectation_config.meta or {}).get("severity", CRITICAL),
                r.result.get("unexpected_count"),
                observed(r),
            )
            for r in (validation.results if validation else ())
            if not r.success
        ],
    )


def release(settings: Settings, batch_id: str) -> dict[str, Any]:
    """Bring a quarantined batch, or the readings set aside from it, back into the
    warehouse (a person decided they are fine); it is never quarantined again."""
    from warehouse.stats.recompute import recompute_dates

    record = release_batch(settings.archive_root, batch_id)
    result = _load_result(settings, batch_id)
    if result is not None:
        result["outcome"]["released"] = True
        result["outcome"]["quarantined"] = False
        _result_path(settings, batch_id).write_text(json.dumps(result, default=str))
    recompute_dates(settings, list(record.dates))
    return {
        "batch_id": batch_id,
        "rows": record.rows,
        "dates": list(record.dates),
        "scope": record.scope,
    }


def status(settings: Settings) -> dict[str, Any]:
    """Validated and pending batches, quarantine, and the latest failures."""
    entries = Ledger(settings.archive_root).entries(settings.topic_readings)
    validated, failing = 0, []
    for entry in entries:
        body = _load_result(settings, entry.batch_id)
        if body is None:
            continue
        validated += 1
        if body["outcome"]["failures"]:
            failing.append(body["outcome"])
    return {
        "batches": len(entries),
        "validated": validated,
        "pending": len(entries) - validated,
        "quarantined": [
            {
                "batch_id": r.batch_id,
                "scope": r.scope,
                "rows": r.rows,
                "dates": list(r.dates),
                "reason": r.reason,
            }
            for r in quarantined(settings.archive_root)
        ],
        "with_failures": failing[-20:],
        "data_docs": str(settings.data_docs_dir / "index.html")
        if (settings.data_docs_dir / "index.html").exists()
        else None,
    }


def critical_failure_message(run: dict[str, Any]) -> str:
    """One line naming each batch's failed critical expectations and counts ("" if none).

    Takes the run as a dict: the DAG gets it through XCom.
    """
    parts = []
    for batch in run["batches"]:
        critical = [Finding(**f) for f in batch["failures"] if f["severity"] == CRITICAL]
        if critical:
            if not batch["quarantined"]:
                state = " — released earlier, kept"
            elif batch.get("quarantine_scope") == ROWS:
                state = f" — {batch.get('set_aside', 0):,} row(s) set aside"
            else:
                state = " — batch quarantined"
            parts.append(
                f"{batch['batch_id']}: " + "; ".join(f.describe() for f in critical) + state
            )
    if not parts:
        return ""
    return f"{len(parts)} batch(es) failed critical expectations: " + " | ".join(parts)


def ensure_validated(run: QualityRun) -> None:
    """Fail (the CLI) when a batch failed a critical expectation."""
    message = critical_failure_message(run.to_dict())
    if message:
        raise ClimateWatchError(message)
