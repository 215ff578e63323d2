"""The grants of each client role, as data: least privilege, and what each component uses.

The broker enforces them in ``test_security.py``; here, without a broker, the table itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.kafka_local.security import (
    CLIENT_ROLES,
    SaslConfig,
    client_acls,
    missing_scram_users,
    role_grants,
    stale_client_acls,
)
from include.settings import load_settings

pytestmark = pytest.mark.unit

SETTINGS = load_settings(stream_group_id="cw-stream")


def grants_of(role: str) -> set[tuple[str, str, str]]:
    return {(g.operation, g.kind, g.name) for g in role_grants(SETTINGS) if g.role == role}


def test_every_client_role_has_grants_and_no_one_else() -> None:
    assert {g.role for g in role_grants(SETTINGS)} == set(CLIENT_ROLES)
    assert {g.operation for g in role_grants(SETTINGS)} <= {"READ", "WRITE", "DESCRIBE"}
    assert {g.kind for g in role_grants(SETTINGS)} == {"topic", "group"}


def test_the_stream_reads_back_its_alerts_and_window_stats_to_restore() -> None:
    s = SETTINGS
    assert grants_of("stream") == {
        ("READ", "topic", s.topic_readings),
        ("DESCRIBE", "topic", s.topic_readings),
        *(
            (op, "topic", topic)
            for topic in (s.topic_window_partials, s.topic_alerts, s.topic_window_stats)
            for op in ("READ", "WRITE", "DESCRIBE")
        ),
        ("WRITE", "topic", s.topic_dlq),
        ("DESCRIBE", "topic", s.topic_dlq),
        ("READ", "group", "cw-stream"),
        ("READ", "group", "cw-stream-regions"),
    }


def test_the_archiver_reads_the_archived_topics_without_a_group() -> None:
    from warehouse.archive.layout import archived_topics

    assert grants_of("archiver") == {
        (op, "topic", topic) for topic in archived_topics(SETTINGS) for op in ("READ", "DESCRIBE")
    }


def test_producers_write_one_topic_each() -> None:
    assert grants_of("simulator") == {
        ("WRITE", "topic", SETTINGS.topic_readings),
        ("DESCRIBE", "topic", SETTINGS.topic_readings),
    }
    assert grants_of("quality") == {
        ("WRITE", "topic", SETTINGS.topic_alerts),
        ("DESCRIBE", "topic", SETTINGS.topic_alerts),
    }


def test_acls_are_literal_and_stale_ones_are_found() -> None:
    from kafka.admin import ACLResourcePatternType

    acls = client_acls(SETTINGS)
    assert len(acls) == len(role_grants(SETTINGS))
    assert {acl.resource_pattern.pattern_type for acl in acls} == {ACLResourcePatternType.LITERAL}
    old = load_settings(stream_group_id="climatewatch-alerts")
    older = client_acls(old)  # another group name: its group grants are stale
    others = [
        acl
        for acl in client_acls(load_settings(topic_alerts="x"))
        if acl.principal != "User:stream"
    ]
    stale = stale_client_acls([*older, *others], acls)
    assert {acl.resource_pattern.resource_name for acl in stale} == {
        "climatewatch-alerts",
        "climatewatch-alerts-regions",
        "x",
    }
    assert not stale_client_acls(acls, acls)


def test_a_role_added_after_the_passwords_were_saved_gets_one(tmp_path: Path) -> None:
    path = tmp_path / "sasl-users.json"
    path.write_text(json.dumps({"admin": "a", "stream": "s", "archiver": "r", "simulator": "m"}))
    loaded = SaslConfig.load(path)
    assert loaded is not None
    assert set(loaded.passwords) == {"admin", *CLIENT_ROLES}
    assert loaded.passwords["stream"] == "s" and len(loaded.passwords["quality"]) > 16
    assert SaslConfig.load(tmp_path / "absent.json") is None


def test_missing_scram_users() -> None:
    from kafka.admin import ScramMechanism

    described = {
        role: {"error": None, "credential_infos": [{"mechanism": ScramMechanism.SCRAM_SHA_512}]}
        for role in CLIENT_ROLES
    }
    assert missing_scram_users(described) == []
    described["quality"] = {"error": "not found", "credential_infos": []}
    del described["archiver"]
    assert missing_scram_users(described) == ["archiver", "quality"]
