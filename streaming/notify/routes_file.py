"""The routes file: reading and checking the user's TOML file of receivers and routes.

``parse_notify_config`` turns the text of a routes file (``CLIMATEWATCH_NOTIFY_FILE``;
``include/notify.example.toml`` documents the format) into a ``NotifyConfig``: its receivers,
with their secrets read from the environment when the file names variables (``*_env``), and
its routing tree, with Alertmanager's defaults filled in at the root. The file is checked
whole: any mistake is one line naming the file and the key, and never showing a secret.

This module owns the format: its keys, durations, labels, rules and defaults, and the
checks and error wording of values, which the settings' default route
(:mod:`streaming.notify.routing`) reuses. Walking the tree for an alert, and finding and
reading the file, are :mod:`streaming.notify.routing`'s.
"""

from __future__ import annotations

import ast
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any, get_args
from urllib.parse import urlsplit

from pydantic import SecretStr

from include.errors import ClimateWatchError
from include.events import Severity
from streaming.notify.config import (
    GroupLabel,
    Matcher,
    NotifyConfig,
    Receiver,
    Route,
    SendGridReceiver,
    SmtpReceiver,
    TwilioReceiver,
    WebhookReceiver,
)
from streaming.rules import RULES

GROUP_LABELS: tuple[GroupLabel, ...] = get_args(GroupLabel)
SEVERITIES: tuple[str, ...] = get_args(Severity)
# The rules that raise alerts: the stream's, and the data-quality checks' (warehouse.quality,
# which streaming/ may not import). A route matching any other rule could never match.
KNOWN_RULES: tuple[str, ...] = (*RULES, "data_quality")

# Alertmanager's defaults, at the root; children inherit them.
DEFAULT_GROUP_BY: tuple[GroupLabel, ...] = ("rule", "region")
DEFAULT_GROUP_WAIT_S = 0.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0
MAX_ROUTE_DEPTH = 10  # [[route.routes.routes…]] below the root

_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86_400.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": _MINUTE, "h": _HOUR, "d": _DAY}
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")

_RECEIVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # by convention; and never a secret's shape
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SENDER_ID = re.compile(r"(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11}")  # Twilio alphanumeric
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_ADDRESS = r"[^@\s<>,;\"()\[\]\\\x00-\x1f\x7f]+@[^@\s<>,;\"()\[\]\\\x00-\x1f\x7f]+"
EMAIL = re.compile(_ADDRESS)
EMAIL_FROM = re.compile(rf"{_ADDRESS}|[^<>\x00-\x1f\x7f]*<{_ADDRESS}>")  # or Name <address>
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# What a value should be, as the messages say it (the settings' checks say it alike).
_PHONES = 'phone numbers in E.164 form ("+15551234567")'
EMAILS_FORM = 'e-mail addresses ("ops@example.com")'
SENDER_FORM = 'an e-mail address ("alerts@example.com" or "ClimateWatch <alerts@example.com>")'
URL_FORM = "an http:// or https:// URL"

_TOP_KEYS = ("ui_base_url", "receivers", "route")
_RECEIVER_KEYS: dict[str, tuple[str, ...]] = {
    "twilio": (
        "type",
        "account_sid",
        "auth_token",
        "auth_token_env",
        "from",
        "to",
        "api_base_url",
        "timeout",
    ),
    "sendgrid": ("type", "api_key", "api_key_env", "from", "to", "api_host", "timeout"),
    "smtp": (
        "type",
        "host",
        "port",
        "security",
        "username",
        "password",
        "password_env",
        "from",
        "to",
        "ca_file",
        "timeout",
    ),
    "webhook": (
        "type",
        "url",
        "url_env",
        "format",
        "hmac_secret",
        "hmac_secret_env",
        "timeout",
    ),
}
_TIMING_KEYS = ("receivers", "group_by", "group_wait", "repeat_interval", "routes")
_ROOT_ROUTE_KEYS = _TIMING_KEYS
_ROUTE_KEYS = ("match", "match_re", "continue", *_TIMING_KEYS)
_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}


# --- reading the file -------------------------------------------------------------------------
class _Invalid(Exception):
    """One mistake: where in the file (a key path) and what is wrong, for the user."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message


def parse_notify_config(text: str, source: str, environ: Mapping[str, str]) -> NotifyConfig:
    """Read and check a routes file (``source`` names it in errors; ``environ`` holds the
    secrets its ``*_env`` keys name). Any mistake is one ClimateWatchError line naming the
    file and the key, never a secret; nothing else is ever raised."""
    try:
        return _parse(text, environ)
    except _Invalid as problem:
        where = f"{problem.path}: " if problem.path else ""
        raise ClimateWatchError(one_line(f"{source}: {where}{problem.message}")) from None
    except Exception as exc:  # a bug of this module: still one line, never the input
        raise ClimateWatchError(
            one_line(f"{source}: cannot be read as a routes file ({type(exc).__name__})")
        ) from None


def one_line(message: str) -> str:
    """A message for the user on one line (what it quotes may hold line breaks)."""
    return " ".join(message.splitlines())


def _parse(text: str, environ: Mapping[str, str]) -> NotifyConfig:
    raw = _toml(text)
    top = _Table(raw, "", "a routes file", _TOP_KEYS)
    ui_base_url = _url(top, "ui_base_url")
    receivers = _receivers(raw.get("receivers"), environ)
    if "route" not in raw:
        raise _Invalid(
            "route", 'missing: the [route] table, root of the routing tree (receivers = ["…"])'
        )
    route = _route(raw["route"], "route", 0, receivers, None)
    return NotifyConfig(
        receivers=receivers,
        route=route,
        ui_base_url=ui_base_url.rstrip("/") if ui_base_url else None,
    )


def _toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        twice = re.fullmatch(r"Cannot declare (\(.*\)) twice \((.*)\)", str(exc))
        if twice:
            try:
                keys = ast.literal_eval(twice[1])
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                keys = None
            if isinstance(keys, tuple) and keys and all(isinstance(k, str) for k in keys):
                path = ""
                for key in keys:
                    path = key_path(path, key)
                raise _Invalid(
                    path, f"defined twice ({twice[2]}): each name is used once"
                ) from None
        raise _Invalid("", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise _Invalid("", "not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise _Invalid("", f"not valid TOML: {exc}") from None


def key_path(parent: str, key: str) -> str:
    """``parent.key`` as TOML writes it (a key that is not bare is quoted, on one line)."""
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key)
    return f"{parent}.{shown}" if parent else shown


def _kind(value: object) -> str:
    """What a value is, without showing it (it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value.strip() else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return "a date or time"
    return type(value).__name__


def quoted(value: str) -> str:
    """A value that is not secret, quoted on one line and cut short."""
    shown = json.dumps(value)
    return shown if len(shown) <= 48 else shown[:45] + '…"'


def _listing(names: list[str] | tuple[str, ...], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class _Table:
    """A TOML table being read: where it is in the file, and the keys it may have."""

    def __init__(self, data: object, path: str, what: str, known: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise _Invalid(path, f"expected a table, got {_kind(data)}")
        for key in data:
            if key not in known:
                raise _Invalid(
                    key_path(path, key), f"not a setting of {what} (known: {', '.join(known)})"
                )
        self.data: dict[str, Any] = data
        self.path = path

    def at(self, key: str) -> str:
        return key_path(self.path, key)


def _string(table: _Table, key: str, what: str, *, required: bool = False) -> str | None:
    """A non-empty string without control characters (they end up in headers)."""
    if key not in table.data:
        if required:
            raise _Invalid(table.at(key), f"missing: expected {what}")
        return None
    value = table.data[key]
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(table.at(key), f"expected {what}, got {_kind(value)}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise _Invalid(table.at(key), f"expected {what}, got a string with control characters")
    return value


def _choice(table: _Table, key: str, choices: tuple[str, ...], default: str) -> str:
    value = table.data.get(key, default)
    if isinstance(value, str) and value in choices:
        return value
    shown = quoted(value) if isinstance(value, str) else _kind(value)
    raise _Invalid(table.at(key), f"expected one of {', '.join(choices)}, got {shown}")


def _boolean(table: _Table, key: str) -> bool:
    value = table.data.get(key, False)
    if not isinstance(value, bool):
        raise _Invalid(table.at(key), f"expected true or false, got {_kind(value)}")
    return value


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an http(s) URL with a host (and a numeric port, if any)."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises here
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _url(table: _Table, key: str, *, required: bool = False) -> str | None:
    """An http(s) URL; never shown in an error (a webhook URL often holds a token)."""
    value = _string(table, key, URL_FORM, required=required)
    if value is not None and not is_http_url(value):
        raise _Invalid(table.at(key), f"expected {URL_FORM}")
    return value


def _patterned(
    table: _Table,
    key: str,
    pattern: re.Pattern[str],
    what: str,
    *,
    required: bool = False,
    shown: bool = True,
) -> str | None:
    """A string of a known shape; ``shown=False``: a wrong one is not shown (it may be a
    secret in the wrong place, as an auth token for an account SID)."""
    value = _string(table, key, what, required=required)
    if value is not None and not pattern.fullmatch(value):
        got = f", got {quoted(value)}" if shown else ""
        raise _Invalid(table.at(key), f"expected {what}{got}")
    return value


def _addresses(table: _Table, key: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    """A required, non-empty list of distinct recipients."""
    at = table.at(key)
    if key not in table.data:
        raise _Invalid(at, f"missing: expected a list of {what}")
    value = table.data[key]
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else _kind(value)
        raise _Invalid(at, f"expected a list of {what}, got {got}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(f"{at}[{index}]", f"expected one of {what}, got {_kind(item)}")
        if not pattern.fullmatch(item):
            raise _Invalid(f"{at}[{index}]", f"expected one of {what}, got {quoted(item)}")
        if item in value[:index]:
            raise _Invalid(f"{at}[{index}]", f"{quoted(item)} is listed twice")
    return tuple(value)


def _duration_seconds(value: object) -> float | None:
    """Seconds of "30s", "5m", "4h", "1h30m", "250ms", "1d", or a number of seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(value))
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def _format_seconds(seconds: float) -> str:
    for unit, size in (("d", _DAY), ("h", _HOUR), ("m", _MINUTE)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _duration(
    table: _Table, key: str, low: float, high: float, *, above: bool = False
) -> float | None:
    if key not in table.data:
        return None
    value = table.data[key]
    seconds = _duration_seconds(value)
    if seconds is None:
        got = quoted(value) if isinstance(value, str) else _kind(value)
        raise _Invalid(
            table.at(key),
            f'expected a duration ("30s", "5m", "4h", "1h30m" or a number of seconds), got {got}',
        )
    if (seconds <= low) if above else (seconds < low):
        bound = "longer than" if above else "at least"
        raise _Invalid(table.at(key), f"must be {bound} {_format_seconds(low)}")
    if seconds > high:
        raise _Invalid(table.at(key), f"must be at most {_format_seconds(high)}")
    return seconds


def _timeout(table: _Table) -> dict[str, float]:
    """``timeout_s`` for the receiver when the file sets one (else the receiver's default)."""
    seconds = _duration(table, "timeout", 0, 300, above=True)
    return {} if seconds is None else {"timeout_s": seconds}


def _secret(
    table: _Table, key: str, environ: Mapping[str, str], what: str, *, required: bool
) -> SecretStr | None:
    """A secret, inline (``key``) or, preferably, from an environment variable (``key_env``);
    wrapped at once, and never part of a message."""
    env_key = f"{key}_env"
    inline, named = key in table.data, env_key in table.data
    if inline and named:
        raise _Invalid(table.at(key), f"set either {key} or {env_key}, not both")
    if inline:
        value = table.data[key]
        if not isinstance(value, str) or not value:
            raise _Invalid(table.at(key), f"expected {what} as a string, got {_kind(value)}")
        return SecretStr(value)
    if named:
        name = table.data[env_key]
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            # Not shown: putting the secret itself here is the likely mistake.
            raise _Invalid(
                table.at(env_key),
                f"expected the name of the environment variable holding {what} (capitals, "
                f"digits and _, like TWILIO_AUTH_TOKEN); the value itself goes in {key}",
            )
        secret = environ.get(name)
        if secret is None:
            raise _Invalid(
                table.at(env_key), f"environment variable {name} is not set (it holds {what})"
            )
        if not secret:
            raise _Invalid(table.at(env_key), f"environment variable {name} is empty")
        return SecretStr(secret)
    if required:
        raise _Invalid(
            table.at(env_key),
            f'missing: the environment variable holding {what} (or {key} = "…" inline)',
        )
    return None


def _receivers(data: object, environ: Mapping[str, str]) -> dict[str, Receiver]:
    none = "no receiver: add a [receivers.<name>] table (type: twilio, sendgrid, smtp or webhook)"
    if data is None:
        raise _Invalid("receivers", f"missing: {none}")
    if not isinstance(data, dict):
        raise _Invalid("receivers", f"expected a table, got {_kind(data)}")
    if not data:
        raise _Invalid("receivers", none)
    receivers: dict[str, Receiver] = {}
    for name, body in data.items():
        path = key_path("receivers", name)
        if not _RECEIVER_NAME.fullmatch(name):
            raise _Invalid(
                path,
                "a receiver's name is letters, digits, '-', '_' and '.' "
                "(starting with a letter or digit, at most 64)",
            )
        if not isinstance(body, dict):
            raise _Invalid(path, f"expected a table ([{path}]), got {_kind(body)}")
        kind = body.get("type")
        kinds = tuple(_RECEIVER_KEYS)
        if kind is None:
            raise _Invalid(key_path(path, "type"), f"missing: one of {', '.join(kinds)}")
        if not isinstance(kind, str) or kind not in _RECEIVER_KEYS:
            got = quoted(kind) if isinstance(kind, str) else _kind(kind)
            raise _Invalid(key_path(path, "type"), f"expected one of {', '.join(kinds)}, got {got}")
        article = "an" if kind == "smtp" else "a"
        table = _Table(body, path, f"{article} {kind} receiver", _RECEIVER_KEYS[kind])
        receivers[name] = _BUILDERS[kind](table, name, environ)
    return receivers


def _twilio(table: _Table, name: str, environ: Mapping[str, str]) -> TwilioReceiver:
    sid = _patterned(
        table,
        "account_sid",
        _ACCOUNT_SID,
        "a Twilio account SID (AC and 32 hexadecimal digits)",
        required=True,
        shown=False,
    )
    token = _secret(table, "auth_token", environ, "the Twilio auth token", required=True)
    sender = _string(
        table, "from", "a phone number in E.164 form or an alphanumeric sender ID", required=True
    )
    assert sender is not None  # required
    if not (_E164.fullmatch(sender) or _SENDER_ID.fullmatch(sender)):
        raise _Invalid(
            table.at("from"),
            'expected a phone number in E.164 form ("+15005550006") or an alphanumeric '
            f"sender ID (up to 11 letters, digits, spaces), got {quoted(sender)}",
        )
    assert sid is not None and token is not None  # required
    return TwilioReceiver(
        name=name,
        account_sid=sid,
        auth_token=token,
        from_number=sender,
        to_numbers=_addresses(table, "to", _E164, _PHONES),
        api_base_url=_url(table, "api_base_url"),
        **_timeout(table),
    )


def _sendgrid(table: _Table, name: str, environ: Mapping[str, str]) -> SendGridReceiver:
    key = _secret(table, "api_key", environ, "the SendGrid API key", required=True)
    sender = _patterned(table, "from", EMAIL_FROM, SENDER_FORM, required=True)
    assert key is not None and sender is not None  # required
    return SendGridReceiver(
        name=name,
        api_key=key,
        from_email=sender,
        to_emails=_addresses(table, "to", EMAIL, EMAILS_FORM),
        api_host=_url(table, "api_host"),
        **_timeout(table),
    )


def _smtp(table: _Table, name: str, environ: Mapping[str, str]) -> SmtpReceiver:
    host = _string(table, "host", 'the SMTP relay\'s host name ("smtp.example.com")', required=True)
    assert host is not None  # required
    if "://" in host or any(c.isspace() for c in host):
        raise _Invalid(
            table.at("host"), f'expected a host name ("smtp.example.com"), got {quoted(host)}'
        )
    security = _choice(table, "security", ("starttls", "tls", "none"), "starttls")
    port = table.data.get("port", _SMTP_PORTS[security])
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        got = str(port) if isinstance(port, int) and not isinstance(port, bool) else _kind(port)
        raise _Invalid(table.at("port"), f"expected a port number (1 to 65535), got {got}")
    username = _string(table, "username", "the SMTP login (a string)")
    password = _secret(table, "password", environ, "the SMTP password", required=False)
    if username is not None and password is None:
        raise _Invalid(
            table.at("password_env"),
            'missing: username is set, so the SMTP password is needed (or password = "…")',
        )
    if password is not None and username is None:
        raise _Invalid(table.at("username"), "missing: a password is set, so the login is needed")
    ca_file = _string(table, "ca_file", "the path of a CA bundle (PEM)")
    if ca_file is not None and security == "none":
        raise _Invalid(
            table.at("ca_file"), 'a CA bundle needs security = "starttls" or "tls", not "none"'
        )
    sender = _patterned(table, "from", EMAIL_FROM, SENDER_FORM, required=True)
    assert sender is not None  # required
    return SmtpReceiver(
        name=name,
        host=host,
        port=port,
        from_email=sender,
        to_emails=_addresses(table, "to", EMAIL, EMAILS_FORM),
        security=security,  # type: ignore[arg-type]  # one of the choices
        username=username,
        password=password,
        ca_file=ca_file,
        **_timeout(table),
    )


def _webhook(table: _Table, name: str, environ: Mapping[str, str]) -> WebhookReceiver:
    # The URL may itself be a secret (a Slack incoming webhook's is): url_env keeps it out
    # of the file. It is a plain string once read (the contract's), so it is not wrapped.
    if "url" in table.data and "url_env" in table.data:
        raise _Invalid(table.at("url"), "set either url or url_env, not both")
    if "url_env" in table.data:
        secret = _secret(table, "url", environ, "the webhook's URL", required=True)
        assert secret is not None  # required
        url = secret.get_secret_value()
        if not is_http_url(url):
            name_of = table.data["url_env"]
            raise _Invalid(table.at("url_env"), f"environment variable {name_of} is not {URL_FORM}")
    else:
        given = _url(table, "url", required=True)
        assert given is not None  # required
        url = given
    return WebhookReceiver(
        name=name,
        url=url,
        format=_choice(table, "format", ("slack", "json"), "json"),  # type: ignore[arg-type]
        hmac_secret=_secret(
            table, "hmac_secret", environ, "the webhook's signing secret", required=False
        ),
        **_timeout(table),
    )


_BUILDERS: dict[str, Callable[[_Table, str, Mapping[str, str]], Receiver]] = {
    "twilio": _twilio,
    "sendgrid": _sendgrid,
    "smtp": _smtp,
    "webhook": _webhook,
}


def _route(
    data: object,
    path: str,
    depth: int,
    receivers: dict[str, Receiver],
    inherited: tuple[str, ...] | None,
) -> Route:
    """One route and its children; ``inherited``: the parent's receivers (None: the root)."""
    root = inherited is None
    if root and isinstance(data, dict):
        for key in ("match", "match_re", "continue"):
            if key in data:
                raise _Invalid(
                    key_path(path, key),
                    "the root route takes every alert: put matchers on a [[route.routes]]",
                )
    table = _Table(
        data,
        path,
        "the root route" if root else "a route",
        _ROOT_ROUTE_KEYS if root else _ROUTE_KEYS,
    )
    if "receivers" in table.data:
        names = _receiver_names(table, receivers)
    elif inherited is None:
        raise _Invalid(
            table.at("receivers"),
            "missing: the receivers of alerts no other route takes (an empty list: only log them)",
        )
    else:
        names = inherited
    group_wait = _duration(table, "group_wait", 0, _DAY)
    repeat = _duration(table, "repeat_interval", 1, 30 * _DAY)
    group_by = _group_by(table)
    children = table.data.get("routes", [])
    if not isinstance(children, list):
        raise _Invalid(
            table.at("routes"),
            f"expected a list of tables ([[{path}.routes]]), got {_kind(children)}",
        )
    if children and depth >= MAX_ROUTE_DEPTH:
        raise _Invalid(table.at("routes"), f"routes nest more than {MAX_ROUTE_DEPTH} levels deep")
    routes = tuple(
        _route(child, f"{table.at('routes')}[{index}]", depth + 1, receivers, names)
        for index, child in enumerate(children)
    )
    if root:
        return Route(
            receivers=names,
            group_by=DEFAULT_GROUP_BY if group_by is None else group_by,
            group_wait_s=DEFAULT_GROUP_WAIT_S if group_wait is None else group_wait,
            repeat_interval_s=DEFAULT_REPEAT_INTERVAL_S if repeat is None else repeat,
            routes=routes,
        )
    return Route(
        receivers=names,
        matchers=_matchers(table),
        continue_matching=_boolean(table, "continue"),
        group_by=group_by,
        group_wait_s=group_wait,
        repeat_interval_s=repeat,
        routes=routes,
    )


def _receiver_names(table: _Table, receivers: dict[str, Receiver]) -> tuple[str, ...]:
    at = table.at("receivers")
    value = table.data["receivers"]
    if not isinstance(value, list):
        raise _Invalid(at, f"expected a list of receiver names, got {_kind(value)}")
    for index, name in enumerate(value):
        if not isinstance(name, str):
            raise _Invalid(f"{at}[{index}]", f"expected a receiver's name, got {_kind(name)}")
        if name not in receivers:
            raise _Invalid(
                f"{at}[{index}]",
                f"no receiver is named {quoted(name)} (receivers: {_listing(list(receivers))})",
            )
        if name in value[:index]:
            raise _Invalid(f"{at}[{index}]", f"{quoted(name)} is listed twice")
    return tuple(value)


def _group_by(table: _Table) -> tuple[GroupLabel, ...] | None:
    if "group_by" not in table.data:
        return None
    at = table.at("group_by")
    value = table.data["group_by"]
    if not isinstance(value, list):
        raise _Invalid(at, f"expected a list of labels ({', '.join(GROUP_LABELS)})")
    for index, label in enumerate(value):
        if not isinstance(label, str) or label not in GROUP_LABELS:
            got = quoted(label) if isinstance(label, str) else _kind(label)
            raise _Invalid(
                f"{at}[{index}]", f"expected a label ({', '.join(GROUP_LABELS)}), got {got}"
            )
        if label in value[:index]:
            raise _Invalid(f"{at}[{index}]", f"{quoted(label)} is listed twice")
    return tuple(value)


def _matchers(table: _Table) -> tuple[Matcher, ...]:
    matchers: list[Matcher] = []
    for kind in ("match", "match_re"):
        if kind not in table.data:
            continue
        conditions = table.data[kind]
        if not isinstance(conditions, dict):
            raise _Invalid(
                table.at(kind),
                f'expected a table of labels ({kind} = {{ severity = "critical" }}), '
                f"got {_kind(conditions)}",
            )
        for label, value in conditions.items():
            at = key_path(table.at(kind), label)
            if label not in GROUP_LABELS:
                raise _Invalid(at, f"not a label of an alert (labels: {', '.join(GROUP_LABELS)})")
            if not isinstance(value, str):
                raise _Invalid(at, f"expected a string, got {_kind(value)}")
            known = {"severity": SEVERITIES, "rule": KNOWN_RULES}.get(label)
            if kind == "match":
                if known is not None and value not in known:
                    raise _Invalid(at, f"expected one of {', '.join(known)}, got {quoted(value)}")
                matchers.append(Matcher(label, value=value))  # type: ignore[arg-type]
                continue
            compiled = compile_pattern(value)
            if isinstance(compiled, str):
                raise _Invalid(at, f"not a valid regular expression: {compiled}")
            if known is not None and not any(compiled.fullmatch(v) for v in known):
                raise _Invalid(at, f"matches no {label} (they are {', '.join(known)})")
            matchers.append(Matcher(label, pattern=value))  # type: ignore[arg-type]
    return tuple(matchers)


def compile_pattern(pattern: str) -> re.Pattern[str] | str:
    """The compiled pattern, or what is wrong with it."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        return exc.msg + (f" at position {exc.pos}" if exc.pos is not None else "")
    except (OverflowError, RecursionError, ValueError, MemoryError):
        return "too large or nested too deeply"
