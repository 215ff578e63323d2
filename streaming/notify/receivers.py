"""Senders: a :class:`~streaming.notify.messages.Notification` to SMS, e-mail or a webhook.

Each sender hands one notification to its receiver through the official client (Twilio's
``twilio``, SendGrid's ``sendgrid``, the standard library's ``smtplib`` and ``urllib``)
and returns only when the receiver accepted it. Anything else is a
:class:`DeliveryError`: :class:`TransientDeliveryError` when trying again later may work
(the network, timeouts, 5xx, 408, 429, SMTP 4xx), :class:`PermanentDeliveryError` when
it will not (a refused request, a bad recipient, refused credentials, a server
certificate that is not trusted, an SMTP server without the TLS asked for). The caller owns
retries; a sender never retries by itself, and a retry of the same notification carries
the same ``delivery_id`` (the webhook's ``Idempotency-Key``, the e-mail's ``Message-ID``,
SendGrid's ``custom_args``) so the other side can deduplicate.

Error messages are one line, name the receiver and its kind, carry the status code or
the server's reply, and never a secret: every secret a sender holds is masked in them,
and in the SendGrid client's debug log, which otherwise prints the API key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import requests
import sendgrid
from python_http_client.exceptions import HTTPError
from sendgrid.helpers.mail import CustomArg, Mail
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioClient

from streaming.notify.config import (
    Receiver,
    SendGridReceiver,
    SmtpReceiver,
    TwilioReceiver,
    WebhookReceiver,
)
from streaming.notify.messages import (
    Notification,
    json_payload,
    slack_payload,
    sms_text,
    subject,
    text_body,
)

Kind = Literal["twilio", "sendgrid", "smtp", "webhook"]
_DETAIL_LIMIT = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ACCEPTED_MEMORY = 10_000  # (delivery_id, number) pairs a Twilio sender remembers


# --- errors ------------------------------------------------------------------------------------
class DeliveryError(Exception):
    """A receiver did not accept a notification. ``status``: the HTTP status or SMTP
    reply code when there was one; ``detail``: the message without the receiver's name."""

    def __init__(self, receiver: str, kind: str, detail: str, status: int | None = None) -> None:
        self.receiver = receiver
        self.kind = kind
        self.status = status
        self.detail = _one_line(detail)
        super().__init__(f"{kind} receiver {receiver!r}: {self.detail}")


class TransientDeliveryError(DeliveryError):
    """Trying the same notification again later may succeed."""


class PermanentDeliveryError(DeliveryError):
    """Trying again will not help: the request, the recipient or the credentials are wrong."""


def _one_line(text: str) -> str:
    line = " ".join(_ANSI.sub("", text).split())
    return line if len(line) <= _DETAIL_LIMIT else line[: _DETAIL_LIMIT - 1] + "…"


def _is_transient_http(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class _Masker:
    """Replaces each of a sender's secrets in a text (error details, server replies)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class _BearerRedactor(logging.Filter):
    """python_http_client logs the request headers at DEBUG, the API key with them."""

    _BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Bearer" in message:
            record.msg, record.args = self._BEARER.sub(r"\1***", message), None
        return True


def _install_bearer_redactor() -> None:
    client_log = logging.getLogger("python_http_client.client")
    if not any(isinstance(f, _BearerRedactor) for f in client_log.filters):
        client_log.addFilter(_BearerRedactor())


# --- the protocol ------------------------------------------------------------------------------
class Sender(Protocol):
    """Delivers a notification to one receiver; raises only :class:`DeliveryError`."""

    name: str
    kind: str  # "twilio", "sendgrid", "smtp" or "webhook" (see Kind)

    def send(self, notification: Notification) -> None: ...


def build_sender(receiver: Receiver, ui_base_url: str | None) -> Sender:
    """The sender for one configured receiver; its clients are built once, here."""
    if isinstance(receiver, TwilioReceiver):
        return TwilioSender(receiver, ui_base_url)
    if isinstance(receiver, SendGridReceiver):
        return SendGridSender(receiver, ui_base_url)
    if isinstance(receiver, SmtpReceiver):
        return SmtpSender(receiver, ui_base_url)
    if isinstance(receiver, WebhookReceiver):
        return WebhookSender(receiver, ui_base_url)
    raise TypeError(f"not a receiver configuration: {type(receiver).__name__}")


class _SenderBase:
    kind: Kind

    def __init__(self, name: str, ui_base_url: str | None, secrets: Iterable[str | None]) -> None:
        self.name = name
        self.ui_base_url = ui_base_url
        self._mask = _Masker(secrets)

    def _transient(self, detail: str, status: int | None = None) -> TransientDeliveryError:
        return TransientDeliveryError(self.name, self.kind, self._mask(detail), status)

    def _permanent(self, detail: str, status: int | None = None) -> PermanentDeliveryError:
        return PermanentDeliveryError(self.name, self.kind, self._mask(detail), status)

    def _by_status(self, status: int, detail: str) -> DeliveryError:
        if _is_transient_http(status):
            return self._transient(detail, status)
        return self._permanent(detail, status)

    def _unexpected(self, exc: BaseException) -> TransientDeliveryError:
        return self._transient(f"unexpected {type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --- Twilio ------------------------------------------------------------------------------------
class BaseUrlHttpClient(TwilioHttpClient):
    """Twilio's documented custom HTTP client option (``Client(http_client=...)``): the
    stock ``TwilioHttpClient`` with our timeout that, when ``base_url`` is set, sends each
    request there instead of to ``https://api.twilio.com`` (or a regional Twilio host
    that ``TWILIO_REGION``/``TWILIO_EDGE`` selects): the path and query are kept."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/") if base_url else None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        if self.base_url:
            parts = urlsplit(url)
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, url, *args, **kwargs)


class TwilioSender(_SenderBase):
    """One SMS per number through Twilio's Messages API. A number that accepted a
    delivery is not texted again when the same notification is retried (remembered in
    memory, per sender: a restart forgets)."""

    kind: Kind = "twilio"

    def __init__(self, receiver: TwilioReceiver, ui_base_url: str | None) -> None:
        token = receiver.auth_token.get_secret_value()
        super().__init__(receiver.name, ui_base_url, [token])
        self.receiver = receiver
        self._client = TwilioClient(
            receiver.account_sid,
            token,
            http_client=BaseUrlHttpClient(receiver.api_base_url, receiver.timeout_s),
        )
        self._accepted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def _already_accepted(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._accepted

    def _remember(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._accepted[key] = None
            while len(self._accepted) > _ACCEPTED_MEMORY:
                self._accepted.popitem(last=False)

    def send(self, notification: Notification) -> None:
        body = sms_text(notification, self.ui_base_url)
        delivery = notification.delivery_id
        failures: list[DeliveryError] = []
        numbers = self.receiver.to_numbers
        for number in numbers:
            if self._already_accepted((delivery, number)):
                continue
            try:
                self._send_one(number, body)
            except DeliveryError as exc:
                failures.append(exc)
            else:
                self._remember((delivery, number))
        if not failures:
            return
        details = "; ".join(f.detail for f in failures)
        detail = f"{len(failures)} of {len(numbers)} number(s) failed: {details}"
        transient = [f for f in failures if isinstance(f, TransientDeliveryError)]
        if transient:  # a retry texts only the numbers that have not accepted it yet
            raise self._transient(detail, transient[0].status)
        raise self._permanent(detail, failures[0].status)

    def _send_one(self, number: str, body: str) -> None:
        try:
            self._client.messages.create(to=number, from_=self.receiver.from_number, body=body)
        except (TwilioRestException, TwilioServiceException) as exc:
            status = int(exc.status)
            reason = exc.msg if isinstance(exc, TwilioRestException) else exc.title
            detail = f"to {number}: HTTP {status} (Twilio code {exc.code}): {reason}"
            raise self._by_status(status, detail) from None
        except requests.exceptions.Timeout:
            raise self._transient(f"to {number}: timed out") from None
        except requests.exceptions.SSLError as exc:
            if (untrusted := _untrusted(exc)) is not None:
                detail = f"to {number}: server certificate not trusted: {untrusted.verify_message}"
                raise self._permanent(detail) from None
            raise self._transient(f"to {number}: TLS error: {_cause(exc)}") from None
        except requests.exceptions.ConnectionError as exc:
            raise self._transient(f"to {number}: cannot connect: {_cause(exc)}") from None
        except (requests.exceptions.RequestException, TwilioException, ValueError) as exc:
            raise self._transient(f"to {number}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise self._unexpected(exc) from None


def _untrusted(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure somewhere inside ``exc`` (requests and urllib wrap it in
    their own errors): a configuration problem, not a hiccup a retry would get past."""
    seen: list[BaseException] = [exc]
    for inner in seen:
        if isinstance(inner, ssl.SSLCertVerificationError):
            return inner
        nested = [inner.__cause__, inner.__context__, getattr(inner, "reason", None), *inner.args]
        seen += [n for n in nested if isinstance(n, BaseException) and n not in seen][:5]
        if len(seen) > 20:
            break
    return None


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error (``Connection refused``), without
    urllib3's pool description around it."""
    inner: BaseException = exc
    for _ in range(10):
        nested = inner.__cause__ or inner.__context__
        if nested is None:
            break
        inner = nested
    text = str(inner)
    match = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return match.group(0) if match else type(inner).__name__


# --- SendGrid ----------------------------------------------------------------------------------
class SendGridSender(_SenderBase):
    """One Mail Send call for all recipients; ``custom_args.delivery_id`` for tracing
    (SendGrid has no idempotency key: a retry after a lost answer may send twice)."""

    kind: Kind = "sendgrid"

    def __init__(self, receiver: SendGridReceiver, ui_base_url: str | None) -> None:
        key = receiver.api_key.get_secret_value()
        super().__init__(receiver.name, ui_base_url, [key])
        self.receiver = receiver
        _install_bearer_redactor()
        self._client = sendgrid.SendGridAPIClient(
            api_key=key, host=(receiver.api_host or "https://api.sendgrid.com").rstrip("/")
        )
        # python_http_client.Client(timeout=...) is what urlopen gets; the per-path clients
        # it builds for /v3/mail/send copy it from here.
        self._client.client.timeout = receiver.timeout_s

    def _mail(self, notification: Notification) -> Mail:
        mail = Mail(
            from_email=self.receiver.from_email,
            to_emails=list(self.receiver.to_emails),
            subject=subject(notification),
            plain_text_content=text_body(notification, self.ui_base_url),
        )
        mail.custom_arg = CustomArg("delivery_id", notification.delivery_id)
        return mail

    def send(self, notification: Notification) -> None:
        try:
            mail = self._mail(notification)
            response = self._client.send(mail)
        except HTTPError as exc:
            status = int(exc.status_code)
            raise self._by_status(status, f"HTTP {status}: {_sendgrid_reason(exc)}") from None
        except urllib.error.URLError as exc:  # connection refused, DNS, TLS
            if (untrusted := _untrusted(exc)) is not None:
                detail = f"server certificate not trusted: {untrusted.verify_message}"
                raise self._permanent(detail) from None
            raise self._transient(f"cannot connect: {exc.reason}") from None
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError) as exc:
            raise self._transient(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise self._unexpected(exc) from None
        if not 200 <= response.status_code < 300:
            raise self._by_status(response.status_code, f"HTTP {response.status_code}")


def _sendgrid_reason(exc: Any) -> str:
    """SendGrid's ``{"errors": [{"message": ..., "field": ...}]}``, else the raw reply."""
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body)
    try:
        errors = exc.to_dict.get("errors") or []
        messages = [
            str(e.get("message", "")) + (f" ({e['field']})" if e.get("field") else "")
            for e in errors
            if isinstance(e, dict)
        ]
    except Exception:
        messages = []
    return "; ".join(m for m in messages if m) or body[:200] or str(exc.reason)


# --- SMTP --------------------------------------------------------------------------------------
class SmtpSender(_SenderBase):
    """One message to all recipients through an SMTP relay, over TLS unless
    ``security="none"``; credentials only ever travel over TLS."""

    kind: Kind = "smtp"

    def __init__(self, receiver: SmtpReceiver, ui_base_url: str | None) -> None:
        password = receiver.password.get_secret_value() if receiver.password else None
        super().__init__(receiver.name, ui_base_url, [password])
        self.receiver = receiver
        self._password = password

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.receiver.ca_file)

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail; its Message-ID is the delivery id, so a repeat is recognisable."""
        message = EmailMessage()
        message["Subject"] = subject(notification)
        message["From"] = self.receiver.from_email
        message["To"] = ", ".join(self.receiver.to_emails)
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<{notification.delivery_id}@climatewatch>"
        message["X-ClimateWatch-Delivery"] = notification.delivery_id
        message.set_content(text_body(notification, self.ui_base_url))
        return message

    def send(self, notification: Notification) -> None:
        receiver = self.receiver
        if receiver.username and receiver.security == "none":
            raise self._permanent(
                "refusing to send credentials without TLS (security='none' with a username)"
            )
        try:
            message = self.message(notification)
            self._deliver(message)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            detail = f"authentication refused: {exc.smtp_code} {_reply(exc.smtp_error)}"
            if 400 <= exc.smtp_code < 500:  # 454: temporary authentication failure
                raise self._transient(detail, exc.smtp_code) from None
            raise self._permanent(detail, exc.smtp_code) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "all recipients refused: " + ", ".join(
                f"{rcpt} ({code} {_reply(reply)})" for rcpt, (code, reply) in exc.recipients.items()
            )
            if all(code >= 500 for code in codes):
                raise self._permanent(detail, max(codes)) from None
            raise self._transient(detail, min(codes)) from None
        except smtplib.SMTPResponseException as exc:
            detail = f"server replied {exc.smtp_code} {_reply(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise self._permanent(detail, exc.smtp_code) from None
            raise self._transient(detail, exc.smtp_code) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._permanent(f"server does not support it: {exc}") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise self._transient(f"server disconnected: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise self._permanent(f"server certificate not trusted: {exc.verify_message}") from None
        except (ssl.SSLError, TimeoutError, OSError, smtplib.SMTPException) as exc:
            raise self._transient(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise self._unexpected(exc) from None

    def _deliver(self, message: EmailMessage) -> None:
        receiver = self.receiver
        smtp: smtplib.SMTP
        if receiver.security == "tls":
            smtp = smtplib.SMTP_SSL(
                receiver.host,
                receiver.port,
                timeout=receiver.timeout_s,
                context=self._tls_context(),
            )
        else:
            smtp = smtplib.SMTP(receiver.host, receiver.port, timeout=receiver.timeout_s)
        with smtp:
            smtp.ehlo()
            if receiver.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise self._permanent("server does not offer STARTTLS; not sending in clear")
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if receiver.username:
                smtp.login(receiver.username, self._password or "")
            refused = smtp.send_message(
                message, from_addr=receiver.from_email, to_addrs=list(receiver.to_emails)
            )
        if refused:  # some accepted it: a retry would send them a second copy
            raise self._permanent(
                "recipients refused: "
                + ", ".join(
                    f"{rcpt} ({code} {_reply(reply)})" for rcpt, (code, reply) in refused.items()
                )
            )


def _reply(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


# --- webhook -----------------------------------------------------------------------------------
class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not an acceptance: urllib would turn the POST into a GET
    and report the GET's 200 as if the webhook had taken the alert."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def signature(secret: str, body: bytes) -> str:
    """The ``X-ClimateWatch-Signature`` value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender(_SenderBase):
    """A JSON POST (Slack's ``text`` or ClimateWatch's body), signed when a secret is set;
    any 2xx is acceptance. The URL is named by its origin only in errors: a Slack
    webhook's path is its secret."""

    kind: Kind = "webhook"

    def __init__(self, receiver: WebhookReceiver, ui_base_url: str | None) -> None:
        secret = receiver.hmac_secret.get_secret_value() if receiver.hmac_secret else None
        parts = urlsplit(receiver.url)
        super().__init__(receiver.name, ui_base_url, [secret])
        self.receiver = receiver
        self._secret = secret
        self._origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self._opener = urllib.request.build_opener(_NoRedirects())

    def request(self, notification: Notification) -> urllib.request.Request:
        """The exact request a send makes (body, headers), for tests and dry runs."""
        payload = slack_payload if self.receiver.format == "slack" else json_payload
        body = payload(notification, self.ui_base_url)
        delivery = notification.delivery_id
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ClimateWatch-notify",
            "Idempotency-Key": delivery,
            "X-ClimateWatch-Delivery": delivery,
        }
        if self._secret:
            headers["X-ClimateWatch-Signature"] = signature(self._secret, body)
        return urllib.request.Request(self.receiver.url, data=body, headers=headers, method="POST")

    def send(self, notification: Notification) -> None:
        try:
            request = self.request(notification)
            with self._opener.open(request, timeout=self.receiver.timeout_s) as response:
                status = response.status
                reply = response.read(200)
        except urllib.error.HTTPError as exc:
            with exc:
                reply = exc.read(200)
            raise self._by_status(
                exc.code, f"{self._origin} answered HTTP {exc.code}{_body(reply)}"
            ) from None
        except urllib.error.URLError as exc:
            if (untrusted := _untrusted(exc)) is not None:
                detail = f"{self._origin}: certificate not trusted: {untrusted.verify_message}"
                raise self._permanent(detail) from None
            raise self._transient(f"cannot reach {self._origin}: {exc.reason}") from None
        except TimeoutError:
            raise self._transient(f"{self._origin} timed out") from None
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            raise self._transient(f"{self._origin}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:
            raise self._unexpected(exc) from None
        if not 200 <= status < 300:
            raise self._by_status(status, f"{self._origin} answered HTTP {status}{_body(reply)}")


def _body(reply: bytes) -> str:
    text = reply.decode("utf-8", "replace").strip()
    return f": {text}" if text else ""


__all__ = [
    "BaseUrlHttpClient",
    "DeliveryError",
    "PermanentDeliveryError",
    "SendGridSender",
    "Sender",
    "SmtpSender",
    "TransientDeliveryError",
    "TwilioSender",
    "WebhookSender",
    "build_sender",
    "signature",
]
