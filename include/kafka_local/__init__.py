"""A real Apache Kafka cluster on this machine, without Docker.

The broker jars come from Maven Central once (``jars``); each node runs in KRaft mode as
broker and controller on 127.0.0.1 (``broker``), alone or in a quorum of up to nine
(``cluster``), optionally with SASL/SCRAM, TLS and per-role ACLs (``security``). State,
configuration, pid files and logs live under ``DATA_DIR/kafka``. The CLI (``climatewatch
kafka start|stop|status``), ``make demo`` and the test suite use it. Import from the
defining modules; the names below are re-exported for older imports.
"""

from include.kafka_local.broker import BrokerStatus, LocalBroker
from include.kafka_local.cluster import LocalCluster
from include.kafka_local.jars import fetch_jars, jars_dir
from include.kafka_local.security import CLIENT_ROLES, SaslConfig, TlsConfig, client_acls
from include.processes import free_port

__all__ = [
    "CLIENT_ROLES",
    "BrokerStatus",
    "LocalBroker",
    "LocalCluster",
    "SaslConfig",
    "TlsConfig",
    "client_acls",
    "fetch_jars",
    "free_port",
    "jars_dir",
]
