"""Event-time tumbling windows per region, in two stages that scale with partitions.

Readings are keyed by sensor, so one region's readings are spread over every partition of
``temperature-data``, owned by different stream instances. A regional window therefore
closes in two steps, as in Kafka Streams or Flink:

1. **per input partition** (:class:`PartitionWindows`): partial aggregates per (region,
   window) and the partition's watermark — the highest event time it has seen minus the
   allowed lateness. A partial closes when that watermark passes the window's end; a
   reading older than that is *late*: it is counted against its window and left to the
   batch layer, which archives everything.
2. **per region** (:class:`RegionWindows`, fed through a topic keyed by region): partials
   are merged, one per source partition (so a partial re-sent after a restart replaces,
   never adds), and a window closes when the *lowest* watermark of all input partitions
   passes its end. Late counts that arrive after a window closed update that window's
   record (republished), so the batch layer can explain its differences.

Everything here is pure: no Kafka, no clock. Times are integer epoch milliseconds.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field, replace
from typing import Any

NO_WATERMARK = -(2**62)


def compacted(table: dict[Any, Any]) -> dict[Any, Any]:
    """``table``, or a copy sized for what it holds once its hash table is several times
    too large: a dict never shrinks on deletion, so after a flood of names is forgotten it
    would keep the flood's size (see :mod:`streaming.retire`). Call after deleting; O(1)
    unless it copies (20–40 bytes per entry when full, so > 160 means 4 times too big)."""
    return dict(table) if sys.getsizeof(table) > 4096 + 160 * len(table) else table


def window_start(event_ms: int, size_ms: int) -> int:
    return event_ms - event_ms % size_ms


@dataclass(slots=True)
class Partial:
    """Aggregates of one region's readings in one window, from one source partition."""

    region: str
    start_ms: int
    end_ms: int
    source: int
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    sensors: set[str] = field(default_factory=set)
    late: int = 0
    invalid: int = 0
    first_offset: int | None = None  # earliest input offset folded in (for safe commits)

    def to_message(self) -> dict[str, Any]:
        return {
            "type": "partial",
            "region": self.region,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "source": self.source,
            "count": self.count,
            "total": self.total,
            "min": self.minimum if self.count else None,
            "max": self.maximum if self.count else None,
            "sensors": sorted(self.sensors),
            "late": self.late,
            "invalid": self.invalid,
        }

    @classmethod
    def from_message(cls, body: dict[str, Any]) -> Partial:
        return cls(
            region=body["region"],
            start_ms=body["start_ms"],
            end_ms=body["end_ms"],
            source=body["source"],
            count=body["count"],
            total=body["total"],
            minimum=body["min"] if body["min"] is not None else float("inf"),
            maximum=body["max"] if body["max"] is not None else float("-inf"),
            sensors={sys.intern(sensor) for sensor in body["sensors"]},  # one copy per sensor
            late=body["late"],
            invalid=body["invalid"],
        )


class PartitionWindows:
    """Stage 1: the open partials and the watermark of one input partition."""

    def __init__(self, partition: int, size_ms: int, lateness_ms: int) -> None:
        self.partition = partition
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.max_event_ms = NO_WATERMARK
        self.open: dict[tuple[str, int], Partial] = {}
        self.late_partials: dict[tuple[str, int], Partial] = {}
        self.pending_invalid = 0
        self.last_region: str | None = None

    @property
    def watermark_ms(self) -> int:
        if self.max_event_ms == NO_WATERMARK:
            return NO_WATERMARK
        return self.max_event_ms - self.lateness_ms

    def add(
        self, region: str, sensor_id: str, event_ms: int, temperature: float, offset: int
    ) -> bool:
        """Fold one valid reading in; False when it is late (its window already closed)."""
        start = event_ms - event_ms % self.size_ms
        end = start + self.size_ms
        if end <= self.max_event_ms - self.lateness_ms:  # the watermark, inlined (hot path)
            key = (region, start)
            late = self.late_partials.get(key)
            if late is None:
                late = self.late_partials[key] = Partial(region, start, end, self.partition)
            late.late += 1
            return False
        key = (region, start)
        partial = self.open.get(key)
        if partial is None:
            partial = self.open[key] = Partial(region, start, end, self.partition)
            partial.first_offset = offset
        # fold the reading in (here rather than in a Partial method: once per reading)
        partial.count += 1
        partial.total += temperature
        if temperature < partial.minimum:
            partial.minimum = temperature
        if temperature > partial.maximum:
            partial.maximum = temperature
        partial.sensors.add(sensor_id)
        if event_ms > self.max_event_ms:
            self.max_event_ms = event_ms
        self.last_region = region
        return True

    def add_invalid(self, region: str | None, event_ms: int | None, offset: int) -> None:
        """Count a bad record against the window it claims (or the latest one of its region).

        Only valid readings move event time forward, so a claim is kept between the
        watermark and the newest valid reading's window: a bad record that claims a
        later window would open one that only closes when valid readings get there (for
        the year 9999, never) and hold its partition's committed offset until then.
        """
        if region is None or event_ms is None:
            region = region or self.last_region
            if region is None or self.max_event_ms == NO_WATERMARK:
                self.pending_invalid += 1
                return
            event_ms = self.max_event_ms
        start = event_ms - event_ms % self.size_ms
        latest = self.max_event_ms - self.max_event_ms % self.size_ms
        if start + self.size_ms <= self.watermark_ms or (
            start > latest and self.max_event_ms != NO_WATERMARK
        ):
            start = latest
        key = (region, start)
        partial = self.open.get(key)
        if partial is None:
            partial = self.open[key] = Partial(region, start, start + self.size_ms, self.partition)
            partial.first_offset = offset
        partial.invalid += 1 + self.pending_invalid
        self.pending_invalid = 0

    def advance_to(self, watermark_ms: int) -> None:
        """Move the watermark forward by other means than data (idle partitions)."""
        target = watermark_ms + self.lateness_ms
        if target > self.max_event_ms:
            self.max_event_ms = target

    def close_ready(self) -> list[Partial]:
        """Partials whose window end the watermark has passed, plus late-reading counts."""
        watermark = self.watermark_ms
        closed = [p for key, p in self.open.items() if p.end_ms <= watermark]
        for partial in closed:
            del self.open[(partial.region, partial.start_ms)]
        if closed:  # a flood of regions leaves the table at its size otherwise
            self.open = compacted(self.open)
        closed.extend(self.late_partials.values())
        self.late_partials.clear()
        closed.sort(key=lambda p: (p.start_ms, p.region))
        return closed

    def safe_commit_offset(self, next_offset: int) -> int:
        """The offset to commit so that a restart re-reads every reading of an open window."""
        firsts = [p.first_offset for p in self.open.values() if p.first_offset is not None]
        return min([next_offset, *firsts])


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """One region's window, merged from every source partition."""

    region: str
    start_ms: int
    end_ms: int
    count: int
    mean_c: float | None
    min_c: float | None
    max_c: float | None
    sensors: frozenset[str]
    late: int
    invalid: int
    closed_by: str
    republished: bool = False

    @property
    def invalid_share(self) -> float:
        total = self.count + self.invalid
        return self.invalid / total if total else 0.0


@dataclass
class _RegionWindow:
    region: str
    start_ms: int
    end_ms: int
    partials: dict[int, Partial] = field(default_factory=dict)
    late: dict[int, int] = field(default_factory=dict)
    offsets: dict[int, int] = field(
        default_factory=dict
    )  # partials-topic partition -> first offset
    # once closed, the partials give way to their merge and the sources that sent one:
    # closed windows are kept for hours (late counts), their sensor sets need not be
    closed_as: ClosedWindow | None = None
    sources: frozenset[int] = frozenset()

    def close(self, closed_by: str) -> ClosedWindow:
        self.closed_as = self.merge(closed_by)
        self.sources = frozenset(self.partials)
        self.partials = {}
        return self.closed_as

    def republish(self) -> ClosedWindow:
        """The closed window's record again, with the late counts that arrived since."""
        assert self.closed_as is not None
        return replace(
            self.closed_as,
            late=sum(self.late.values()),
            closed_by="watermark",
            republished=True,
        )

    def merge(self, closed_by: str, republished: bool = False) -> ClosedWindow:
        parts = list(self.partials.values())
        count = sum(p.count for p in parts)
        sensors: set[str] = set()
        for p in parts:
            sensors |= p.sensors
        return ClosedWindow(
            region=self.region,
            start_ms=self.start_ms,
            end_ms=self.end_ms,
            count=count,
            mean_c=sum(p.total for p in parts) / count if count else None,
            min_c=min((p.minimum for p in parts if p.count), default=None),
            max_c=max((p.maximum for p in parts if p.count), default=None),
            sensors=frozenset(sensors),
            late=sum(self.late.values()),
            invalid=sum(p.invalid for p in parts),
            closed_by=closed_by,
            republished=republished,
        )


class RegionWindows:
    """Stage 2 for one partials partition: the partials of its regions, closed on the
    lowest watermark that reached this partition (heartbeats go to every partition, after
    the partials they cover, so a window never closes before its partials are in)."""

    def __init__(self, input_partitions: int, keep_closed_ms: int = 6 * 3600 * 1000) -> None:
        self.input_partitions = input_partitions
        self.watermarks: dict[int, int] = {}
        self.open: dict[tuple[str, int], _RegionWindow] = {}
        self.closed: dict[tuple[str, int], _RegionWindow] = {}
        self.keep_closed_ms = keep_closed_ms
        # (end, key) in the order windows closed, which is nearly the order of their ends:
        # the purge pops expired ones off the front instead of scanning every closed window
        self._closing_order: deque[tuple[int, tuple[str, int]]] = deque()
        self.idle_sources: set[int] = set()
        # the handover mark (see handover_mark): windows ending at or before it were
        # closed and published by this partition's previous owner
        self.closed_until_ms = NO_WATERMARK
        self._closed_through_ms = NO_WATERMARK  # the highest watermark windows closed on

    @property
    def watermark_ms(self) -> int:
        """Lowest watermark over the input partitions that are not idle (none until every
        partition has reported once); when all are idle, the highest one."""
        if len(self.watermarks) < self.input_partitions:
            return NO_WATERMARK
        active = [w for source, w in self.watermarks.items() if source not in self.idle_sources]
        return min(active) if active else max(self.watermarks.values())

    def add_watermark(self, source: int, watermark_ms: int, idle: bool = False) -> None:
        if (
            watermark_ms > self.watermarks.get(source, NO_WATERMARK)
            or source not in self.watermarks
        ):
            self.watermarks[source] = watermark_ms  # an empty partition reports too
        if idle:
            self.idle_sources.add(source)
        else:
            self.idle_sources.discard(source)

    def handover_mark(self) -> int:
        """What a commit of this lane's offsets may promise the next owner: every window
        ending at or before this is closed, evaluated and published (the watermark closes
        every window up to it before the loop commits).

        The next owner re-reads from the committed offset, which only waits for the open
        windows' partials: a closed window may have partials on either side of it, and
        closed again from those after the offset alone it would be a part of itself,
        evaluated (if its stats were not read back in time) against rules' memory that
        never saw the windows before it."""
        return max(self._closed_through_ms, self.closed_until_ms)

    def add_partial(self, partial: Partial, partition: int, offset: int) -> ClosedWindow | None:
        """Fold a partial in; returns an updated record when late counts reach a closed window.
        A partial of a window the previous owner closed (:meth:`handover_mark`) is ignored."""
        if partial.end_ms <= self.closed_until_ms:
            return None
        key = (partial.region, partial.start_ms)
        if key in self.closed:
            window = self.closed[key]
            if partial.count == 0 and partial.late:
                window.late[partial.source] = window.late.get(partial.source, 0) + partial.late
                return window.republish()
            if partial.source in window.sources:
                return None  # a re-sent partial of a window already published: nothing new
            # readings of a source that was idle when the window closed: late for it
            window.late[partial.source] = window.late.get(partial.source, 0) + partial.count
            return window.republish()
        window = self.open.get(key)
        if window is None:
            window = self.open[key] = _RegionWindow(
                partial.region, partial.start_ms, partial.end_ms
            )
        window.offsets.setdefault(partition, offset)
        if partial.count == 0 and partial.late and not partial.invalid:
            window.late[partial.source] = window.late.get(partial.source, 0) + partial.late
        else:
            window.partials[partial.source] = partial
        return None

    def close_ready(self) -> list[ClosedWindow]:
        watermark = self.watermark_ms
        if watermark > self._closed_through_ms:  # it can fall back (an idle source returns)
            self._closed_through_ms = watermark
        ready = sorted(
            (w for w in self.open.values() if w.end_ms <= watermark),
            key=lambda w: (w.start_ms, w.region),
        )
        closed_by = "idle" if self.idle_sources else "watermark"
        results = []
        for window in ready:
            key = (window.region, window.start_ms)
            del self.open[key]
            self.closed[key] = window
            self._closing_order.append((window.end_ms, key))
            results.append(window.close(closed_by))
        expired = self._purge_closed(watermark - self.keep_closed_ms)
        if ready or expired:  # a flood of regions leaves the tables at its size otherwise
            self.open, self.closed = compacted(self.open), compacted(self.closed)
        return results

    def _purge_closed(self, horizon_ms: int) -> int:
        """Drop the closed windows that ended before ``horizon_ms``; O(1) amortised. A
        window closed out of order (a late partial reopened an expired one) waits behind
        the windows closed before it: kept a little longer, never lost early."""
        order, closed = self._closing_order, self.closed
        expired = 0
        while order and order[0][0] < horizon_ms:
            end_ms, key = order.popleft()
            window = closed.get(key)
            if window is not None and window.end_ms == end_ms:
                del closed[key]
                expired += 1
        return expired

    def forget(self, regions: Container[str]) -> None:
        """Drop the closed windows of retired ``regions`` (open ones still close: their
        partials are data). A late partial for a dropped window opens a new one."""
        gone = [key for key in self.closed if key[0] in regions]
        for key in gone:
            del self.closed[key]
        self.closed = compacted(self.closed)
        self._closing_order = deque(e for e in self._closing_order if e[1][0] not in regions)

    def commit_offsets(self, next_offsets: dict[int, int]) -> dict[int, int]:
        """Positions to commit so a restart re-reads the partials of every open window."""
        commits = dict(next_offsets)
        for window in self.open.values():
            for partition, offset in window.offsets.items():
                if partition in commits and offset < commits[partition]:
                    commits[partition] = offset
        return commits


def alignment(
    own: dict[int, int], others: dict[int, int], paused: set[int], max_ahead_ms: int
) -> tuple[set[int], set[int]]:
    """Watermark alignment: which of this instance's input partitions to pause, which to
    resume. Both maps hold the watermarks of partitions still reading a backlog (caught-up
    ones have nothing to wait for): ``own`` this instance's, ``others`` the rest, from
    their heartbeats.

    On a backlog, Kafka clients drain partitions at equal bytes, not equal event time, so
    a partition with fewer sensors races ahead; every window between the slowest and the
    fastest then stays open in stage 2 and memory grows with the skew. A partition more
    than ``max_ahead_ms`` ahead of the slowest is paused, and resumed once within half of
    that (no flapping at the edge).
    """
    marks = [w for w in (*own.values(), *others.values()) if w != NO_WATERMARK]
    if not marks:
        return set(), set(paused)
    floor = min(marks)
    pause = {p for p, w in own.items() if p not in paused and w > floor + max_ahead_ms}
    resume = {p for p in paused if own.get(p, NO_WATERMARK) <= floor + max_ahead_ms // 2}
    return pause, resume
