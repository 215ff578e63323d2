"""The routing tree: who gets which alert, and the routes file a user edits and gets wrong."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from include.errors import ClimateWatchError
from include.events import Alert
from include.settings import load_settings
from streaming.notify.config import (
    Matcher,
    NotifyConfig,
    Route,
    SendGridReceiver,
    SmtpReceiver,
    TwilioReceiver,
    WebhookReceiver,
)
from streaming.notify.routes_file import (
    DEFAULT_REPEAT_INTERVAL_S,
    GROUP_LABELS,
    KNOWN_RULES,
    SEVERITIES,
    parse_notify_config,
)
from streaming.notify.routing import default_config, group_key, load_notify_config, routes_for

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "include" / "notify.example.toml"
EXAMPLE_ENV = {
    "TWILIO_AUTH_TOKEN": "twilio-token",
    "SENDGRID_API_KEY": "SG.key",
    "SMTP_PASSWORD": "smtp-password",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/secret",
    "INCIDENTS_HMAC_SECRET": "hmac-secret",
}
SECRET = "hunter2-TOPSECRET"  # must never appear in a message

SID = "AC0123456789abcdef0123456789abcdef"
SLACK = '[receivers.slack]\ntype = "webhook"\nurl = "https://hooks.example.com/x"\n'
SMS = (
    f'[receivers.sms]\ntype = "twilio"\naccount_sid = "{SID}"\nauth_token_env = "TOKEN"\n'
    'from = "+15005550006"\nto = ["+15551234567"]\n'
)
MAIL = (
    '[receivers.mail]\ntype = "smtp"\nhost = "smtp.example.com"\n'
    'from = "cw@example.com"\nto = ["ops@example.com"]\n'
)
ROOT = '[route]\nreceivers = ["slack"]\n'
ENV = {"TOKEN": SECRET}


def alert(
    rule: str = "heat", region: str = "north", severity: str = "warning", **fields: Any
) -> Alert:
    values: dict[str, Any] = {
        "alert_id": f"{rule}-{region}-0",
        "rule": rule,
        "severity": severity,
        "region": region,
        "window_start": "2024-07-01T12:00:00Z",
        "window_end": "2024-07-01T12:01:00Z",
        "value": 31.0,
        "threshold": 30.0,
        "status": "firing",
        "message": "hot",
        "emitted_at": "2024-07-01T12:01:05Z",
    }
    return Alert(**{**values, **fields})


def parse(text: str, environ: dict[str, str] | None = None) -> NotifyConfig:
    return parse_notify_config(text, "notify.toml", ENV if environ is None else environ)


def refused(text: str, environ: dict[str, str] | None = None) -> str:
    """The one line a routes file is refused with, without its ``notify.toml: `` prefix."""
    with pytest.raises(ClimateWatchError) as caught:
        parse(text, environ)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith("notify.toml: "), message
    assert SECRET not in message
    return message.removeprefix("notify.toml: ")


def receivers_of(config: NotifyConfig, **labels: str) -> list[str]:
    return [r.receiver for r in routes_for(config, alert(**labels))]


# --- the example file -------------------------------------------------------------------------
class TestExampleFile:
    def test_it_parses_with_the_variables_it_names(self) -> None:
        config = parse(EXAMPLE.read_text(), EXAMPLE_ENV)
        assert config.ui_base_url == "http://localhost:8080"
        kinds = {name: type(r) for name, r in config.receivers.items()}
        assert kinds == {
            "oncall-sms": TwilioReceiver,
            "ops-mail": SendGridReceiver,
            "north-mail": SmtpReceiver,
            "slack": WebhookReceiver,
            "incidents": WebhookReceiver,
        }
        sms = config.receivers["oncall-sms"]
        assert isinstance(sms, TwilioReceiver)
        assert sms.auth_token.get_secret_value() == "twilio-token"
        assert "twilio-token" not in repr(config)
        slack = config.receivers["slack"]
        assert isinstance(slack, WebhookReceiver)
        assert (slack.url, slack.format) == (EXAMPLE_ENV["SLACK_WEBHOOK_URL"], "slack")
        incidents = config.receivers["incidents"]
        assert isinstance(incidents, WebhookReceiver) and incidents.hmac_secret is not None
        assert incidents.timeout_s == 10.0

    def test_it_routes_as_its_comments_say(self) -> None:
        config = parse(EXAMPLE.read_text(), EXAMPLE_ENV)
        assert receivers_of(config, severity="warning", region="dakar") == ["slack"]
        assert receivers_of(config, severity="critical", region="dakar") == [
            "oncall-sms",
            "incidents",
        ]
        assert receivers_of(config, severity="critical", region="north-east") == [
            "oncall-sms",
            "incidents",
            "north-mail",
            "slack",
        ]
        assert receivers_of(config, severity="info", region="north") == []
        assert receivers_of(config, rule="data_quality", region="all") == ["ops-mail"]
        (silent,) = routes_for(config, alert(rule="silent_sensor", region="north"))
        assert (silent.receiver, silent.route_path, silent.group_wait_s) == (
            "north-mail",
            "root/3/0",
            120.0,
        )

    def test_every_variable_it_names_is_needed(self) -> None:
        for name in EXAMPLE_ENV:
            message = refused(
                EXAMPLE.read_text(), {k: v for k, v in EXAMPLE_ENV.items() if k != name}
            )
            assert f"environment variable {name} is not set" in message

    def test_it_is_packaged(self) -> None:
        pyproject = tomllib.loads((EXAMPLE.parents[1] / "pyproject.toml").read_text())
        assert "*.toml" in pyproject["tool"]["setuptools"]["package-data"]["include"]


# --- routing ----------------------------------------------------------------------------------
TREE = (
    SLACK
    + SMS
    + MAIL
    + """
[receivers.pager]
type = "webhook"
url = "https://pager.example.com/hook"

[route]
receivers = ["slack"]
group_wait = "10s"

[[route.routes]]
match = { severity = "critical" }
receivers = ["sms"]
repeat_interval = "1h"
continue = true

[[route.routes]]
match = { rule = "heat" }
match_re = { region = "north|north-.*" }
receivers = ["mail"]
group_by = ["region"]

  [[route.routes.routes]]
  match = { severity = "critical" }
  receivers = ["pager", "sms"]
  group_wait = "0s"

  [[route.routes.routes]]
  match = { severity = "info" }

[[route.routes]]
match = { rule = "heat" }
receivers = ["pager"]
"""
)


class TestRouting:
    config = parse(TREE)

    def test_no_matching_route_goes_to_the_root(self) -> None:
        (only,) = routes_for(self.config, alert(rule="cold", region="south"))
        assert only.receiver == "slack" and only.route_path == "root"
        assert only.group_by == ("rule", "region")
        assert (only.group_wait_s, only.repeat_interval_s) == (10.0, DEFAULT_REPEAT_INTERVAL_S)

    def test_the_first_matching_route_wins(self) -> None:
        # heat in the north: route 1, never route 2 (also heat) after it
        assert receivers_of(self.config, rule="heat", region="north") == ["mail"]
        assert receivers_of(self.config, rule="heat", region="south") == ["pager"]

    def test_continue_goes_on_to_later_routes(self) -> None:
        assert receivers_of(self.config, rule="cold", severity="critical") == ["sms"]
        found = routes_for(self.config, alert(rule="heat", region="south", severity="critical"))
        assert [(r.receiver, r.route_path) for r in found] == [
            ("sms", "root/0"),
            ("pager", "root/2"),
        ]

    def test_nested_routes_and_receiver_dedup(self) -> None:
        found = routes_for(self.config, alert(rule="heat", region="north", severity="critical"))
        # sms first through root/0; root/1/0 names it again: notified once, root/0's timing
        assert [(r.receiver, r.route_path) for r in found] == [
            ("sms", "root/0"),
            ("pager", "root/1/0"),
        ]
        sms, pager = found
        assert (sms.repeat_interval_s, sms.group_wait_s, sms.group_by) == (
            3600.0,
            10.0,
            ("rule", "region"),
        )
        # inherited from root/1 (group_by) and the root (repeat), its own group_wait
        assert (pager.group_by, pager.group_wait_s, pager.repeat_interval_s) == (
            ("region",),
            0.0,
            DEFAULT_REPEAT_INTERVAL_S,
        )

    def test_a_route_without_receivers_uses_its_parents(self) -> None:
        (info,) = routes_for(self.config, alert(rule="heat", region="north", severity="info"))
        assert (info.receiver, info.route_path, info.group_by) == ("mail", "root/1/1", ("region",))

    def test_match_re_matches_the_whole_label(self) -> None:
        assert receivers_of(self.config, rule="heat", region="north-east") == ["mail"]
        assert receivers_of(self.config, rule="heat", region="northern") == ["pager"]
        assert receivers_of(self.config, rule="heat", region="far-north") == ["pager"]

    def test_an_empty_receivers_list_only_logs(self) -> None:
        config = parse(
            SLACK + ROOT + '[[route.routes]]\nmatch = { severity = "info" }\nreceivers = []\n'
        )
        assert receivers_of(config, severity="info") == []
        assert receivers_of(config, severity="warning") == ["slack"]

    def test_root_defaults_are_alertmanagers(self) -> None:
        route = parse(SLACK + ROOT).route
        assert route.group_by == ("rule", "region")
        assert (route.group_wait_s, route.repeat_interval_s) == (0.0, 4 * 3600.0)

    def test_a_hand_made_config_never_breaks_routing(self) -> None:
        config = NotifyConfig(
            route=Route(
                receivers=("a",),
                routes=(
                    Route(receivers=("b",), matchers=(Matcher("region", pattern="("),)),
                    Route(receivers=("c",), matchers=(Matcher("region"),)),
                ),
            )
        )
        (found,) = routes_for(config, alert())
        assert (found.receiver, found.route_path, found.group_by) == (
            "c",
            "root/1",
            ("rule", "region"),
        )
        assert routes_for(NotifyConfig(), alert()) == []

    def test_missing_labels_are_empty(self) -> None:
        config = parse(
            SLACK
            + MAIL
            + ROOT
            + '[[route.routes]]\nmatch_re = { region = "" }\nreceivers = ["mail"]\n'
        )
        broken = Alert.from_json(b'{"rule": "heat"}')
        assert [r.receiver for r in routes_for(config, broken)] == ["mail"]
        assert group_key(broken, ("rule", "region")) == "rule=heat,region="


class TestGroupKey:
    def test_labels_in_the_order_given(self) -> None:
        assert group_key(alert(), ("rule", "region")) == "rule=heat,region=north"
        assert group_key(alert(), ("severity", "rule")) == "severity=warning,rule=heat"

    def test_no_labels_is_one_group(self) -> None:
        assert group_key(alert(), ()) == "all"

    def test_values_cannot_forge_another_group(self) -> None:
        tricky = group_key(alert(rule="heat,region=x", region="y"), ("rule", "region"))
        assert tricky == "rule=heat%2Cregion%3Dx,region=y"
        assert tricky != group_key(alert(rule="heat", region="x,region=y"), ("rule", "region"))


# --- durations --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ('"0s"', 0.0),
        ('"30s"', 30.0),
        ('"5m"', 300.0),
        ('"4h"', 14400.0),
        ('"1h30m"', 5400.0),
        ('"1d"', 86400.0),
        ('"1.5m"', 90.0),
        ('"250ms"', 0.25),
        ("45", 45.0),
        ("2.5", 2.5),
    ],
)
def test_durations(written: str, seconds: float) -> None:
    assert parse(SLACK + ROOT + f"group_wait = {written}\n").route.group_wait_s == seconds


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        (
            '"30"',
            'expected a duration ("30s", "5m", "4h", "1h30m" or a number of seconds), got "30"',
        ),
        ('"1 h"', "expected a duration"),
        ('"-5s"', "expected a duration"),
        ('"5x"', "expected a duration"),
        ('""', "expected a duration"),
        (
            "true",
            'expected a duration ("30s", "5m", "4h", "1h30m" or a number of seconds), got a boolean',
        ),
        ("inf", "expected a duration"),
        ("nan", "expected a duration"),
        ("-1", "must be at least 0s"),
        ('"2d"', "must be at most 1d"),
        ("[1]", "got a list"),
    ],
)
def test_bad_durations(written: str, problem: str) -> None:
    message = refused(SLACK + ROOT + f"group_wait = {written}\n")
    assert message.startswith("route.group_wait: "), message
    assert problem in message


# --- mistakes: one line naming the file and the key ------------------------------------------
def sms(**changes: str | None) -> str:
    """The SMS receiver with some keys changed (a value) or removed (None)."""
    lines = dict(line.split(" = ", 1) for line in SMS.splitlines()[1:])
    for key, value in changes.items():
        if value is None:
            lines.pop(key, None)
        else:
            lines[key] = value
    return "[receivers.sms]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())


SMS_ROOT = '[route]\nreceivers = ["sms"]\n'

MISTAKES = [
    # (the file, the key path, what the message says about it)
    ('route = "x"\n[receivers.slack\n', "", "not valid TOML: "),
    (SLACK + SLACK + ROOT, "receivers.slack", "defined twice (at line 4"),
    (SLACK + ROOT + "[routes]\n", "routes", "not a setting of a routes file (known: ui_base_url"),
    (ROOT, "receivers", "missing: no receiver: add a [receivers.<name>] table"),
    ("receivers = {}\n" + ROOT, "receivers", "no receiver: add"),
    ("receivers = 3\n" + ROOT, "receivers", "expected a table, got a number"),
    (SLACK, "route", "missing: the [route] table"),
    (SLACK + "[route]\n", "route.receivers", "missing: the receivers of alerts no other route"),
    (
        'ui_base_url = "localhost:8080"\n' + SLACK + ROOT,
        "ui_base_url",
        "expected an http:// or https:// URL",
    ),
    (
        '[receivers."my slack"]\ntype = "webhook"\n' + ROOT,
        'receivers."my slack"',
        "a receiver's name is",
    ),
    (
        "[receivers.slack]\nurl = 1\n" + ROOT,
        "receivers.slack.type",
        "missing: one of twilio, sendgrid, smtp, webhook",
    ),
    (
        '[receivers.slack]\ntype = "pagerduty"\n' + ROOT,
        "receivers.slack.type",
        'expected one of twilio, sendgrid, smtp, webhook, got "pagerduty"',
    ),
    (
        SLACK + 'token = "x"\n' + ROOT,
        "receivers.slack.token",
        "not a setting of a webhook receiver (known: type, url, url_env",
    ),
    (
        SLACK + 'format = "teams"\n' + ROOT,
        "receivers.slack.format",
        'expected one of slack, json, got "teams"',
    ),
    (SLACK + 'timeout = "10m"\n' + ROOT, "receivers.slack.timeout", "must be at most 5m"),
    (SLACK + "timeout = 0\n" + ROOT, "receivers.slack.timeout", "must be longer than 0s"),
    (
        '[receivers.slack]\ntype = "webhook"\n' + ROOT,
        "receivers.slack.url",
        "missing: expected an http:// or https:// URL",
    ),
    (
        '[receivers.slack]\ntype = "webhook"\nurl = "ftp://x"\n' + ROOT,
        "receivers.slack.url",
        "expected an http:// or https:// URL",
    ),
    (
        '[receivers.slack]\ntype = "webhook"\nurl = "https://x:port/"\n' + ROOT,
        "receivers.slack.url",
        "expected an http:// or https:// URL",
    ),
    (
        sms(to='"+15551234567"') + SMS_ROOT,
        "receivers.sms.to",
        "expected a list of phone numbers in E.164 form",
    ),
    (sms(to="[]") + SMS_ROOT, "receivers.sms.to", "got an empty list"),
    (sms(to=None) + SMS_ROOT, "receivers.sms.to", "missing: expected a list of phone numbers"),
    (
        sms(to='["+15551234567", "555-1234"]') + SMS_ROOT,
        "receivers.sms.to[1]",
        'expected one of phone numbers in E.164 form ("+15551234567"), got "555-1234"',
    ),
    (
        sms(to='["+15551234567", "+15551234567"]') + SMS_ROOT,
        "receivers.sms.to[1]",
        "is listed twice",
    ),
    (sms(to="[1]") + SMS_ROOT, "receivers.sms.to[0]", "got a number"),
    (
        sms(**{"from": '"15005550006"'}) + SMS_ROOT,
        "receivers.sms.from",
        "expected a phone number in E.164 form",
    ),
    (sms(**{"from": None}) + SMS_ROOT, "receivers.sms.from", "missing: expected a phone number"),
    (
        sms(account_sid='"AC123"') + SMS_ROOT,
        "receivers.sms.account_sid",
        "expected a Twilio account SID (AC and 32 hexadecimal digits)",
    ),
    (
        sms(auth_token_env=None) + SMS_ROOT,
        "receivers.sms.auth_token_env",
        'missing: the environment variable holding the Twilio auth token (or auth_token = "…" inline)',
    ),
    (
        sms(auth_token_env='"MISSING"') + SMS_ROOT,
        "receivers.sms.auth_token_env",
        "environment variable MISSING is not set",
    ),
    (
        sms(auth_token_env='"EMPTY"') + SMS_ROOT,
        "receivers.sms.auth_token_env",
        "environment variable EMPTY is empty",
    ),
    (
        sms(auth_token_env="42") + SMS_ROOT,
        "receivers.sms.auth_token_env",
        "expected the name of the environment variable",
    ),
    (
        sms(auth_token='"x"') + SMS_ROOT,
        "receivers.sms.auth_token",
        "set either auth_token or auth_token_env, not both",
    ),
    (
        sms(auth_token_env=None, auth_token='""') + SMS_ROOT,
        "receivers.sms.auth_token",
        "expected the Twilio auth token as a string, got an empty string",
    ),
    (
        sms(api_base_url='"127.0.0.1:8999"') + SMS_ROOT,
        "receivers.sms.api_base_url",
        "expected an http:// or https:// URL",
    ),
    (MAIL + '[route]\nreceivers = ["mail"]\n', None, None),  # the base: fine
    (
        MAIL + 'port = 0\n[route]\nreceivers = ["mail"]\n',
        "receivers.mail.port",
        "expected a port number (1 to 65535), got 0",
    ),
    (MAIL + 'port = "587"\n[route]\nreceivers = ["mail"]\n', "receivers.mail.port", "got a string"),
    (MAIL + 'port = true\n[route]\nreceivers = ["mail"]\n', "receivers.mail.port", "got a boolean"),
    (
        MAIL + 'security = "ssl"\n[route]\nreceivers = ["mail"]\n',
        "receivers.mail.security",
        'expected one of starttls, tls, none, got "ssl"',
    ),
    (
        MAIL + 'username = "cw"\n[route]\nreceivers = ["mail"]\n',
        "receivers.mail.password_env",
        "missing: username is set",
    ),
    (
        MAIL + 'password_env = "TOKEN"\n[route]\nreceivers = ["mail"]\n',
        "receivers.mail.username",
        "missing: a password is set",
    ),
    (
        MAIL + 'security = "none"\nca_file = "ca.pem"\n[route]\nreceivers = ["mail"]\n',
        "receivers.mail.ca_file",
        'a CA bundle needs security = "starttls" or "tls"',
    ),
    (
        MAIL.replace("smtp.example.com", "smtp://smtp.example.com")
        + '[route]\nreceivers = ["mail"]\n',
        "receivers.mail.host",
        "expected a host name",
    ),
    (
        MAIL.replace('"cw@example.com"', '"cw"') + '[route]\nreceivers = ["mail"]\n',
        "receivers.mail.from",
        'expected an e-mail address ("alerts@example.com" or "ClimateWatch <alerts@example.com>"), got "cw"',
    ),
    (
        MAIL.replace('"cw@example.com"', '"cw@x\\r\\nBcc: all@x"')
        + '[route]\nreceivers = ["mail"]\n',
        "receivers.mail.from",
        "control characters",
    ),
    (
        MAIL.replace('["ops@example.com"]', '["ops@example.com, dev@example.com"]')
        + '[route]\nreceivers = ["mail"]\n',
        "receivers.mail.to[0]",
        "expected one of e-mail addresses",
    ),
    (
        '[receivers.sg]\ntype = "sendgrid"\nfrom = "a@b.c"\nto = ["d@e.f"]\n[route]\nreceivers = ["sg"]\n',
        "receivers.sg.api_key_env",
        "missing: the environment variable holding the SendGrid API key",
    ),
    (
        '[receivers.sg]\ntype = "sendgrid"\napi_key_env = "TOKEN"\nfrom = "a@b.c"\nto = ["d@e.f"]\napi_host = "x"\n[route]\nreceivers = ["sg"]\n',
        "receivers.sg.api_host",
        "expected an http:// or https:// URL",
    ),
    (
        SLACK + '[route]\nreceivers = ["slak"]\n',
        "route.receivers[0]",
        'no receiver is named "slak" (receivers: slack)',
    ),
    (
        SLACK + '[route]\nreceivers = "slack"\n',
        "route.receivers",
        "expected a list of receiver names, got a string",
    ),
    (
        SLACK + '[route]\nreceivers = ["slack", "slack"]\n',
        "route.receivers[1]",
        '"slack" is listed twice',
    ),
    (
        SLACK + ROOT + 'match = { severity = "critical" }\n',
        "route.match",
        "the root route takes every alert",
    ),
    (SLACK + ROOT + "continue = true\n", "route.continue", "the root route takes every alert"),
    (
        SLACK + ROOT + 'receiver = "slack"\n',
        "route.receiver",
        "not a setting of the root route (known: receivers, group_by",
    ),
    (
        SLACK + ROOT + 'group_by = ["host"]\n',
        "route.group_by[0]",
        'expected a label (rule, region, severity), got "host"',
    ),
    (SLACK + ROOT + 'group_by = ["rule", "rule"]\n', "route.group_by[1]", "listed twice"),
    (SLACK + ROOT + 'group_by = "rule"\n', "route.group_by", "expected a list of labels"),
    (SLACK + ROOT + 'repeat_interval = "0s"\n', "route.repeat_interval", "must be at least 1s"),
    (SLACK + ROOT + 'repeat_interval = "31d"\n', "route.repeat_interval", "must be at most 30d"),
    (
        SLACK + ROOT + "routes = 5\n",
        "route.routes",
        "expected a list of tables ([[route.routes]]), got a number",
    ),
    (SLACK + ROOT + "routes = [5]\n", "route.routes[0]", "expected a table, got a number"),
    (
        SLACK + ROOT + '[[route.routes]]\nreceivers = ["nobody"]\n',
        "route.routes[0].receivers[0]",
        'no receiver is named "nobody"',
    ),
    (
        SLACK + ROOT + '[[route.routes]]\n[[route.routes]]\nmatch = { host = "a" }\n',
        "route.routes[1].match.host",
        "not a label of an alert (labels: rule, region, severity)",
    ),
    (
        SLACK + ROOT + '[[route.routes]]\nmatch = { severity = "crit" }\n',
        "route.routes[0].match.severity",
        'expected one of info, warning, critical, got "crit"',
    ),
    (
        SLACK + ROOT + '[[route.routes]]\nmatch = { rule = "heet" }\n',
        "route.routes[0].match.rule",
        "expected one of heat, cold, drastic_change",
    ),
    (
        SLACK + ROOT + "[[route.routes]]\nmatch = { region = 5 }\n",
        "route.routes[0].match.region",
        "expected a string, got a number",
    ),
    (
        SLACK + ROOT + '[[route.routes]]\nmatch = "severity=critical"\n',
        "route.routes[0].match",
        "expected a table of labels",
    ),
    (
        SLACK + ROOT + '[[route.routes]]\nmatch_re = { region = "north(" }\n',
        "route.routes[0].match_re.region",
        "not a valid regular expression: missing ), unterminated subpattern at position 5",
    ),
    (
        SLACK + ROOT + '[[route.routes]]\nmatch_re = { region = "a{99999999999}" }\n',
        "route.routes[0].match_re.region",
        "not a valid regular expression",
    ),
    (
        SLACK + ROOT + '[[route.routes]]\nmatch_re = { severity = "crit" }\n',
        "route.routes[0].match_re.severity",
        "matches no severity (they are info, warning, critical)",
    ),
    (
        SLACK + ROOT + '[[route.routes]]\ncontinue = "yes"\n',
        "route.routes[0].continue",
        "expected true or false, got a string",
    ),
    (
        SLACK + ROOT + '[[route.routes]]\n[[route.routes.routes]]\ngroup_wait = "soon"\n',
        "route.routes[0].routes[0].group_wait",
        "expected a duration",
    ),
    (
        SLACK + ROOT + "".join("[[route" + ".routes" * n + "]]\n" for n in range(1, 12)),
        "route" + ".routes[0]" * 10 + ".routes",
        "routes nest more than 10 levels deep",
    ),
]


@pytest.mark.parametrize(("text", "path", "problem"), MISTAKES)
def test_each_mistake_is_one_line_naming_the_key(
    text: str, path: str | None, problem: str | None
) -> None:
    if path is None:
        parse(text)
        return
    message = refused(text, {**ENV, "EMPTY": ""})
    prefix = f"{path}: " if path else ""
    assert message.startswith(prefix), message
    assert problem is not None and problem in message, message


SECRET_PLACES = [
    # a secret, wherever a user may misplace it, never comes back in the message
    sms(auth_token_env=None, auth_token=f'"{SECRET}"', to='"+1555"') + SMS_ROOT,
    sms(auth_token_env=f'"{SECRET}"') + SMS_ROOT,
    sms(account_sid=f'"{SECRET}"') + SMS_ROOT,
    SLACK + f'api_key = "{SECRET}"\n' + ROOT,
    SLACK + f'hmac_secret = "{SECRET}"\nhmac_secret_env = "TOKEN"\n' + ROOT,
    '[receivers.slack]\ntype = "webhook"\nurl_env = "TOKEN"\n' + ROOT,  # not a URL
    f'[receivers.slack]\ntype = "webhook"\nurl = "https://x/{SECRET} y"\n' + ROOT,
    f'[receivers.slack]\ntype = "webhook"\nurl = "{SECRET}"\n' + ROOT,
    MAIL + f'password = "{SECRET}"\n' + ROOT,
    f'ui_base_url = "{SECRET}"\n' + SLACK + ROOT,
    SLACK + f"auth_token = {SECRET}\n" + ROOT,  # unquoted: not TOML
    SLACK + f'auth_token = "{SECRET}\n' + ROOT,  # unterminated
]


@pytest.mark.parametrize("text", SECRET_PLACES)
def test_a_secret_is_never_in_a_message(text: str) -> None:
    refused(text, {"TOKEN": SECRET})


def test_secrets_are_wrapped() -> None:
    config = parse(
        sms(auth_token_env=None, auth_token=f'"{SECRET}"')
        + MAIL
        + f'username = "cw"\npassword = "{SECRET}"\n'
        + '[route]\nreceivers = ["sms", "mail"]\n'
    )
    sms_receiver, mail = config.receivers["sms"], config.receivers["mail"]
    assert isinstance(sms_receiver, TwilioReceiver) and isinstance(mail, SmtpReceiver)
    assert isinstance(sms_receiver.auth_token, SecretStr)
    assert isinstance(mail.password, SecretStr)
    assert mail.password.get_secret_value() == SECRET
    assert SECRET not in repr(config) and SECRET not in str(config)


def test_receiver_settings_are_read() -> None:
    config = parse(
        sms(api_base_url='"http://127.0.0.1:8999"', timeout='"3s"')
        + MAIL
        + 'security = "tls"\nusername = "cw"\npassword_env = "TOKEN"\nca_file = "ca.pem"\n'
        + '[receivers.sg]\ntype = "sendgrid"\napi_key = "SG.x"\nfrom = "CW <a@b.c>"\n'
        + 'to = ["d@e.f", "g@h"]\napi_host = "http://127.0.0.1:8998"\n'
        + '[receivers.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\nhmac_secret_env = "TOKEN"\n'
        + '[route]\nreceivers = ["sms", "mail", "sg", "hook"]\n'
    )
    assert config.receivers["sms"] == TwilioReceiver(
        "sms",
        SID,
        SecretStr(SECRET),
        "+15005550006",
        ("+15551234567",),
        "http://127.0.0.1:8999",
        3.0,
    )
    assert config.receivers["mail"] == SmtpReceiver(
        "mail",
        "smtp.example.com",
        465,  # the port of security = "tls"
        "cw@example.com",
        ("ops@example.com",),
        "tls",
        "cw",
        SecretStr(SECRET),
        "ca.pem",
    )
    assert config.receivers["sg"] == SendGridReceiver(
        "sg", SecretStr("SG.x"), "CW <a@b.c>", ("d@e.f", "g@h"), "http://127.0.0.1:8998"
    )
    hook = config.receivers["hook"]
    assert isinstance(hook, WebhookReceiver)
    assert (hook.format, hook.timeout_s, hook.hmac_secret) == ("json", 5.0, SecretStr(SECRET))
    assert (
        parse(sms(**{"from": '"ClimateWtch"'}) + SMS_ROOT).receivers["sms"].from_number
        == "ClimateWtch"
    )  # type: ignore[union-attr]


# --- without a file: the settings -------------------------------------------------------------
class TestDefaultConfig:
    def test_webhook_only(self) -> None:
        config = default_config(
            load_settings(
                webhook_url="https://hooks.example.com/x",
                webhook_hmac_secret="sign",
                webhook_timeout_s=2.5,
                ui_base_url="http://localhost:8080/",
            )
        )
        assert config.receivers == {
            "webhook": WebhookReceiver(
                "webhook", "https://hooks.example.com/x", "slack", SecretStr("sign"), 2.5
            )
        }
        assert config.ui_base_url == "http://localhost:8080"
        assert [r.receiver for r in routes_for(config, alert())] == ["webhook"]

    def test_smtp_only(self) -> None:
        config = default_config(
            load_settings(
                smtp_host="smtp.example.com",
                smtp_port=465,
                smtp_security="tls",
                smtp_username="cw",
                smtp_password="pw",
                alert_email_from="ClimateWatch <cw@example.com>",
                alert_email_to="a@example.com, b@example.com,",
            )
        )
        assert config.receivers == {
            "email": SmtpReceiver(
                "email",
                "smtp.example.com",
                465,
                "ClimateWatch <cw@example.com>",
                ("a@example.com", "b@example.com"),
                "tls",
                "cw",
                SecretStr("pw"),
            )
        }
        (only,) = routes_for(config, alert())
        assert (only.receiver, only.route_path, only.repeat_interval_s) == (
            "email",
            "root",
            14400.0,
        )

    def test_both(self) -> None:
        config = default_config(
            load_settings(
                webhook_url="http://127.0.0.1:9/x", smtp_host="relay", alert_email_to="a@b"
            )
        )
        assert list(config.receivers) == ["webhook", "email"]
        assert [r.receiver for r in routes_for(config, alert(severity="critical"))] == [
            "webhook",
            "email",
        ]

    def test_neither_only_logs(self) -> None:
        config = default_config(load_settings())
        assert config.receivers == {} and config.ui_base_url is None
        assert routes_for(config, alert()) == []

    @pytest.mark.parametrize(
        ("overrides", "variable", "problem"),
        [
            (
                {"smtp_host": "relay"},
                "CLIMATEWATCH_ALERT_EMAIL_TO",
                "not set, but CLIMATEWATCH_SMTP_HOST is",
            ),
            (
                {"smtp_host": "relay", "alert_email_to": " , "},
                "CLIMATEWATCH_ALERT_EMAIL_TO",
                "not set",
            ),
            (
                {"smtp_host": "relay", "alert_email_to": "a@b;c@d"},
                "CLIMATEWATCH_ALERT_EMAIL_TO",
                'got "a@b;c@d"',
            ),
            (
                {"smtp_host": "relay", "alert_email_to": "a@b,a@b"},
                "CLIMATEWATCH_ALERT_EMAIL_TO",
                "listed twice",
            ),
            (
                {"smtp_host": "relay", "alert_email_to": "a@b", "alert_email_from": "me"},
                "CLIMATEWATCH_ALERT_EMAIL_FROM",
                'got "me"',
            ),
            (
                {"smtp_host": "relay", "alert_email_to": "a@b", "smtp_username": "u"},
                "CLIMATEWATCH_SMTP_PASSWORD",
                "not set",
            ),
            (
                {"smtp_host": "relay", "alert_email_to": "a@b", "smtp_password": SECRET},
                "CLIMATEWATCH_SMTP_USERNAME",
                "not set",
            ),
            (
                {"alert_email_to": "a@b"},
                "CLIMATEWATCH_ALERT_EMAIL_TO",
                "CLIMATEWATCH_SMTP_HOST is not",
            ),
            (
                {"smtp_password": SECRET},
                "CLIMATEWATCH_SMTP_PASSWORD",
                "CLIMATEWATCH_SMTP_HOST is not",
            ),
            (
                {"webhook_hmac_secret": SECRET},
                "CLIMATEWATCH_WEBHOOK_HMAC_SECRET",
                "CLIMATEWATCH_WEBHOOK_URL is not",
            ),
            (
                {"webhook_url": "hooks.example.com"},
                "CLIMATEWATCH_WEBHOOK_URL",
                "expected an http:// or https:// URL",
            ),
            ({"ui_base_url": "localhost:8080"}, "CLIMATEWATCH_UI_BASE_URL", "expected an http"),
        ],
    )
    def test_half_a_setting_is_refused(
        self, overrides: dict[str, str], variable: str, problem: str
    ) -> None:
        with pytest.raises(ClimateWatchError) as caught:
            default_config(load_settings(**overrides))
        message = str(caught.value)
        assert message.startswith(f"invalid setting: {variable}: "), message
        assert problem in message and "\n" not in message and SECRET not in message


class TestLoadNotifyConfig:
    def test_without_a_file_the_settings(self) -> None:
        settings = load_settings(webhook_url="https://hooks.example.com/x")
        assert load_notify_config(settings) == default_config(settings)

    def test_the_file_and_the_ui_base_url_setting(self, tmp_path: Path) -> None:
        path = tmp_path / "notify.toml"
        path.write_text(SLACK + ROOT)
        settings = load_settings(
            notify_file=path, ui_base_url="http://ui:8080", webhook_url="https://other/"
        )
        config = load_notify_config(settings, {})
        assert list(config.receivers) == ["slack"]  # the file wins over the settings
        assert config.ui_base_url == "http://ui:8080"
        path.write_text('ui_base_url = "https://cw.example.com/"\n' + SLACK + ROOT)
        assert load_notify_config(settings, {}).ui_base_url == "https://cw.example.com"

    def test_secrets_from_the_given_environment(self, tmp_path: Path) -> None:
        path = tmp_path / "notify.toml"
        path.write_text(SMS + SMS_ROOT)
        settings = load_settings(notify_file=path)
        config = load_notify_config(settings, ENV)
        assert config.receivers["sms"].auth_token.get_secret_value() == SECRET  # type: ignore[union-attr]
        with pytest.raises(ClimateWatchError, match=rf"^{path}: receivers\.sms\.auth_token_env: "):
            load_notify_config(settings, {})

    def test_a_missing_or_unreadable_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope.toml"
        with pytest.raises(
            ClimateWatchError,
            match=r"^invalid setting: CLIMATEWATCH_NOTIFY_FILE: .*nope\.toml does not exist$",
        ):
            load_notify_config(load_settings(notify_file=missing), {})
        with pytest.raises(
            ClimateWatchError,
            match=r"^invalid setting: CLIMATEWATCH_NOTIFY_FILE: .* cannot be read",
        ):
            load_notify_config(load_settings(notify_file=tmp_path), {})
        binary = tmp_path / "binary.toml"
        binary.write_bytes(b"\xff\xfe\x00")
        with pytest.raises(ClimateWatchError, match=r"CLIMATEWATCH_NOTIFY_FILE: .* is not UTF-8"):
            load_notify_config(load_settings(notify_file=binary), {})

    def test_a_ca_file_is_found_beside_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "notify.toml"
        path.write_text(MAIL + 'ca_file = "ca.pem"\n[route]\nreceivers = ["mail"]\n')
        settings = load_settings(notify_file=path)
        with pytest.raises(
            ClimateWatchError, match=r"receivers\.mail\.ca_file: .*ca\.pem is not a file$"
        ):
            load_notify_config(settings, {})
        (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
        mail = load_notify_config(settings, {}).receivers["mail"]
        assert isinstance(mail, SmtpReceiver) and mail.ca_file == str(tmp_path / "ca.pem")


# --- whatever the input: a config, or one line ------------------------------------------------
def toml_string(text: str) -> str:
    escaped = "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
        for c in text
    )
    return f'"{escaped}"'


def toml_value(value: Any) -> str:
    """A value as inline TOML (a small writer: the standard library only reads TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(document: dict[str, Any]) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in document.items())


NAMES = ["slack", "sms", "mail", "sg", "a.b", "my slack", ""]
TYPES = ["twilio", "sendgrid", "smtp", "webhook", "pagerduty"]
WORDS = [
    *NAMES,
    *TYPES,
    *GROUP_LABELS,
    *SEVERITIES,
    *KNOWN_RULES,
    "TOKEN",
    "EMPTY",
    "MISSING",
    SID,
    "+15551234567",
    "+15005550006",
    "ops@example.com",
    "CW <a@b.c>",
    "https://hooks.example.com/x",
    "http://127.0.0.1:8999",
    "smtp.example.com",
    "starttls",
    "tls",
    "none",
    "json",
    "30s",
    "1h30m",
    "0s",
    "250ms",
    "north|north-.*",
    "(",
    ".*",
    "a{99999999999}",
]
scalars = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=6),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.booleans(),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(WORDS), scalars, max_size=2),
)
RECEIVER_KEYS = sorted(
    {
        "type",
        "account_sid",
        "auth_token",
        "auth_token_env",
        "from",
        "to",
        "api_base_url",
        "timeout",
        "api_key",
        "api_key_env",
        "api_host",
        "host",
        "port",
        "security",
        "username",
        "password",
        "password_env",
        "ca_file",
        "url",
        "url_env",
        "format",
        "hmac_secret",
        "hmac_secret_env",
        "bogus",
    }
)
SECRET_KEYS = {"auth_token", "api_key", "password", "hmac_secret"}
receiver_bodies = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(TYPES), scalars)},
    optional={
        key: st.one_of(st.just(SECRET), values) if key in SECRET_KEYS else values
        for key in RECEIVER_KEYS
        if key != "type"
    },
)
routes = st.deferred(
    lambda: st.fixed_dictionaries(
        {},
        optional={
            "receivers": st.one_of(st.lists(st.sampled_from(NAMES), max_size=3), values),
            "match": st.one_of(
                st.dictionaries(st.sampled_from(WORDS), scalars, max_size=2), values
            ),
            "match_re": st.dictionaries(st.sampled_from(WORDS), scalars, max_size=2),
            "continue": st.one_of(st.booleans(), scalars),
            "group_by": st.one_of(st.lists(st.sampled_from(WORDS), max_size=3), values),
            "group_wait": values,
            "repeat_interval": values,
            "routes": st.one_of(st.lists(routes, max_size=2), values),
            "bogus": values,
        },
    )
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "receivers": st.one_of(
            st.dictionaries(st.sampled_from(NAMES), receiver_bodies, max_size=3), values
        ),
        "route": st.one_of(routes, values),
        "ui_base_url": values,
        "bogus": values,
    },
)
FUZZ_ENV = {"TOKEN": SECRET, "EMPTY": ""}


def parsed_or_one_line(text: str) -> NotifyConfig | None:
    try:
        return parse_notify_config(text, "notify.toml", FUZZ_ENV)
    except ClimateWatchError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, message
        assert message.startswith("notify.toml: "), message
        assert "cannot be read as a routes file" not in message, message  # a bug fallback
        assert SECRET not in message, message
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.text(alphabet="[]{}=\".,\n \\#abc0123_-+:'", max_size=60)))
def test_any_text_is_a_config_or_one_line(text: str) -> None:
    parsed_or_one_line(text)


def valid_routes(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    """Routes that are right, nested up to ``depth`` levels below."""
    conditions = st.dictionaries(
        st.sampled_from(GROUP_LABELS), st.sampled_from(["critical", "heat", "north"]), max_size=2
    )
    optional: dict[str, st.SearchStrategy[Any]] = {
        "receivers": st.lists(st.sampled_from(["slack", "sms", "mail"]), unique=True),
        "match": conditions.map(
            lambda c: {k: {"severity": "critical", "rule": "heat"}.get(k, v) for k, v in c.items()}
        ),
        "match_re": st.dictionaries(
            st.just("region"), st.sampled_from(["north|south", ".*", "n.*", ""]), max_size=1
        ),
        "continue": st.booleans(),
        "group_by": st.lists(st.sampled_from(GROUP_LABELS), unique=True),
        "group_wait": st.sampled_from(["0s", "30s", 5, "1h"]),
        "repeat_interval": st.sampled_from(["1h", "4h", 60]),
    }
    if depth:
        optional["routes"] = st.lists(valid_routes(depth - 1), max_size=3)
    return st.fixed_dictionaries({}, optional=optional)


def valid_documents() -> st.SearchStrategy[str]:
    """Routes files that are right, with trees of many shapes."""
    roots = valid_routes(2).map(
        lambda r: (
            {"receivers": ["slack"]}
            | {k: v for k, v in r.items() if k not in ("match", "match_re", "continue")}
        )
    )
    return roots.map(lambda root: toml_document({"route": root}) + SLACK + SMS + MAIL)


VALID_RECEIVERS: dict[str, dict[str, Any]] = {
    "sms": {
        "type": "twilio",
        "account_sid": SID,
        "auth_token": SECRET,
        "from": "+15005550006",
        "to": ["+15551234567"],
    },
    "sg": {"type": "sendgrid", "api_key_env": "TOKEN", "from": "CW <a@b.c>", "to": ["d@e.f"]},
    "mail": {
        "type": "smtp",
        "host": "smtp.example.com",
        "port": 587,
        "username": "cw",
        "password": SECRET,
        "from": "cw@example.com",
        "to": ["ops@example.com"],
    },
    "slack": {
        "type": "webhook",
        "url": "https://hooks.example.com/x",
        "hmac_secret_env": "TOKEN",
        "format": "slack",
        "timeout": "5s",
    },
}


def places(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a parsed TOML document."""
    found: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, inner in items:
        found.append((value, key))
        if isinstance(inner, dict | list):
            found += places(inner)
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A right routes file with a few things changed, removed or added: mistakes deep
    inside, where arbitrary documents seldom get."""
    root = draw(valid_routes(2))
    root["receivers"] = draw(st.lists(st.sampled_from(list(VALID_RECEIVERS)), unique=True))
    for key in ("match", "match_re", "continue"):
        root.pop(key, None)
    document: dict[str, Any] = {
        "ui_base_url": "http://localhost:8080",
        "receivers": copy.deepcopy(VALID_RECEIVERS),
        "route": root,
    }
    for _ in range(draw(st.integers(1, 3))):
        container, key = draw(st.sampled_from(places(document)))
        change = draw(st.sampled_from(["replace", "remove", "add"]))
        if change == "replace":
            container[key] = draw(values)  # never a secret: those stay where they were
        elif change == "remove":
            del container[key]
        elif isinstance(container, dict):
            container[draw(st.sampled_from(WORDS))] = draw(values)
        else:
            container.append(draw(values))
    return document


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(mutated_documents(), documents),
    st.lists(st.builds(alert, st.sampled_from(KNOWN_RULES)), max_size=3),
)
def test_any_toml_is_a_config_or_one_line(document: dict[str, Any], alerts: list[Alert]) -> None:
    text = toml_document(document)
    if "nan" not in text:
        assert tomllib.loads(text) == document  # the writer writes what it was given
    config = parsed_or_one_line(text)
    if config is not None:
        for each in alerts:
            found = routes_for(config, each)
            assert len({r.receiver for r in found}) == len(found)
            assert {r.receiver for r in found} <= set(config.receivers)


labels = st.one_of(
    st.none(), st.text(max_size=12), st.sampled_from([*KNOWN_RULES, *SEVERITIES, "north"])
)
any_alerts = st.builds(
    Alert,
    alert_id=st.text(max_size=5),
    rule=labels,
    severity=labels,
    region=labels,
    window_start=st.text(max_size=5),
    window_end=st.text(max_size=5),
    value=st.one_of(st.none(), st.floats()),
    threshold=st.one_of(st.none(), st.floats()),
    status=st.sampled_from(["firing", "resolved"]),
    message=st.text(max_size=5),
    emitted_at=st.text(max_size=5),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents(), st.lists(any_alerts, min_size=1, max_size=4))
def test_routing_never_fails_on_any_alert(text: str, alerts: list[Alert]) -> None:
    config = parse(text)
    for each in alerts:
        found = routes_for(config, each)
        receivers = [r.receiver for r in found]
        assert len(set(receivers)) == len(receivers)
        assert set(receivers) <= set(config.receivers)
        assert all(r.route_path.startswith("root") for r in found)
        assert all(r.group_wait_s >= 0 and r.repeat_interval_s > 0 for r in found)
        for r in found:
            assert group_key(each, r.group_by)
