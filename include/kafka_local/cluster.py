"""Several local KRaft nodes started, stopped and inspected as one cluster.

``LocalCluster`` lays out the nodes' state directories and ports, shares one cluster id
and the SASL/TLS material between them, remembers that layout in ``cluster.json`` (so
``climatewatch kafka stop|status`` need no options) and offers an admin client, the
per-role ACLs and the partition layout of the topics.
"""

from __future__ import annotations

import base64
import json
import signal
import uuid
from pathlib import Path
from typing import Any

from include.errors import ClimateWatchError
from include.kafka_local.broker import BrokerStatus, LocalBroker
from include.kafka_local.jars import jars_dir
from include.kafka_local.security import (
    CLIENT_ROLES,
    SCRAM_MECHANISM,
    SaslConfig,
    TlsConfig,
    client_acls,
    missing_scram_users,
    stale_client_acls,
)
from include.settings import Settings

NODE_PORT_STEP = 100


class LocalCluster:
    """One or more local KRaft nodes (each broker and controller) started and stopped together.

    A single node keeps its state directly in ``DATA_DIR/kafka``; node *i* of a larger
    cluster lives in ``DATA_DIR/kafka/node-i`` and listens on the configured ports plus
    ``100 × (i − 1)``. The layout (node count, SASL, TLS) is remembered in ``cluster.json`` so
    ``stop`` and ``status`` need no options.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        jars: Path,
        nodes: int = 1,
        port: int = 9092,
        controller_port: int = 9093,
        heap: str = "512m",
        sasl: SaslConfig | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        if not 1 <= nodes <= 9:
            raise ClimateWatchError(f"--nodes must be between 1 and 9, got {nodes}")
        if tls is not None and sasl is None:
            raise ClimateWatchError("TLS on the local broker needs SASL too: use --sasl --tls")
        self.state_dir = Path(state_dir).absolute()
        self.sasl = sasl
        self.tls = tls
        voters = (
            tuple((i, controller_port + NODE_PORT_STEP * (i - 1)) for i in range(1, nodes + 1))
            if nodes > 1
            else None
        )
        self.nodes = [
            LocalBroker(
                self.state_dir if nodes == 1 else self.state_dir / f"node-{i}",
                jars=jars,
                port=port + NODE_PORT_STEP * (i - 1),
                controller_port=controller_port + NODE_PORT_STEP * (i - 1),
                heap=heap,
                node_id=i,
                voters=voters,
                sasl=sasl,
                tls=tls,
            )
            for i in range(1, nodes + 1)
        ]

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        nodes: int | None = None,
        sasl: bool | None = None,
        tls: bool | None = None,
    ) -> LocalCluster:
        """The cluster under DATA_DIR/kafka; ``nodes``/``sasl``/``tls`` default to what it was
        started with (``tls`` implies ``sasl``)."""
        state_dir = settings.kafka_state_dir
        layout = (
            json.loads((state_dir / "cluster.json").read_text())
            if (state_dir / "cluster.json").exists()
            else {}
        )
        if nodes is not None and layout.get("nodes", nodes) != nodes and _any_formatted(state_dir):
            raise ClimateWatchError(
                f"the local Kafka in {state_dir} was set up with {layout['nodes']} node(s): stop it and "
                "remove that directory (or use another CLIMATEWATCH_DATA_DIR) to change the node count"
            )
        nodes = nodes or layout.get("nodes", 1)
        use_sasl = layout.get("sasl", False) if sasl is None else sasl
        use_tls = layout.get("tls", False) and sasl is not False if tls is None else tls
        if use_tls and not use_sasl:
            if sasl is False:
                raise ClimateWatchError("--tls needs SASL: use --sasl --tls")
            use_sasl = True
        credentials = state_dir / "sasl-users.json"
        sasl_config = None
        if use_sasl:
            sasl_config = SaslConfig.load(credentials) or SaslConfig.generate()
        return cls(
            state_dir,
            jars=jars_dir(settings),
            nodes=nodes,
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            heap=settings.kafka_heap,
            sasl=sasl_config,
            tls=TlsConfig(state_dir.absolute() / "tls") if use_tls else None,
        )

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "sasl-users.json"

    def start(self, *, timeout_s: float = 120.0, die_with_parent: bool = False) -> str:
        """Start every node that is not running, then wait for all; ``"already running"`` if none needed it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "cluster.json").write_text(
            json.dumps(
                {
                    "nodes": len(self.nodes),
                    "sasl": self.sasl is not None,
                    "tls": self.tls is not None,
                }
            )
        )
        if self.sasl is not None:
            self.sasl.save(self.credentials_file)
        shared_id = self.state_dir / "cluster.id"
        if len(self.nodes) > 1:
            if not shared_id.exists():
                shared_id.write_text(
                    base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
                )
            for node in self.nodes:
                node.state_dir.mkdir(parents=True, exist_ok=True)
                if not node.cluster_id_file.exists():
                    node.cluster_id_file.write_text(shared_id.read_text())
        stopped = [node for node in self.nodes if node.pid() is None]
        launched = {node: node.launch(die_with_parent=die_with_parent) for node in stopped}
        try:
            for node in self.nodes:
                node.wait_until_answering(timeout_s=timeout_s, process=launched.get(node))
        except ClimateWatchError:
            for node in stopped:
                node.stop()
            raise
        return "started" if stopped else "already running"

    def stop(self) -> str:
        """SIGTERM every node at once: a node stopped after the others lost the quorum
        would wait for a controlled shutdown that can no longer happen."""
        running = [node for node in self.nodes if node.pid() is not None]
        for node in running:
            node.kill(signal.SIGTERM)
        for node in running:
            node.stop()
        for node in self.nodes:
            node.pid_file.unlink(missing_ok=True)
        return "stopped" if running else "not running"

    def status(self) -> list[BrokerStatus]:
        return [node.status() for node in self.nodes]

    def admin(self) -> Any:
        from include.kafka_clients import KafkaAdminClient

        return KafkaAdminClient(
            bootstrap_servers=[node.bootstrap for node in self.nodes],
            bootstrap_timeout_ms=10_000,
            **(self.sasl.client_config("admin", tls=self.tls) if self.sasl else {}),
        )

    def grant_client_acls(self, settings: Settings) -> int:
        """Give every client role exactly its ACLs; returns how many that is.

        Idempotent (Kafka ignores an ACL that exists). A role's ACL this version no longer
        grants is deleted, and a role added after the storage was formatted gets its SCRAM
        user first."""
        from kafka.admin import (
            ACLFilter,
            ACLOperation,
            ACLPermissionType,
            ACLResourcePatternType,
            ResourcePatternFilter,
            ResourceType,
            UserScramCredentialUpsertion,
        )

        wanted = client_acls(settings)
        admin = self.admin()
        try:
            if self.sasl is not None:
                missing = missing_scram_users(
                    admin.describe_user_scram_credentials(list(CLIENT_ROLES))
                )
                if missing:
                    failed = admin.alter_user_scram_credentials(
                        [
                            UserScramCredentialUpsertion(
                                role, SCRAM_MECHANISM, self.sasl.passwords[role]
                            )
                            for role in missing
                        ]
                    )
                    if any(failed.values()):
                        raise ClimateWatchError(f"cannot create SCRAM users: {failed}")
            created = admin.create_acls(wanted)
            if created["failed"]:
                raise ClimateWatchError(f"cannot create client ACLs: {created['failed'][0]}")
            current, _ = admin.describe_acls(
                ACLFilter(
                    principal=None,
                    host=None,
                    operation=ACLOperation.ANY,
                    permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(
                        ResourceType.ANY, None, ACLResourcePatternType.ANY
                    ),
                )
            )
            stale = stale_client_acls(current, wanted)
            if stale:
                admin.delete_acls(stale)  # each a filter matching exactly itself
        finally:
            admin.close()
        return len(wanted)

    def partitions(self, topics: list[str]) -> list[dict[str, Any]]:
        """Leader, replicas and in-sync replicas of every partition of ``topics``."""
        admin = self.admin()
        try:
            known = set(admin.list_topics())
            described = admin.describe_topics([t for t in topics if t in known]) if known else []
        finally:
            admin.close()
        rows = []
        for topic in described:
            for partition in sorted(topic["partitions"], key=lambda p: p["partition_index"]):
                rows.append(
                    {
                        "topic": topic["name"],
                        "partition": partition["partition_index"],
                        "leader": partition["leader_id"],
                        "replicas": list(partition["replica_nodes"]),
                        "isr": list(partition["isr_nodes"]),
                    }
                )
        return rows


def _any_formatted(state_dir: Path) -> bool:
    return any(state_dir.glob("**/kraft-data/meta.properties"))
