"""Security of the local cluster: SASL/SCRAM users, TLS certificates and client ACLs.

A secured local cluster (``climatewatch kafka start --sasl [--tls]``) authenticates every
client role (``CLIENT_ROLES``) with its own SCRAM password, optionally over TLS with a
certificate from a throw-away local CA, and grants each role only what its component
does (``role_grants``, ``client_acls``). The broker module turns these into ``server.properties``; the CLI hands
the client side to the processes.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.settings import Settings

if TYPE_CHECKING:
    from datetime import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

log = logging.getLogger(__name__)

CLIENT_ROLES = ("stream", "archiver", "simulator", "quality", "notifier")
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SaslConfig:
    """SCRAM-SHA-512 users of a secured local cluster; ``admin`` is the brokers' own super user.

    Clients authenticate with SCRAM on the broker listener; the nodes talk to their
    controllers with SASL/PLAIN as admin (KRaft controllers cannot use SCRAM, whose
    credentials live in the metadata they serve). Authorization is Kafka's
    StandardAuthorizer: nothing is allowed without an ACL, except to admin.
    """

    passwords: dict[str, str]

    @classmethod
    def generate(cls) -> SaslConfig:
        return cls({name: secrets.token_urlsafe(18) for name in ("admin", *CLIENT_ROLES)})

    @classmethod
    def load(cls, path: Path) -> SaslConfig | None:
        """The saved passwords; a client role added since they were saved gets a new one
        (the cluster creates its SCRAM user when it grants the ACLs)."""
        if not path.exists():
            return None
        passwords = json.loads(path.read_text())
        for role in CLIENT_ROLES:
            passwords.setdefault(role, secrets.token_urlsafe(18))
        return cls(passwords)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(self.passwords, indent=1))

    def client_config(self, user: str, *, tls: TlsConfig | None = None) -> dict[str, str]:
        """kafka-python options of ``user`` (with ``tls``: SASL_SSL, trusting the local CA)."""
        return {
            "security_protocol": security_protocol(self, tls),
            "sasl_mechanism": SCRAM_MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": self.passwords[user],
            **({"ssl_cafile": str(tls.ca_file)} if tls else {}),
        }

    def client_env(
        self, user: str, bootstrap: str, *, tls: TlsConfig | None = None
    ) -> dict[str, str]:
        """The CLIMATEWATCH_* variables a client running as ``user`` needs."""
        return {
            "CLIMATEWATCH_BOOTSTRAP_SERVERS": bootstrap,
            "CLIMATEWATCH_SECURITY_PROTOCOL": security_protocol(self, tls),
            "CLIMATEWATCH_SASL_MECHANISM": SCRAM_MECHANISM,
            "CLIMATEWATCH_SASL_USERNAME": user,
            "CLIMATEWATCH_SASL_PASSWORD": self.passwords[user],
            **({"CLIMATEWATCH_SSL_CAFILE": str(tls.ca_file)} if tls else {}),
        }

    def broker_properties(self) -> dict[str, str]:
        admin = self.passwords["admin"]
        scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain_login = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return {
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            "listener.name.broker.scram-sha-512.sasl.jaas.config": (
                f'{scram_login} required username="admin" password="{admin}";'
            ),
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": (
                f'{plain_login} required username="admin" password="{admin}" user_admin="{admin}";'
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """SCRAM credentials written into the metadata when the storage is formatted."""
        return [
            argument
            for user, password in self.passwords.items()
            for argument in ("--add-scram", f"{SCRAM_MECHANISM}=[name={user},password={password}]")
        ]


def security_protocol(sasl: SaslConfig | None, tls: TlsConfig | None) -> str:
    """The protocol of the local listeners (TLS is only offered together with SASL)."""
    if sasl is None:
        return "PLAINTEXT"
    return "SASL_SSL" if tls is not None else "SASL_PLAINTEXT"


TLS_VALID_DAYS = 825
TLS_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsConfig:
    """A local certificate authority and one broker certificate, as PEM files in ``directory``.

    ``ensure`` generates them once (EC P-256; the broker certificate names 127.0.0.1 and
    localhost, so every local node can present it). The CA's private key is not kept: it
    signs the broker certificate and is gone, so nothing else can be issued in its name.
    Clients trust ``ca.pem`` (``CLIMATEWATCH_SSL_CAFILE``); the broker key is mode 0600
    and reaches Kafka only through ``server.properties`` (mode 0600), where Kafka treats it
    as a password (``[hidden]`` in its logs).
    """

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        """The broker certificate followed by the CA certificate (the chain it presents)."""
        return self.directory / "broker.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "broker-key.pem"

    def ensure(self) -> bool:
        """Generate the CA and broker certificate unless valid ones exist; True if generated."""
        if self._usable():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        ca_pem, cert_pem, key_pem = _generate_certificates(TLS_HOSTS, TLS_VALID_DAYS)
        for path, data, mode in (
            (self.key_file, key_pem, 0o600),
            (self.cert_file, cert_pem + ca_pem, 0o644),
            (self.ca_file, ca_pem, 0o644),
        ):
            partial = path.with_name(path.name + ".partial")
            partial.unlink(missing_ok=True)
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
            partial.replace(path)
        log.info("local TLS certificates generated in %s", self.directory)
        return True

    def _usable(self) -> bool:
        from datetime import UTC, datetime, timedelta

        from cryptography import x509

        if not all(p.exists() for p in (self.ca_file, self.cert_file, self.key_file)):
            return False
        try:
            cert = x509.load_pem_x509_certificates(self.cert_file.read_bytes())[0]
        except ValueError:
            return False
        return cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=1)

    def broker_properties(self) -> dict[str, str]:
        return {
            "ssl.keystore.type": "PEM",
            # inline PEM: Kafka reads an unencrypted key only this way (a PEM keystore
            # file needs an encrypted key and ssl.key.password)
            "ssl.keystore.certificate.chain": self.cert_file.read_text(),
            "ssl.keystore.key": self.key_file.read_text(),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.client.auth": "none",
        }


def _generate_certificates(hosts: tuple[str, ...], days: int) -> tuple[bytes, bytes, bytes]:
    """(CA certificate, broker certificate, broker key), PEM; the key unencrypted PKCS#8."""
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import serialization

    now = datetime.now(UTC) - timedelta(minutes=5)  # tolerate a little clock skew
    until = now + timedelta(days=days)
    ca_key, ca_cert = _ca_certificate(now, until)
    key, cert = _broker_certificate(hosts, ca_key, ca_cert, now, until)
    return (
        ca_cert.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _ca_certificate(
    now: datetime, until: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh self-signed CA (its key and certificate) that may only sign end certificates."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ClimateWatch local"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"ClimateWatch local CA {uuid.uuid4().hex[:8]}"
            ),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert


def _broker_certificate(
    hosts: tuple[str, ...],
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: datetime,
    until: datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh key and a certificate for ``hosts`` (IP addresses or DNS names) signed by the CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_agreement=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_usage(
    *,
    digital_signature: bool = False,
    key_agreement: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """An X.509 key usage: the named uses allowed, every other one not."""
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Grant:
    """One permission of one role: ``operation`` on the ``kind`` resource ``name``."""

    role: str
    operation: str  # READ, WRITE or DESCRIBE
    kind: str  # topic or group
    name: str


def role_grants(settings: Settings) -> list[Grant]:
    """What each client role may do, from what its component does (and nothing more).

    * ``stream`` (``climatewatch stream``): consumes readings in group ``STREAM_GROUP_ID``
      and its own partials topic in ``STREAM_GROUP_ID-regions``; produces partials, window
      statistics, alerts and the DLQ; reads the tails of window statistics and alerts back
      (assign + seek, no group) to restore the rules' memory at every stage-2 assignment.
    * ``archiver`` (``climatewatch archive run``, the archive DAG, the status page): reads
      readings, alerts and window statistics by assign + seek from the ledger's offsets;
      no consumer group, writes nothing to Kafka.
    * ``simulator`` (``climatewatch simulate`` and ``replay``): produces readings.
    * ``quality`` (the data-quality check's ``publish_alerts``): produces alerts.
    * ``notifier`` (``climatewatch notify``, ``alerts silence``/``ack``): consumes alerts in
      group ``NOTIFY_GROUP_ID``; reads and writes its delivery log and the silences (assign
      + seek, no group); produces undeliverable notifications.

    DESCRIBE (metadata, offsets) is implied by READ and WRITE; it is granted explicitly
    all the same. Idempotent producers need no cluster ACL: WRITE on a topic implies
    IDEMPOTENT_WRITE since Kafka 3.0. Topics are created by ``admin`` only.
    """
    readings, alerts = settings.topic_readings, settings.topic_alerts
    stats, partials = settings.topic_window_stats, settings.topic_window_partials
    ops: dict[str, dict[str, tuple[str, ...]]] = {
        "stream": {
            readings: ("READ", "DESCRIBE"),
            partials: ("READ", "WRITE", "DESCRIBE"),
            stats: ("READ", "WRITE", "DESCRIBE"),
            alerts: ("READ", "WRITE", "DESCRIBE"),
            settings.topic_dlq: ("WRITE", "DESCRIBE"),
        },
        # the archived topics (warehouse.archive.layout.topic_kinds)
        "archiver": {topic: ("READ", "DESCRIBE") for topic in (readings, alerts, stats)},
        "simulator": {readings: ("WRITE", "DESCRIBE")},
        "quality": {alerts: ("WRITE", "DESCRIBE")},
        "notifier": {
            alerts: ("READ", "DESCRIBE"),
            settings.topic_notify_deliveries: ("READ", "WRITE", "DESCRIBE"),
            settings.topic_silences: ("READ", "WRITE", "DESCRIBE"),
            settings.topic_notify_dlq: ("WRITE", "DESCRIBE"),
        },
    }
    grants = [
        Grant(role, operation, "topic", topic)
        for role, topics in ops.items()
        for topic, operations in topics.items()
        for operation in operations
    ]
    grants += [
        Grant("stream", "READ", "group", group)
        for group in (settings.stream_group_id, f"{settings.stream_group_id}-regions")
    ]
    grants.append(Grant("notifier", "READ", "group", settings.notify_group_id))
    return grants


def client_acls(settings: Settings) -> list[Any]:
    """The kafka-python ACLs of :func:`role_grants` (literal resource names, any host)."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    return [
        ACL(
            principal=f"User:{grant.role}",
            host="*",
            operation=ACLOperation[grant.operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType[grant.kind.upper()], grant.name, ACLResourcePatternType.LITERAL
            ),
        )
        for grant in role_grants(settings)
    ]


def stale_client_acls(current: list[Any], wanted: list[Any]) -> list[Any]:
    """The ACLs of client roles in ``current`` that ``wanted`` does not hold: grants of an
    older version, or of topic and group names no longer configured."""
    principals = {f"User:{role}" for role in CLIENT_ROLES}
    keep = set(wanted)
    return [acl for acl in current if acl.principal in principals and acl not in keep]


def missing_scram_users(described: dict[str, Any]) -> list[str]:
    """Client roles without a SCRAM-SHA-512 credential, from
    ``describe_user_scram_credentials``: roles added after the storage was formatted."""
    from kafka.admin import ScramMechanism

    return [
        role
        for role in CLIENT_ROLES
        if not any(
            info["mechanism"] == ScramMechanism.SCRAM_SHA_512
            for info in (described.get(role) or {}).get("credential_infos", [])
        )
    ]
