"""Which receivers get which alert: the routing tree of the notification service.

The tree is Prometheus Alertmanager's: every alert enters at the root route, goes down the
first child route whose matchers all hold (and on to later siblings while the matching
child says ``continue = true``), recursively; a route none of whose children match
delivers the alert to its own receivers. Children inherit what they leave unset.

This module owns walking the tree (``routes_for``), naming an alert's notification group
(``group_key``), and where the service's config comes from (``load_notify_config``): the
routes file named by ``CLIMATEWATCH_NOTIFY_FILE``, read from disk here and checked by
:mod:`streaming.notify.routes_file` (which owns its format, the labels and the defaults),
or, without one, the simple settings (``CLIMATEWATCH_WEBHOOK_URL``, ``CLIMATEWATCH_SMTP_*``:
``default_config``). Either is checked whole when the service starts: any mistake stops it
with one line naming the file or the setting, and never showing a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from include.errors import ClimateWatchError
from include.events import Alert
from include.settings import ENV_PREFIX, Settings
from streaming.notify.config import (
    GroupLabel,
    Matcher,
    NotifyConfig,
    Receiver,
    ResolvedRoute,
    Route,
    SmtpReceiver,
    WebhookReceiver,
)
from streaming.notify.routes_file import (
    DEFAULT_GROUP_BY,
    DEFAULT_GROUP_WAIT_S,
    DEFAULT_REPEAT_INTERVAL_S,
    EMAIL,
    EMAIL_FROM,
    EMAILS_FORM,
    GROUP_LABELS,
    SENDER_FORM,
    URL_FORM,
    compile_pattern,
    is_http_url,
    key_path,
    one_line,
    parse_notify_config,
    quoted,
)


# --- without a file: the simple settings ------------------------------------------------------
def _setting_error(name: str, message: str) -> ClimateWatchError:
    return ClimateWatchError(one_line(f"invalid setting: {ENV_PREFIX}{name.upper()}: {message}"))


def default_config(settings: Settings) -> NotifyConfig:
    """The one route the settings make without a routes file: every alert to the webhook
    (``webhook``) and/or the SMTP relay (``email``); neither set: alerts are only logged."""
    receivers: dict[str, Receiver] = {}
    if settings.webhook_url:
        if not is_http_url(settings.webhook_url):
            raise _setting_error("webhook_url", f"expected {URL_FORM}")
        receivers["webhook"] = WebhookReceiver(
            name="webhook",
            url=settings.webhook_url,
            format="slack",  # the setting's documented body: Slack-compatible "text"
            hmac_secret=settings.webhook_hmac_secret,
            timeout_s=settings.webhook_timeout_s,
        )
    elif settings.webhook_hmac_secret is not None:
        raise _setting_error(
            "webhook_hmac_secret",
            f"set, but {ENV_PREFIX}WEBHOOK_URL is not: set the URL too, or unset the secret",
        )
    host = (settings.smtp_host or "").strip()
    if host:
        receivers["email"] = _settings_smtp(settings, host)
    else:
        for name in ("alert_email_to", "smtp_username", "smtp_password"):
            if getattr(settings, name):
                raise _setting_error(
                    name,
                    f"set, but {ENV_PREFIX}SMTP_HOST is not: set the relay too, or unset it",
                )
    return NotifyConfig(
        receivers=receivers,
        route=Route(
            receivers=tuple(receivers),
            group_by=DEFAULT_GROUP_BY,
            group_wait_s=DEFAULT_GROUP_WAIT_S,
            repeat_interval_s=DEFAULT_REPEAT_INTERVAL_S,
        ),
        ui_base_url=_settings_ui_base_url(settings),
    )


def _settings_smtp(settings: Settings, host: str) -> SmtpReceiver:
    recipients = [a.strip() for a in (settings.alert_email_to or "").split(",") if a.strip()]
    if not recipients:
        raise _setting_error(
            "alert_email_to",
            f"not set, but {ENV_PREFIX}SMTP_HOST is: name the recipients "
            "(comma-separated e-mail addresses), or unset the host",
        )
    for index, address in enumerate(recipients):
        if not EMAIL.fullmatch(address):
            raise _setting_error(
                "alert_email_to", f"expected comma-separated {EMAILS_FORM}, got {quoted(address)}"
            )
        if address in recipients[:index]:
            raise _setting_error("alert_email_to", f"{quoted(address)} is listed twice")
    if not EMAIL_FROM.fullmatch(settings.alert_email_from):
        raise _setting_error(
            "alert_email_from", f"expected {SENDER_FORM}, got {quoted(settings.alert_email_from)}"
        )
    username = settings.smtp_username or None
    if username and settings.smtp_password is None:
        raise _setting_error("smtp_password", f"not set, but {ENV_PREFIX}SMTP_USERNAME is")
    if settings.smtp_password is not None and not username:
        raise _setting_error("smtp_username", f"not set, but {ENV_PREFIX}SMTP_PASSWORD is")
    return SmtpReceiver(
        name="email",
        host=host,
        port=settings.smtp_port,
        from_email=settings.alert_email_from,
        to_emails=tuple(recipients),
        security=settings.smtp_security,
        username=username,
        password=settings.smtp_password,
    )


def _settings_ui_base_url(settings: Settings) -> str | None:
    url = settings.ui_base_url
    if not url:
        return None
    if not is_http_url(url):
        raise _setting_error("ui_base_url", f"expected {URL_FORM}")
    return url.rstrip("/")


def load_notify_config(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> NotifyConfig:
    """The service's routes: the routes file when ``CLIMATEWATCH_NOTIFY_FILE`` names one,
    else the settings' default route. Checked whole; a mistake is one ClimateWatchError line."""
    path = settings.notify_file
    if path is None:
        return default_config(settings)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _setting_error("notify_file", f"{path} does not exist") from None
    except UnicodeDecodeError:
        raise _setting_error("notify_file", f"{path} is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _setting_error("notify_file", f"{path} cannot be read: {reason}") from None
    config = parse_notify_config(text, str(path), os.environ if environ is None else environ)
    receivers = {name: _with_ca_file(receiver, path) for name, receiver in config.receivers.items()}
    return replace(
        config,
        receivers=receivers,
        ui_base_url=config.ui_base_url or _settings_ui_base_url(settings),
    )


def _with_ca_file(receiver: Receiver, notify_file: Path) -> Receiver:
    """A relative ``ca_file`` is read from the routes file's folder (as Alertmanager does);
    a missing one stops the start, not the first e-mail."""
    if not isinstance(receiver, SmtpReceiver) or receiver.ca_file is None:
        return receiver
    ca_file = notify_file.parent / Path(receiver.ca_file).expanduser()
    if not ca_file.is_file():
        raise ClimateWatchError(
            one_line(
                f"{notify_file}: {key_path(key_path('receivers', receiver.name), 'ca_file')}: "
                f"{ca_file} is not a file"
            )
        )
    return replace(receiver, ca_file=str(ca_file))


# --- routing ----------------------------------------------------------------------------------
def _label(alert: Alert, label: str) -> str:
    """An alert's label as matchers see it; one that is missing or not text is ""."""
    value = getattr(alert, label, None) if label in GROUP_LABELS else None
    return value if isinstance(value, str) else ""


@lru_cache(maxsize=512)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    compiled = compile_pattern(pattern)
    return None if isinstance(compiled, str) else compiled


def _holds(matchers: tuple[Matcher, ...], alert: Alert) -> bool:
    for matcher in matchers:
        value = _label(alert, matcher.label)
        if matcher.value is not None and value != matcher.value:
            return False
        if matcher.pattern is not None:
            compiled = _pattern(matcher.pattern) if isinstance(matcher.pattern, str) else None
            if compiled is None or compiled.fullmatch(value) is None:
                return False  # a pattern that is not one (a hand-made config) matches nothing
    return True


_Timing = tuple[tuple[GroupLabel, ...], float, float]  # group_by, group_wait_s, repeat_s


def _inherit(timing: _Timing, route: Route) -> _Timing:
    group_by, group_wait, repeat = timing
    return (
        group_by if route.group_by is None else route.group_by,
        group_wait if route.group_wait_s is None else route.group_wait_s,
        repeat if route.repeat_interval_s is None else route.repeat_interval_s,
    )


def _taken_by(
    route: Route, path: str, timing: _Timing, alert: Alert
) -> list[tuple[Route, str, _Timing]]:
    """The routes below ``route`` (itself when none of its children match) that take it."""
    taken: list[tuple[Route, str, _Timing]] = []
    for index, child in enumerate(route.routes):
        if not _holds(child.matchers, alert):
            continue
        taken += _taken_by(child, f"{path}/{index}", _inherit(timing, child), alert)
        if not child.continue_matching:
            break
    return taken or [(route, path, timing)]


def routes_for(config: NotifyConfig, alert: Alert) -> list[ResolvedRoute]:
    """Where ``alert`` goes: each receiver once, with the timing of the first route that
    reached it (Alertmanager's semantics; the root takes every alert)."""
    defaults = (DEFAULT_GROUP_BY, DEFAULT_GROUP_WAIT_S, DEFAULT_REPEAT_INTERVAL_S)
    found: list[ResolvedRoute] = []
    seen: set[str] = set()
    root = config.route
    for route, path, timing in _taken_by(root, "root", _inherit(defaults, root), alert):
        for receiver in route.receivers:
            if receiver not in seen:
                seen.add(receiver)
                found.append(ResolvedRoute(receiver, *timing, route_path=path))
    return found


def group_key(alert: Alert, group_by: tuple[str, ...]) -> str:
    """Which notification group an alert belongs to, e.g. ``rule=heat,region=north``
    (labels in the order given; none: ``all``). ``%``, ``,`` and ``=`` in a value are
    percent-encoded, so that two groups never share a key."""
    parts = []
    for label in group_by:
        value = _label(alert, label)
        value = value.replace("%", "%25").replace(",", "%2C").replace("=", "%3D")
        parts.append(f"{label}={value}")
    return ",".join(parts) or "all"
