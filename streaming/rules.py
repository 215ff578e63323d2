"""Alert rules as pure functions over closed windows, and the alert state machine.

The rules file (``include/rules.toml`` by default) gives each rule's defaults and
per-region overrides. :func:`evaluate` turns one closed window (and the region's recent
history) into conditions; :class:`AlertTracker` turns conditions into alert events: one
``firing`` per rule and region until the condition clears, then one ``resolved`` with
the same deterministic ``alert_id`` (rule + region + the window where it started), so
reprocessing after a crash repeats an id instead of inventing one. The backtest runs
the same functions over archived readings.
"""

from __future__ import annotations

import math
import tomllib
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from include.contract import (
    MAX_TEMPERATURE_C,
    MIN_TEMPERATURE_C,
    format_epoch_ms,
    format_ts,
    parse_timestamp,
)
from include.errors import ClimateWatchError
from include.events import Alert, Severity, alert_id_for
from streaming.windowing import ClosedWindow, compacted

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[1] / "include" / "rules.toml"


# --- what a rules file may say ------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """One setting of the rules file: its type, the values that make sense, if required.

    ``required`` keys must be there (in ``[rules.<rule>]`` or the region's override)
    whenever the rule is enabled: the rule reads them on every window.
    """

    kind: Literal["number", "integer", "bool", "severity"]
    low: float | None = None  # at least this (greater than this with ``above``)
    high: float | None = None  # at most this
    above: bool = False
    required: bool = False


DAY_S = 86_400
WEEK_S = 7 * DAY_S
SEVERITIES: tuple[str, ...] = get_args(Severity)
MEANS_KEPT = 64  # RegionHistory.means keeps this many windows: drastic_change looks no further
_THRESHOLD = Key("number", MIN_TEMPERATURE_C, MAX_TEMPERATURE_C, required=True)
_SILENCE = Key("number", 1, WEEK_S, required=True)

WINDOW_KEYS: dict[str, Key] = {
    "size_seconds": Key("number", 1, DAY_S),
    "allowed_lateness_seconds": Key("number", 0, DAY_S),
}
COMMON_KEYS: dict[str, Key] = {"enabled": Key("bool"), "severity": Key("severity")}
RULE_KEYS: dict[str, dict[str, Key]] = {
    "heat": {"threshold_c": _THRESHOLD},
    "cold": {"threshold_c": _THRESHOLD},
    "drastic_change": {
        "delta_c": Key(
            "number", 0, MAX_TEMPERATURE_C - MIN_TEMPERATURE_C, above=True, required=True
        ),
        "windows_back": Key("integer", 1, MEANS_KEPT),
    },
    "silent_sensor": {"silent_seconds": _SILENCE},
    "bad_data": {
        "max_invalid_share": Key("number", 0, 1, required=True),
        "min_records": Key("integer", 1),
    },
    "region_silent": {"silent_seconds": _SILENCE},
    "input_silent": {"silent_seconds": _SILENCE},
}
RULES = tuple(RULE_KEYS)
_NO_SETTINGS: dict[str, Any] = {}  # a rule without settings (shared: read-only)
WHOLE_INPUT_RULES = frozenset({"input_silent"})  # one condition for the input, not per region


@dataclass(frozen=True)
class RulesConfig:
    window_ms: int
    lateness_ms: int
    rules: dict[str, dict[str, Any]]
    regions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _merged: dict[tuple[str, str], dict[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def for_region(self, rule: str, region: str) -> dict[str, Any]:
        """The rule's settings with the region's overrides (merged once per pair, since
        every closed window asks; treat the result as read-only). A region without
        overrides gets the defaults themselves: the cache holds only the regions the
        rules file names, never one entry per region the stream hears of."""
        if region not in self.regions:
            return self.rules.get(rule, _NO_SETTINGS)
        merged = self._merged.get((rule, region))
        if merged is None:
            merged = self._merged[(rule, region)] = {
                **self.rules.get(rule, {}),
                **self.regions.get(region, {}).get(rule, {}),
            }
        return merged


def load_rules(path: Path | None = None) -> RulesConfig:
    """Read and check a rules file; a mistake names the file and the key."""
    path = path or DEFAULT_RULES_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ClimateWatchError(f"rules file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClimateWatchError(f"rules file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClimateWatchError(f"rules file {path} is not valid TOML: {exc}") from None
    problems = rules_problems(raw)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ClimateWatchError(f"rules file {path}: {problems[0]}{more}")
    windows = raw.get("windows", {})
    size = float(windows.get("size_seconds", 60))
    lateness = float(windows.get("allowed_lateness_seconds", 30))
    return RulesConfig(
        int(size * 1000), int(lateness * 1000), raw.get("rules", {}), raw.get("regions", {})
    )


def rules_problems(raw: dict[str, Any]) -> list[str]:
    """Every mistake of a parsed rules file, each naming its key (empty: the file is fine)."""
    problems = [
        f"[{name}] is not a section of a rules file (known: windows, rules, regions)"
        for name in raw
        if name not in ("windows", "rules", "regions")
    ]
    windows = _table(raw, "windows", "windows", problems)
    problems += _bad_keys("windows", windows, WINDOW_KEYS)
    rules = _table(raw, "rules", "rules", problems)
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        problems.append(f"rules: unknown rule(s) {unknown}; known: {list(RULES)}")
    defaults: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        if rule in rules:
            name = f"rules.{rule}"
            defaults[rule] = _table(rules, rule, name, problems)
            problems += _bad_keys(name, defaults[rule], {**COMMON_KEYS, **RULE_KEYS[rule]})
            problems += _missing(name, defaults[rule], rule)
    regions = _table(raw, "regions", "regions", problems)
    for region in regions:
        overrides = _table(regions, region, f"regions.{region}", problems)
        unknown = sorted(set(overrides) - set(RULES))
        if unknown:
            problems.append(f"regions.{region}: unknown rule(s) {unknown}; known: {list(RULES)}")
        for rule in RULES:
            if rule not in overrides:
                continue
            name = f"regions.{region}.{rule}"
            if rule in WHOLE_INPUT_RULES:
                problems.append(f"{name}: {rule} watches the whole input, not one region")
                continue
            override = _table(overrides, rule, name, problems)
            problems += _bad_keys(name, override, {**COMMON_KEYS, **RULE_KEYS[rule]})
            default = defaults.get(rule, {})
            if not _is_on(default):  # else [rules.<rule>] already reported what it lacks
                problems += _missing(name, {**default, **override}, rule)
    return problems


def _table(parent: dict[str, Any], key: str, name: str, problems: list[str]) -> dict[str, Any]:
    value = parent.get(key, {})
    if isinstance(value, dict):
        return value
    problems.append(f"{name} must be a table ([{name}]), not {value!r}")
    return {}


def _is_on(config: dict[str, Any]) -> bool:
    """As the rules read it: a rule with settings runs unless ``enabled = false``."""
    return bool(config) and config.get("enabled", True) is not False


def _missing(name: str, config: dict[str, Any], rule: str) -> list[str]:
    """The required keys an enabled rule lacks (``config``: a region's merged settings)."""
    if not _is_on(config):
        return []
    where = f" (neither [rules.{rule}] nor [{name}] sets it)" if name.startswith("regions.") else ""
    return [
        f"{name}.{key} is missing{where}"
        for key, spec in RULE_KEYS[rule].items()
        if spec.required and key not in config
    ]


def _bad_keys(name: str, table: dict[str, Any], keys: dict[str, Key]) -> list[str]:
    problems = []
    for key, value in table.items():
        spec = keys.get(key)
        if spec is None:
            problems.append(f"{name}.{key} is not a setting here (known: {', '.join(keys)})")
        elif (problem := _bad_value(value, spec)) is not None:
            problems.append(f"{name}.{key} {problem}")
    return problems


def _bad_value(value: Any, spec: Key) -> str | None:
    """What is wrong with one value (None: nothing)."""
    if spec.kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if spec.kind == "severity":
        if isinstance(value, str) and value in SEVERITIES:
            return None
        return f"must be one of {', '.join(SEVERITIES)}, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, not {value!r}"
    if not math.isfinite(value):
        return f"must be a finite number, not {value!r}"
    if spec.kind == "integer" and value != int(value):
        return f"must be a whole number, not {value!r}"
    if spec.low is not None and spec.above and value <= spec.low:
        return f"must be greater than {spec.low:g}, not {value!r}"
    if spec.low is not None and not spec.above and value < spec.low:
        return f"must be at least {spec.low:g}, not {value!r}"
    if spec.high is not None and value > spec.high:
        return f"must be at most {spec.high:g}, not {value!r}"
    return None


@dataclass(frozen=True)
class Condition:
    """Whether one rule holds for one region at the end of one window."""

    rule: str
    region: str
    active: bool
    window_start_ms: int
    window_end_ms: int
    value: float | None
    threshold: float | None
    severity: str
    message: str


@dataclass
class RegionHistory:
    """What the rules remember of one region: recent window means and sensors' last window.

    ``sensor_heard`` (processing time each sensor was last heard, kept by the stream's
    stage 2) decides when a sensor is retired (:mod:`streaming.retire`);
    ``retired_note`` says how many were, for the next silent-sensor condition.
    """

    means: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=64))
    sensor_last_seen_ms: dict[str, int] = field(default_factory=dict)
    sensor_heard: dict[str, float] = field(default_factory=dict)
    retired_note: str = ""

    def forget_sensors(self, sensors: list[str], note: str) -> None:
        for sensor in sensors:
            self.sensor_last_seen_ms.pop(sensor, None)
            self.sensor_heard.pop(sensor, None)
        self.sensor_last_seen_ms = compacted(self.sensor_last_seen_ms)
        self.sensor_heard = compacted(self.sensor_heard)
        self.retired_note = note


def _enabled(config: dict[str, Any]) -> bool:
    return bool(config) and config.get("enabled", True)


def evaluate(window: ClosedWindow, history: RegionHistory, rules: RulesConfig) -> list[Condition]:
    """Conditions of every rule for one closed window; updates ``history`` afterwards."""
    found: list[_Finding] = []
    if window.mean_c is not None:
        found += _thresholds(window, window.mean_c, rules)
        found += _drastic_change(window, window.mean_c, history, rules)
    for sensor in window.sensors:
        history.sensor_last_seen_ms[sensor] = window.end_ms
    found += _silent_sensors(window, history, rules)
    found += _bad_data(window, rules)
    if window.mean_c is not None:
        history.means.append((window.start_ms, window.mean_c))
    region, start, end = window.region, window.start_ms, window.end_ms
    return [
        Condition(
            rule,
            region,
            active,
            start,
            end,
            value,
            threshold,
            str(rules.for_region(rule, region).get("severity", "warning")),
            message,
        )
        for rule, active, value, threshold, message in found
    ]


# (rule, active, value, threshold, message): what one rule says of one window
_Finding = tuple[str, bool, float | None, float | None, str]


def _thresholds(window: ClosedWindow, mean: float, rules: RulesConfig) -> list[_Finding]:
    region = window.region
    found: list[_Finding] = []
    heat = rules.for_region("heat", region)
    if _enabled(heat):
        limit = float(heat["threshold_c"])
        message = f"mean {mean:.1f} °C above {limit:g} °C in {region}"
        found.append(("heat", mean > limit, round(mean, 2), limit, message))
    cold = rules.for_region("cold", region)
    if _enabled(cold):
        limit = float(cold["threshold_c"])
        message = f"mean {mean:.1f} °C below {limit:g} °C in {region}"
        found.append(("cold", mean < limit, round(mean, 2), limit, message))
    return found


def _drastic_change(
    window: ClosedWindow, mean: float, history: RegionHistory, rules: RulesConfig
) -> list[_Finding]:
    change = rules.for_region("drastic_change", window.region)
    if not _enabled(change):
        return []
    back = int(change.get("windows_back", 10))
    delta = float(change["delta_c"])
    earliest = window.start_ms - back * rules.window_ms
    reference = next((m for s, m in history.means if earliest <= s < window.start_ms), None)
    if reference is None:
        return []
    difference = mean - reference
    minutes = back * rules.window_ms // 60000
    message = f"mean changed {difference:+.1f} °C within {minutes} min in {window.region}"
    return [("drastic_change", abs(difference) >= delta, round(difference, 2), delta, message)]


def _silent_sensors(
    window: ClosedWindow, history: RegionHistory, rules: RulesConfig
) -> list[_Finding]:
    silent = rules.for_region("silent_sensor", window.region)
    retired, history.retired_note = history.retired_note, ""
    if not (_enabled(silent) and (history.sensor_last_seen_ms or retired)):
        return []
    seconds = float(silent["silent_seconds"])
    quiet = sorted(
        s
        for s, seen in history.sensor_last_seen_ms.items()
        if window.end_ms - seen >= seconds * 1000
    )
    message = (
        f"{len(quiet)} sensor(s) silent for {seconds:g} s in {window.region}: {', '.join(quiet[:5])}"
        if quiet
        else f"every sensor of {window.region} reports" + (f" ({retired})" if retired else "")
    )
    return [("silent_sensor", bool(quiet), float(len(quiet)), seconds, message)]


def _bad_data(window: ClosedWindow, rules: RulesConfig) -> list[_Finding]:
    bad = rules.for_region("bad_data", window.region)
    records = window.count + window.invalid
    if not (_enabled(bad) and records >= int(bad.get("min_records", 10))):
        return []
    limit = float(bad["max_invalid_share"])
    share = window.invalid_share
    message = f"{share:.0%} of records invalid in {window.region} ({window.invalid} of {records})"
    return [("bad_data", share > limit, round(share, 4), limit, message)]


class AlertTracker:
    """One firing alert per rule and region until its condition clears."""

    def __init__(self) -> None:
        self.firing: dict[tuple[str, str], Alert] = {}

    def restore(self, alert: Alert) -> None:
        """Replay a published alert (state rebuilt from the alerts topic at start)."""
        key = (alert.rule, alert.region)
        if alert.status == "firing":
            self.firing[key] = alert
        else:
            self.firing.pop(key, None)

    def seed(self, histories: dict[str, RegionHistory], rules: RulesConfig) -> None:
        """After a restart, remember the sensors a firing silent-sensor alert names, so the
        alert does not 'resolve' merely because the restarted stream never saw them."""
        for (rule, region), alert in self.firing.items():
            if rule != "silent_sensor" or ": " not in alert.message:
                continue
            limit_ms = int(float(rules.for_region(rule, region)["silent_seconds"]) * 1000)
            ended = parse_timestamp(alert.window_end)
            if isinstance(ended, datetime):
                seen = int(ended.timestamp() * 1000) - limit_ms
                history = histories.setdefault(region, RegionHistory())
                for sensor in alert.message.rsplit(": ", 1)[1].split(", "):
                    history.sensor_last_seen_ms.setdefault(sensor, seen)

    def retire(self, region: str, message: str, now: datetime | None = None) -> list[Alert]:
        """Resolve every alert firing for ``region`` with ``message``: the region is retired
        (see :mod:`streaming.retire`). Value and threshold are those of the firing alert."""
        emitted_at = format_ts(now or datetime.now(UTC))
        resolved = []
        for rule in RULES:
            current = self.firing.pop((rule, region), None)
            if current is not None:
                resolved.append(
                    replace(
                        current,
                        window_end=emitted_at,
                        status="resolved",
                        message=message,
                        emitted_at=emitted_at,
                    )
                )
        return resolved

    def update(self, condition: Condition, now: datetime | None = None) -> Alert | None:
        key = (condition.rule, condition.region)
        current = self.firing.get(key)
        if condition.active == (current is not None):
            return None  # nothing changes: no event (the common case, checked first)
        emitted_at = format_ts(now or datetime.now(UTC))
        if condition.active and current is None:
            alert = Alert(
                alert_id=alert_id_for(
                    condition.rule, condition.region, format_epoch_ms(condition.window_start_ms)
                ),
                rule=condition.rule,
                severity=condition.severity,  # type: ignore[arg-type]
                region=condition.region,
                window_start=format_epoch_ms(condition.window_start_ms),
                window_end=format_epoch_ms(condition.window_end_ms),
                value=condition.value,
                threshold=condition.threshold,
                status="firing",
                message=condition.message,
                emitted_at=emitted_at,
            )
            self.firing[key] = alert
            return alert
        if not condition.active and current is not None:
            del self.firing[key]
            return Alert(
                alert_id=current.alert_id,
                rule=condition.rule,
                severity=current.severity,
                region=condition.region,
                window_start=current.window_start,
                window_end=format_epoch_ms(condition.window_end_ms),
                value=condition.value,
                threshold=condition.threshold,
                status="resolved",
                message=f"resolved: {condition.message}",
                emitted_at=emitted_at,
            )
        return None
