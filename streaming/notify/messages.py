"""What a person receives: a group of alerts as a subject, an e-mail body, an SMS, JSON.

Pure functions, no I/O: :mod:`streaming.notify.receivers` hands their output to the
clients. They never raise for odd alert values (empty or non-ASCII strings, NaN or
infinite numbers, None where a number is expected, fields that break lines), because an
alert that cannot be worded is still an alert someone must hear of. Text that ends up
in a header or an SMS is made one line (control characters become spaces), so a rule
or region name can never inject a header.

The only thing refused is an empty group: a :class:`Notification` has at least one
alert. (Strings that are not Unicode text, lone surrogates, cannot come from the topic's
JSON; should one appear anyway it is written as U+FFFD, never raised on.)
"""

from __future__ import annotations

import hashlib
import json
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import orjson

from include.contract import parse_timestamp
from include.events import Alert

SMS_LIMIT = 320  # characters; with "°" an SMS is UCS-2, so this is about 5 segments
SUBJECT_LIMIT = 200
SLACK_ALERT_LINES = 20  # more alerts than this: "… and N more" (all of them stay in `alerts`)
_LINK_LIMIT_SMS = 120  # a longer link would eat the SMS; a cut link is useless
_FIELD_LIMIT = 80  # a rule or region name longer than this is cut in one-line texts
_BREAKING = frozenset({"Cc", "Cs", "Zl", "Zp", "Zs"})  # Unicode categories made spaces


@dataclass(frozen=True)
class Notification:
    """One message for one receiver: a group of alerts, first sent or a reminder.

    ``sequence`` 0 is the first notification of the group, n ≥ 1 the n-th reminder of an
    alert still firing. A group is never empty (ValueError): there would be nothing to
    say, and no stable id to deduplicate on.
    """

    receiver: str
    alerts: tuple[Alert, ...]
    group_key: str
    sequence: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.alerts, tuple):
            object.__setattr__(self, "alerts", tuple(self.alerts))
        if not self.alerts:
            raise ValueError("a notification needs at least one alert")

    @property
    def delivery_id(self) -> str:
        """Same receiver, same alerts in the same states, same reminder: same id, so a
        retry or a restart repeats an id the receiving side can deduplicate on."""
        pairs = [f"{alert.alert_id}:{alert.status}" for alert in self.alerts]
        # ensure_ascii: any string hashes (even a lone surrogate), and always the same way
        canonical = json.dumps([self.receiver, pairs, self.sequence], ensure_ascii=True)
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]

    @property
    def status(self) -> Literal["firing", "resolved"]:
        """Firing while any alert of the group fires."""
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"


# --- links -------------------------------------------------------------------------------------
def _page(ui_base_url: str | None) -> str | None:
    """The ClimateWatch page; None without a UI address, or with one that cannot be part
    of a link (blank, or with spaces or control characters in it)."""
    base = (ui_base_url or "").strip().rstrip("/")
    if not base or any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in base):
        return None
    return f"{base}/climatewatch/"


def region_link(ui_base_url: str | None, region: str) -> str | None:
    """The ClimateWatch page showing ``region``; None when no UI address is configured."""
    page = _page(ui_base_url)
    if page is None:
        return None
    return f"{page}?region={quote(_unicode(_text(region)), safe='')}"


def _group_link(n: Notification, ui_base_url: str | None) -> str | None:
    """The region's page when the group is about one region, else the page itself."""
    regions = {_text(a.region) for a in n.alerts}
    if len(regions) == 1:
        return region_link(ui_base_url, regions.pop())
    return _page(ui_base_url)


# --- small formatting helpers ------------------------------------------------------------------
def _unicode(text: str) -> str:
    """``text`` with any lone surrogate as U+FFFD (UTF-16 with surrogatepass keeps it whole,
    and the decoder replaces it)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _text(value: object) -> str:
    """Any field as a string (a producer may have sent a number or null)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _one_line(value: object, limit: int | None = None) -> str:
    """One line: control characters, line breaks of any kind and lone surrogates become
    spaces, runs of spaces one; cut at ``limit`` with "…"."""
    raw = _text(value)
    cleaned = "".join(" " if unicodedata.category(ch) in _BREAKING else ch for ch in raw)
    line = " ".join(cleaned.split())
    return _cut(line, limit) if limit is not None else line


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…"


def _number(value: object) -> float | None:
    """A number to show, or None (missing, NaN, or not a number at all)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return math.inf if value > 0 else -math.inf
    return None if math.isnan(number) else number


def _show(value: object, spec: str = ".1f", unit: str = "") -> str:
    number = _number(value)
    if number is None:
        return "n/a"
    if not math.isfinite(number):
        shown = "∞" if number > 0 else "-∞"
    elif abs(number) >= 1e6:  # no reading is this large: a bug upstream, shown briefly
        shown = format(number, "+.3g" if spec.startswith("+") else ".3g")
    else:
        shown = format(number, spec)
    return f"{shown} {unit}" if unit else shown


def _percent(value: object) -> str:
    number = _number(value)
    return "n/a" if number is None else _show(number * 100, ".1f", "%")


_MEASURES: dict[str, Callable[[object, object], str]] = {
    "heat": lambda v, t: f"mean {_show(v, unit='°C')}, threshold {_show(t, unit='°C')}",
    "cold": lambda v, t: f"mean {_show(v, unit='°C')}, threshold {_show(t, unit='°C')}",
    "drastic_change": lambda v, t: f"change {_show(v, '+.1f', '°C')}, limit ±{_show(t, unit='°C')}",
    "silent_sensor": lambda v, t: f"{_show(v, '.0f')} sensor(s) silent for {_show(t, 'g', 's')}",
    "bad_data": lambda v, t: f"{_percent(v)} of records invalid, limit {_percent(t)}",
    "region_silent": lambda v, t: f"silent for {_show(v, '.0f', 's')}, limit {_show(t, 'g', 's')}",
    "input_silent": lambda v, t: f"silent for {_show(v, '.0f', 's')}, limit {_show(t, 'g', 's')}",
}


def measure(alert: Alert) -> str:
    """Value against threshold in the rule's own terms: a mean in °C for heat and cold, a
    count of sensors for silent_sensor, a share for bad_data (see :mod:`streaming.rules`)."""
    rule = _text(alert.rule)
    if rule in _MEASURES:
        return _MEASURES[rule](alert.value, alert.threshold)
    return f"value {_show(alert.value, 'g')}, threshold {_show(alert.threshold, 'g')}"


def _when(timestamp: object) -> str:
    """An RFC 3339 instant as ``2026-07-01 12:00 UTC``; anything else as it was sent."""
    parsed = parse_timestamp(timestamp)
    if isinstance(parsed, datetime):
        return parsed.strftime("%Y-%m-%d %H:%M UTC")
    shown = _one_line(timestamp, 40)
    return shown or "unknown"


def _status(alert: Alert) -> str:
    return "RESOLVED" if alert.status == "resolved" else "FIRING"


def _title(alert: Alert) -> str:
    """``heat (warning) in north``: what and where, one line."""
    rule = _one_line(alert.rule, _FIELD_LIMIT) or "unnamed rule"
    severity = _one_line(alert.severity, 20) or "unknown severity"
    region = _one_line(alert.region, _FIELD_LIMIT) or "unknown region"
    return f"{rule} ({severity}) in {region}"


def _counts(alerts: tuple[Alert, ...]) -> str:
    """``3 alerts FIRING``, ``2 alerts FIRING, 1 RESOLVED``, ``2 alerts RESOLVED``."""
    firing = sum(1 for a in alerts if a.status != "resolved")
    resolved = len(alerts) - firing
    if firing and resolved:
        return f"{len(alerts)} alerts: {firing} FIRING, {resolved} RESOLVED"
    return f"{len(alerts)} alerts {'FIRING' if firing else 'RESOLVED'}"


def _where(alerts: tuple[Alert, ...]) -> str:
    regions = {_text(a.region) for a in alerts}
    if len(regions) == 1:
        return _one_line(regions.pop(), _FIELD_LIMIT) or "unknown region"
    return f"{len(regions)} regions"


def _reminder(n: Notification) -> str:
    return f" (reminder {n.sequence})" if n.sequence > 0 else ""


# --- the texts -----------------------------------------------------------------------------------
def subject(n: Notification) -> str:
    """The e-mail subject: one line, what and where, at most :data:`SUBJECT_LIMIT` chars."""
    if len(n.alerts) == 1:
        alert = n.alerts[0]
        line = f"[ClimateWatch] {_status(alert)} {_title(alert)}{_reminder(n)}"
    else:
        line = f"[ClimateWatch] {_counts(n.alerts)} in {_where(n.alerts)}{_reminder(n)}"
    return _cut(line, SUBJECT_LIMIT)


def text_body(n: Notification, ui_base_url: str | None) -> str:
    """The e-mail body: per alert everything a person on call needs to act on it."""
    lines: list[str] = []
    if len(n.alerts) > 1:
        lines += [f"ClimateWatch: {_counts(n.alerts)} in {_where(n.alerts)}.", ""]
    if n.sequence > 0:
        lines += [f"Reminder {n.sequence}: still firing.", ""]
    for alert in n.alerts:
        resolved = alert.status == "resolved"
        lines.append(f"{_status(alert)}: {_title(alert)}")
        lines.append(f"  value:    {measure(alert)}")
        lines.append(f"  since:    {_when(alert.window_start)}")
        if resolved:
            lines.append(f"  resolved: {_when(alert.window_end)}")
        message = _one_line(alert.message)
        if message:
            lines.append(f"  message:  {message}")
        lines.append(f"  alert id: {_one_line(alert.alert_id)}")
        link = region_link(ui_base_url, _text(alert.region))
        if link:
            lines.append(f"  details:  {link}")
        lines.append("")
    lines.append(f"-- ClimateWatch (group {_one_line(n.group_key)}, delivery {n.delivery_id})")
    return "\n".join(lines) + "\n"


def _sms_line(alert: Alert) -> str:
    rule = _one_line(alert.rule, 40) or "unnamed rule"
    severity = _one_line(alert.severity, 12) or "?"
    region = _one_line(alert.region, 40) or "unknown region"
    return (
        f"{_status(alert)} {rule} ({severity}) in {region}: {measure(alert)}, "
        f"since {_when(alert.window_start)}"
    )


def sms_text(n: Notification, ui_base_url: str | None) -> str:
    """An SMS of at most :data:`SMS_LIMIT` characters: as many alerts as fit, then
    ``+N more``; the link is kept whole or left out, never cut."""
    head = f"ClimateWatch reminder {n.sequence}: " if n.sequence > 0 else "ClimateWatch: "
    link = _group_link(n, ui_base_url)
    if link and len(link) > _LINK_LIMIT_SMS:
        page = _page(ui_base_url) or ""
        link = page if len(page) <= _LINK_LIMIT_SMS else None
    tail = f" {link}" if link else ""
    budget = SMS_LIMIT - len(head) - len(tail)
    lines = [_sms_line(alert) for alert in n.alerts]
    body = ""
    for index, line in enumerate(lines):
        left_after = len(lines) - index - 1
        more = f" +{left_after} more" if left_after else ""
        candidate = f"{body}; {line}" if body else line
        if len(candidate) + len(more) <= budget:
            body = candidate
            continue
        if not body:  # not even the first alert fits: cut it
            body = _cut(line, budget - len(more)) + more
        else:  # the previous round checked that this suffix fits
            body += f" +{len(lines) - index} more"
        break
    return head + body + tail


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn needs these three escaped in anything a user did not write as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_line(alert: Alert, ui_base_url: str | None) -> str:
    icon = ":white_check_mark:" if alert.status == "resolved" else ":fire:"
    line = (
        f"{icon} *{_status(alert)}* {_slack_escape(_title(alert))}: "
        f"{_slack_escape(measure(alert))}, since {_slack_escape(_when(alert.window_start))}"
    )
    message = _one_line(alert.message, 300)
    if message:
        line += f" — {_slack_escape(message)}"
    link = region_link(ui_base_url, _text(alert.region))
    if link:
        region = _slack_escape(_one_line(alert.region, _FIELD_LIMIT) or "region")
        line += f" <{link}|{region} in ClimateWatch>"
    return line


def slack_payload(n: Notification, ui_base_url: str | None) -> bytes:
    """JSON a Slack incoming webhook accepts (``text``, mrkdwn), with the alerts as data."""
    lines: list[str] = []
    if len(n.alerts) > 1 or n.sequence > 0:
        header = _counts(n.alerts) if len(n.alerts) > 1 else f"1 alert {_status(n.alerts[0])}"
        lines.append(f"*ClimateWatch: {_slack_escape(header)}*{_reminder(n)}")
    lines += [_slack_line(a, ui_base_url) for a in n.alerts[:SLACK_ALERT_LINES]]
    if len(n.alerts) > SLACK_ALERT_LINES:
        lines.append(f"… and {len(n.alerts) - SLACK_ALERT_LINES} more")
    return _dumps({"text": "\n".join(lines), "alerts": list(n.alerts)})


def json_payload(n: Notification, ui_base_url: str | None) -> bytes:
    """ClimateWatch's own webhook body: the delivery's identity and the alerts as on the topic."""
    body: dict[str, Any] = {
        "delivery_id": n.delivery_id,
        "receiver": n.receiver,
        "group_key": n.group_key,
        "status": n.status,
        "sequence": n.sequence,
    }
    link = _group_link(n, ui_base_url)
    if link:
        body["link"] = link
    body["alerts"] = list(n.alerts)  # orjson writes the dataclasses as Alert.to_json does
    return _dumps(body)


def _dumps(body: dict[str, Any]) -> bytes:
    """orjson, as Alert.to_json writes alerts; a value it refuses (a lone surrogate, an
    int beyond 64 bits) is written as a string instead of failing the notification."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return orjson.dumps(_scrubbed(body), default=str)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return _unicode(value)
    if isinstance(value, Alert):
        return {f.name: _scrubbed(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    return value
