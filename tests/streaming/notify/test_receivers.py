"""The senders through the real clients (twilio, sendgrid, smtplib, urllib) against local
servers that speak the same protocols (:mod:`tests.fixtures.notify_servers`).

What is checked: each kind delivers and the message has what a person needs; the
credentials reached the server the way the protocol wants (HTTP Basic, a Bearer key,
SMTP AUTH only after STARTTLS); refusals are permanent, outages and 5xx transient; no
secret is in any error, traceback or log line; a retried SMS does not text a number twice.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TypeVar

import orjson
import pytest
from pydantic import SecretStr

from include.events import Alert
from streaming.notify.config import SendGridReceiver, SmtpReceiver, TwilioReceiver, WebhookReceiver
from streaming.notify.messages import Notification
from streaming.notify.receivers import (
    DeliveryError,
    PermanentDeliveryError,
    Sender,
    TransientDeliveryError,
    build_sender,
)
from tests.fixtures.notify_servers import (
    FakeSendGrid,
    FakeTwilio,
    HttpRequest,
    Reply,
    SmtpServer,
    WebhookServer,
    verify_signature,
)

UI = "http://airflow.example:8080"
LINK = "http://airflow.example:8080/climatewatch/?region=north"
HMAC_SECRET = "hmac-secret-" + "h" * 20
HEAT = Alert(
    alert_id="heat-north-0123456789abcdef",
    rule="heat",
    severity="warning",
    region="north",
    window_start="2026-07-01T12:00:00.000Z",
    window_end="2026-07-01T12:01:00.000Z",
    value=34.2,
    threshold=30.0,
    status="firing",
    message="mean 34.2 °C above 30 °C in north",
    emitted_at="2026-07-01T12:01:31.000Z",
)
RESOLVED = replace(HEAT, status="resolved", value=28.9, message="resolved: back under 30 °C")
NOTE = Notification("on-call", (HEAT,), "rule=heat/region=north")
Http = TypeVar("Http", FakeTwilio, FakeSendGrid, WebhookServer)
ESSENTIALS = ("heat", "north", "mean 34.2 °C, threshold 30.0 °C", "2026-07-01 12:00 UTC", LINK)


# --- servers: one of each for the module, reset for each test ---------------------------------
@pytest.fixture(scope="module")
def twilio_server() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture(scope="module")
def sendgrid_server() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture(scope="module")
def webhook_server() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def twilio(twilio_server: FakeTwilio) -> Iterator[FakeTwilio]:
    yield from _fresh(twilio_server)


@pytest.fixture
def sendgrid(sendgrid_server: FakeSendGrid) -> Iterator[FakeSendGrid]:
    yield from _fresh(sendgrid_server)


@pytest.fixture
def webhook(webhook_server: WebhookServer) -> Iterator[WebhookServer]:
    yield from _fresh(webhook_server)


@pytest.fixture
def smtp(smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    smtp_server.start().clear()
    yield smtp_server
    for stage in ("MAIL", "RCPT", "DATA"):
        smtp_server.respond_with(None, at=stage)  # type: ignore[arg-type]
    smtp_server.start()  # a test that stopped it leaves it running for the next


def _fresh(server: Http) -> Iterator[Http]:
    server.start().clear()
    server.respond_with(None)
    yield server
    server.respond_with(None)
    server.start()


# --- receivers pointed at them -----------------------------------------------------------------
def twilio_receiver(server: FakeTwilio, *numbers: str, token: str | None = None) -> TwilioReceiver:
    return TwilioReceiver(
        name="sms-on-call",
        account_sid=server.account_sid,
        auth_token=SecretStr(token or server.auth_token),
        from_number="+15550000000",
        to_numbers=numbers or ("+15550000001",),
        api_base_url=server.base_url,
        timeout_s=2.0,
    )


def sendgrid_receiver(
    server: FakeSendGrid, key: str | None = None, timeout_s: float = 2.0
) -> SendGridReceiver:
    return SendGridReceiver(
        name="mail-on-call",
        api_key=SecretStr(key or server.api_key),
        from_email="climatewatch@example.org",
        to_emails=("ops@example.org", "lead@example.org"),
        api_host=server.api_host,
        timeout_s=timeout_s,
    )


def smtp_receiver(server: SmtpServer, **changes: object) -> SmtpReceiver:
    receiver = SmtpReceiver(
        name="relay",
        host="127.0.0.1",
        port=server.port,
        from_email="climatewatch@example.org",
        to_emails=("ops@example.org", "lead@example.org"),
        security="starttls",
        username=server.username,
        password=SecretStr(server.password),
        ca_file=server.ca_file,
        timeout_s=2.0,
    )
    return replace(receiver, **changes)  # type: ignore[arg-type]


def webhook_receiver(server: WebhookServer, **changes: object) -> WebhookReceiver:
    receiver = WebhookReceiver(
        name="hook", url=f"{server.url}/hooks/climatewatch", hmac_secret=SecretStr(HMAC_SECRET)
    )
    return replace(receiver, **changes)  # type: ignore[arg-type]


def answer_when(release: threading.Event) -> Callable[[HttpRequest], int]:
    """An answer that waits (at most 2 s) to be released, then refuses: too slow for the
    client, and never counted as accepted when it finally comes."""

    def answer(request: HttpRequest) -> int:
        release.wait(2.0)
        return 503

    return answer


def failure(sender: Sender, notification: Notification = NOTE) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        sender.send(notification)
    return caught.value


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    """Neither the message nor the whole traceback (causes included) holds a secret."""
    text = "".join(traceback.format_exception(error))
    assert "\n" not in str(error)
    for secret in secrets:
        assert secret not in text


# --- the protocol ------------------------------------------------------------------------------
@pytest.mark.unit
def test_build_sender_gives_one_sender_per_kind(
    twilio: FakeTwilio, sendgrid: FakeSendGrid, smtp: SmtpServer, webhook: WebhookServer
) -> None:
    receivers = [
        twilio_receiver(twilio),
        sendgrid_receiver(sendgrid),
        smtp_receiver(smtp),
        webhook_receiver(webhook),
    ]
    senders = [build_sender(r, UI) for r in receivers]
    assert [s.kind for s in senders] == ["twilio", "sendgrid", "smtp", "webhook"]
    assert [s.name for s in senders] == [r.name for r in receivers]
    with pytest.raises(TypeError):
        build_sender("not a receiver", UI)  # type: ignore[arg-type]


# --- Twilio ------------------------------------------------------------------------------------
@pytest.mark.unit
def test_twilio_texts_every_number_with_basic_auth(twilio: FakeTwilio) -> None:
    sender = build_sender(twilio_receiver(twilio, "+15550000001", "+15550000002"), UI)
    sender.send(NOTE)
    texts = twilio.wait_for(2)
    assert [t["To"] for t in texts] == ["+15550000001", "+15550000002"]
    assert all(t["From"] == "+15550000000" for t in texts)
    for essential in ESSENTIALS:
        assert essential in texts[0]["Body"]
    basic = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert all(r.headers["authorization"] == f"Basic {basic}" for r in twilio.requests)
    assert twilio.requests[0].path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"


@pytest.mark.unit
def test_twilio_resolved_says_resolved(twilio: FakeTwilio) -> None:
    build_sender(twilio_receiver(twilio), None).send(replace(NOTE, alerts=(RESOLVED,)))
    assert twilio.wait_for(1)[0]["Body"].startswith("ClimateWatch: RESOLVED heat (warning)")


@pytest.mark.unit
def test_twilio_wrong_token_is_permanent_and_never_shown(
    twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-" + "w" * 20
    error = failure(build_sender(twilio_receiver(twilio, token=wrong), UI))
    assert isinstance(error, PermanentDeliveryError)
    assert error.status == 401
    assert str(error).startswith("twilio receiver 'sms-on-call': ")
    assert "HTTP 401" in str(error) and "20003" in str(error)
    assert_no_secret(error, wrong, twilio.auth_token)
    assert wrong not in caplog.text and twilio.messages == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentDeliveryError),
        (404, PermanentDeliveryError),
        (408, TransientDeliveryError),
        (429, TransientDeliveryError),
        (500, TransientDeliveryError),
        (503, TransientDeliveryError),
    ],
)
def test_twilio_errors_by_status(twilio: FakeTwilio, status: int, kind: type) -> None:
    twilio.respond_with(status)
    error = failure(build_sender(twilio_receiver(twilio), UI))
    assert type(error) is kind and error.status == status
    assert f"HTTP {status}" in str(error)
    assert_no_secret(error, twilio.auth_token)


@pytest.mark.unit
def test_twilio_invalid_number_names_twilio_code(twilio: FakeTwilio) -> None:
    twilio.respond_with(lambda request: twilio.twilio_error(400, 21211, "bad 'To' number"))
    error = failure(build_sender(twilio_receiver(twilio), UI))
    assert isinstance(error, PermanentDeliveryError)
    assert "Twilio code 21211" in str(error) and "bad 'To' number" in str(error)


@pytest.mark.unit
def test_twilio_garbage_answer_is_transient(twilio: FakeTwilio) -> None:
    twilio.respond_with(lambda request: Reply(201, b"<html>not json</html>"))
    assert isinstance(failure(build_sender(twilio_receiver(twilio), UI)), TransientDeliveryError)


@pytest.mark.unit
def test_twilio_down_is_transient_and_back_up_delivers(twilio: FakeTwilio) -> None:
    sender = build_sender(twilio_receiver(twilio), UI)
    twilio.stop()
    error = failure(sender)
    assert isinstance(error, TransientDeliveryError) and "cannot connect" in str(error)
    twilio.start()  # the same port
    sender.send(NOTE)
    assert len(twilio.wait_for(1)) == 1


@pytest.mark.unit
def test_twilio_retry_does_not_text_a_number_twice(twilio: FakeTwilio) -> None:
    first, second, third = "+15550000001", "+15550000002", "+15550000003"
    failed: list[str] = []

    def second_fails_once(request: HttpRequest) -> int | None:
        if request.form["To"] == second and not failed:
            failed.append(second)
            return 503
        return None

    twilio.respond_with(second_fails_once)
    sender = build_sender(twilio_receiver(twilio, first, second, third), UI)
    error = failure(sender)
    assert isinstance(error, TransientDeliveryError) and "1 of 3 number(s)" in str(error)
    assert [t["To"] for t in twilio.messages] == [first, third]  # the others still got it

    sender.send(NOTE)  # the retry
    assert [t["To"] for t in twilio.wait_for(3)] == [first, third, second]
    sender.send(NOTE)  # and once more: nothing left to text
    assert len(twilio.requests) == 4
    # a reminder is a new notification: everyone again
    sender.send(replace(NOTE, sequence=1))
    assert len(twilio.wait_for(6)) == 6


# --- SendGrid ----------------------------------------------------------------------------------
@pytest.mark.unit
def test_sendgrid_one_call_for_all_recipients_with_bearer(sendgrid: FakeSendGrid) -> None:
    build_sender(sendgrid_receiver(sendgrid), UI).send(NOTE)
    [mail] = sendgrid.wait_for(1)
    assert mail["from"] == {"email": "climatewatch@example.org"}
    assert mail["personalizations"] == [
        {"to": [{"email": "ops@example.org"}, {"email": "lead@example.org"}]}
    ]
    assert mail["subject"] == "[ClimateWatch] FIRING heat (warning) in north"
    [content] = mail["content"]
    assert content["type"] == "text/plain"
    for essential in ESSENTIALS:
        assert essential in content["value"]
    assert mail["custom_args"] == {"delivery_id": NOTE.delivery_id}
    [request] = sendgrid.requests
    assert request.headers["authorization"] == f"Bearer {sendgrid.api_key}"


@pytest.mark.unit
def test_sendgrid_wrong_key_is_permanent_and_never_shown_even_in_debug_logs(
    sendgrid: FakeSendGrid, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "SG.wrong-key." + "x" * 20
    error = failure(build_sender(sendgrid_receiver(sendgrid, key=wrong), UI))
    assert isinstance(error, PermanentDeliveryError) and error.status == 401
    assert "HTTP 401" in str(error) and "authorization grant is invalid" in str(error)
    assert_no_secret(error, wrong)
    # python_http_client logs its request headers at DEBUG: the sender masks the key there
    assert "Bearer ***" in caplog.text
    assert wrong not in caplog.text


@pytest.mark.unit
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentDeliveryError),
        (413, PermanentDeliveryError),
        (429, TransientDeliveryError),
        (500, TransientDeliveryError),
        (502, TransientDeliveryError),
    ],
)
def test_sendgrid_errors_by_status(sendgrid: FakeSendGrid, status: int, kind: type) -> None:
    sendgrid.respond_with(status)
    error = failure(build_sender(sendgrid_receiver(sendgrid), UI))
    assert type(error) is kind and error.status == status
    assert f"HTTP {status}: simulated error {status}" in str(error)
    assert_no_secret(error, sendgrid.api_key)


@pytest.mark.unit
def test_sendgrid_down_or_slow_is_transient(sendgrid: FakeSendGrid) -> None:
    sender = build_sender(sendgrid_receiver(sendgrid, timeout_s=0.3), UI)
    release = threading.Event()
    sendgrid.respond_with(answer_when(release))
    started = time.monotonic()
    assert isinstance(failure(sender), TransientDeliveryError)
    assert time.monotonic() - started < 1.5  # the receiver's timeout, not the server's pace
    release.set()
    sendgrid.respond_with(None)
    sendgrid.stop()
    error = failure(sender)
    assert isinstance(error, TransientDeliveryError) and "Connection refused" in str(error)
    sendgrid.start()
    sender.send(NOTE)


# --- SMTP --------------------------------------------------------------------------------------
@pytest.mark.unit
def test_smtp_delivers_over_starttls_after_auth(smtp: SmtpServer) -> None:
    build_sender(smtp_receiver(smtp), UI).send(NOTE)
    [mail] = smtp.wait_for(1)
    assert mail.tls and mail.login == smtp.username
    assert mail.mail_from == "climatewatch@example.org"
    assert mail.rcpt_tos == ("ops@example.org", "lead@example.org")
    message = mail.message
    assert message["Subject"] == "[ClimateWatch] FIRING heat (warning) in north"
    assert message["To"] == "ops@example.org, lead@example.org"
    assert message["Message-ID"] == f"<{NOTE.delivery_id}@climatewatch>"
    body = message.get_content()
    for essential in ESSENTIALS:
        assert essential in body
    assert [(a.tls, a.login, a.ok) for a in smtp.auth_attempts] == [(True, smtp.username, True)]


@pytest.mark.unit
def test_smtp_resolved_says_resolved(smtp: SmtpServer) -> None:
    build_sender(smtp_receiver(smtp), UI).send(replace(NOTE, alerts=(RESOLVED,)))
    message = smtp.wait_for(1)[0].message
    assert message["Subject"] == "[ClimateWatch] RESOLVED heat (warning) in north"
    assert message.get_content().startswith("RESOLVED: heat (warning) in north")


@pytest.mark.unit
def test_smtp_the_same_notification_has_the_same_message_id(smtp: SmtpServer) -> None:
    sender = build_sender(smtp_receiver(smtp), UI)
    sender.send(NOTE)
    sender.send(NOTE)
    sender.send(replace(NOTE, sequence=1))
    ids = [m.message["Message-ID"] for m in smtp.wait_for(3)]
    assert ids[0] == ids[1] != ids[2]


@pytest.mark.unit
def test_smtp_implicit_tls() -> None:
    with SmtpServer(tls="implicit") as server:
        build_sender(smtp_receiver(server, security="tls"), UI).send(NOTE)
        [mail] = server.wait_for(1)
        assert mail.tls and mail.login == server.username


@pytest.mark.unit
def test_smtp_in_clear_is_refused_by_the_server(smtp: SmtpServer) -> None:
    """security="none" without credentials: the server wants STARTTLS first (530)."""
    receiver = smtp_receiver(smtp, security="none", username=None, password=None)
    error = failure(build_sender(receiver, UI))
    assert isinstance(error, PermanentDeliveryError) and error.status == 530
    assert "STARTTLS" in str(error)
    assert smtp.messages == []


@pytest.mark.unit
def test_smtp_never_sends_credentials_in_clear(smtp: SmtpServer) -> None:
    error = failure(build_sender(smtp_receiver(smtp, security="none"), UI))
    assert isinstance(error, PermanentDeliveryError) and "without TLS" in str(error)
    assert smtp.auth_attempts == [] and smtp.messages == []
    assert_no_secret(error, smtp.password)


@pytest.mark.unit
def test_smtp_starttls_asked_but_not_offered_is_permanent() -> None:
    with SmtpServer(tls="none") as server:
        error = failure(build_sender(smtp_receiver(server), UI))
        assert isinstance(error, PermanentDeliveryError) and "STARTTLS" in str(error)
        assert server.auth_attempts == [] and server.messages == []


@pytest.mark.unit
def test_smtp_untrusted_certificate_is_permanent(smtp: SmtpServer) -> None:
    error = failure(build_sender(smtp_receiver(smtp, ca_file=None), UI))
    assert isinstance(error, PermanentDeliveryError) and "certificate" in str(error)
    assert smtp.auth_attempts == []


@pytest.mark.unit
def test_smtp_wrong_password_is_permanent_and_never_shown(
    smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-password-" + "p" * 12
    error = failure(build_sender(smtp_receiver(smtp, password=SecretStr(wrong)), UI))
    assert isinstance(error, PermanentDeliveryError) and error.status == 535
    assert "authentication refused: 535" in str(error)
    assert_no_secret(error, wrong, smtp.password)
    assert wrong not in caplog.text and smtp.password not in caplog.text
    attempts = smtp.auth_attempts  # smtplib tries each mechanism offered (PLAIN, LOGIN)
    assert attempts and all(a.tls and a.ok is False for a in attempts)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("stage", "reply", "kind"),
    [
        ("MAIL", "451 4.3.0 Mail server temporarily rejected message", TransientDeliveryError),
        ("RCPT", "550 5.1.1 Mailbox does not exist", PermanentDeliveryError),
        ("RCPT", "452 4.2.2 Mailbox full", TransientDeliveryError),
        ("DATA", "421 4.7.0 Try again later", TransientDeliveryError),
        ("DATA", "554 5.7.1 Message rejected", PermanentDeliveryError),
    ],
)
def test_smtp_replies_by_code(smtp: SmtpServer, stage: str, reply: str, kind: type) -> None:
    smtp.respond_with(reply, at=stage)  # type: ignore[arg-type]
    error = failure(build_sender(smtp_receiver(smtp), UI))
    assert type(error) is kind and error.status == int(reply[:3])
    assert reply[4:] in str(error)
    assert_no_secret(error, smtp.password)


@pytest.mark.unit
def test_smtp_down_is_transient_and_back_up_delivers(smtp: SmtpServer) -> None:
    sender = build_sender(smtp_receiver(smtp), UI)
    smtp.stop()
    assert isinstance(failure(sender), TransientDeliveryError)
    smtp.start()  # the same port, the same certificate
    sender.send(NOTE)
    assert len(smtp.wait_for(1)) == 1


# --- webhook -----------------------------------------------------------------------------------
@pytest.mark.unit
def test_webhook_json_signed_with_idempotency_key(webhook: WebhookServer) -> None:
    notification = Notification("on-call", (HEAT, RESOLVED), "rule=heat")
    build_sender(webhook_receiver(webhook), UI).send(notification)
    [request] = webhook.wait_for(1)
    assert request.method == "POST" and request.path == "/hooks/climatewatch"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == notification.delivery_id
    assert request.headers["x-climatewatch-delivery"] == notification.delivery_id
    assert verify_signature(request, HMAC_SECRET)
    assert not verify_signature(request, "another-secret")
    body = request.json()
    assert body["delivery_id"] == notification.delivery_id
    assert body["status"] == "firing" and body["link"] == LINK
    assert body["alerts"] == [orjson.loads(HEAT.to_json()), orjson.loads(RESOLVED.to_json())]


@pytest.mark.unit
def test_webhook_slack_format_without_secret_is_unsigned(webhook: WebhookServer) -> None:
    receiver = webhook_receiver(webhook, format="slack", hmac_secret=None)
    build_sender(receiver, UI).send(NOTE)
    [request] = webhook.wait_for(1)
    assert "x-climatewatch-signature" not in request.headers
    text = request.json()["text"]
    for essential in ESSENTIALS:
        assert essential in text
    build_sender(receiver, UI).send(replace(NOTE, alerts=(RESOLVED,)))
    assert "*RESOLVED*" in webhook.wait_for(2)[1].json()["text"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (301, PermanentDeliveryError),  # urllib would have re-sent it as a GET
        (400, PermanentDeliveryError),
        (401, PermanentDeliveryError),
        (404, PermanentDeliveryError),
        (408, TransientDeliveryError),
        (429, TransientDeliveryError),
        (500, TransientDeliveryError),
        (503, TransientDeliveryError),
    ],
)
def test_webhook_errors_by_status(webhook: WebhookServer, status: int, kind: type) -> None:
    webhook.respond_with(
        lambda request: Reply(status, b"nope", {"Location": f"{webhook.url}/elsewhere"})
    )
    error = failure(build_sender(webhook_receiver(webhook), UI))
    assert type(error) is kind and error.status == status
    assert f"answered HTTP {status}: nope" in str(error)
    assert_no_secret(error, HMAC_SECRET)
    assert all(r.method == "POST" for r in webhook.requests)


@pytest.mark.unit
def test_webhook_errors_name_the_origin_never_the_path(webhook: WebhookServer) -> None:
    """A Slack webhook URL's path is its credential."""
    path_secret = "T0000/B0000/" + "s" * 24
    receiver = webhook_receiver(webhook, url=f"{webhook.url}/services/{path_secret}")
    webhook.respond_with(404)
    error = failure(build_sender(receiver, UI))
    assert webhook.url in str(error)
    assert_no_secret(error, path_secret)


@pytest.mark.unit
def test_webhook_down_or_slow_is_transient(webhook: WebhookServer) -> None:
    sender = build_sender(webhook_receiver(webhook, timeout_s=0.3), UI)
    release = threading.Event()
    webhook.respond_with(answer_when(release))
    started = time.monotonic()
    error = failure(sender)
    assert isinstance(error, TransientDeliveryError) and "timed out" in str(error)
    assert time.monotonic() - started < 1.5
    release.set()
    webhook.respond_with(None)
    webhook.stop()
    error = failure(sender)
    assert isinstance(error, TransientDeliveryError) and "Connection refused" in str(error)
    webhook.start()
    sender.send(NOTE)
    assert len(webhook.wait_for(1)) == 1


# --- TLS -----------------------------------------------------------------------------------------
@pytest.mark.unit
def test_an_untrusted_https_certificate_is_permanent_for_every_http_kind() -> None:
    """A self-signed endpoint (the implicit-TLS SMTP server: the handshake fails before
    any HTTP is spoken) is a configuration problem, reported at once, not retried."""
    with SmtpServer(tls="implicit") as endpoint:
        https = f"https://127.0.0.1:{endpoint.port}"
        receivers = [
            TwilioReceiver("sms", "AC" + "0" * 32, SecretStr("t" * 32), "+1555", ("+1556",), https),
            SendGridReceiver("mail", SecretStr("SG.k"), "a@example.org", ("b@example.org",), https),
            WebhookReceiver("hook", f"{https}/hook"),
        ]
        for receiver in receivers:
            error = failure(build_sender(receiver, UI))
            assert isinstance(error, PermanentDeliveryError), error
            assert "certificate not trusted" in str(error)
