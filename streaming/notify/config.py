"""What the notification service is configured with: receivers and routes.

These are plain values; :mod:`streaming.notify.routing` reads them from the routes file
(``CLIMATEWATCH_NOTIFY_FILE``) or from the simple settings (``CLIMATEWATCH_WEBHOOK_URL``,
``CLIMATEWATCH_SMTP_*``), and :mod:`streaming.notify.receivers` builds a sender for each.
Secrets are :class:`pydantic.SecretStr`: their ``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

GroupLabel = Literal["rule", "region", "severity"]


@dataclass(frozen=True)
class TwilioReceiver:
    """SMS through Twilio's Messages API (``twilio`` package)."""

    name: str
    account_sid: str
    auth_token: SecretStr
    from_number: str
    to_numbers: tuple[str, ...]
    # Where the client sends its requests; None: Twilio's own https://api.twilio.com.
    api_base_url: str | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SendGridReceiver:
    """E-mail through SendGrid's v3 Mail Send API (``sendgrid`` package)."""

    name: str
    api_key: SecretStr
    from_email: str
    to_emails: tuple[str, ...]
    # The client's ``host`` option; None: https://api.sendgrid.com.
    api_host: str | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SmtpReceiver:
    """E-mail through any SMTP relay."""

    name: str
    host: str
    port: int
    from_email: str
    to_emails: tuple[str, ...]
    # "starttls": upgrade a plain connection (port 587); "tls": TLS from the start (465);
    # "none": plain (a local relay only).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    # A CA bundle to trust instead of the system's (a private relay's certificate).
    ca_file: str | None = None
    timeout_s: float = 10.0


@dataclass(frozen=True)
class WebhookReceiver:
    """An HTTP POST of JSON: Slack-compatible (``text``) or ClimateWatch's own body."""

    name: str
    url: str
    format: Literal["slack", "json"] = "json"
    # When set, the body is signed: header X-ClimateWatch-Signature: sha256=<hex HMAC>.
    hmac_secret: SecretStr | None = None
    timeout_s: float = 5.0


Receiver = TwilioReceiver | SendGridReceiver | SmtpReceiver | WebhookReceiver


@dataclass(frozen=True)
class Matcher:
    """One label condition: ``label == value``, or ``re.fullmatch(pattern, label)``."""

    label: GroupLabel
    value: str | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class Route:
    """A node of the routing tree, as in Prometheus Alertmanager.

    An alert goes down the first child whose matchers all hold (all children that hold,
    while the matching child says ``continue_matching``); where no child matches, the
    node's own receivers take it. Unset timing values are inherited from the parent."""

    receivers: tuple[str, ...] = ()
    matchers: tuple[Matcher, ...] = ()
    continue_matching: bool = False
    group_by: tuple[GroupLabel, ...] | None = None
    group_wait_s: float | None = None
    repeat_interval_s: float | None = None
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class ResolvedRoute:
    """Where one alert goes: a receiver, and the timing of the route that sent it there."""

    receiver: str
    group_by: tuple[GroupLabel, ...]
    group_wait_s: float
    repeat_interval_s: float
    route_path: str  # e.g. "root/0/1": the route that matched, for logs and metrics


@dataclass(frozen=True)
class NotifyConfig:
    receivers: dict[str, Receiver] = field(default_factory=dict)
    route: Route = field(default_factory=Route)
    # Link in messages: <ui_base_url>/climatewatch/?region=<region>; None: no link.
    ui_base_url: str | None = None
