"""Deployment files are validated by parsing (no Docker engine or cluster here)."""

from pathlib import Path

import yaml

from its_faust.settings import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_compose_runs_kraft_kafka_and_workers_against_it():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"] and "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka
    for name in ("worker", "camera-1"):
        service = compose["services"][name]
        assert service["environment"]["ITS_FAUST_BROKER_URL"] == "kafka://kafka:9092"
        assert (DEPLOY / service["build"]["dockerfile"].removeprefix("deploy/")).exists()


def test_compose_asks_no_more_replicas_than_it_has_brokers(monkeypatch):
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    brokers = sum(1 for s in compose["services"].values() if "kafka" in s.get("image", ""))
    for name in ("worker", "camera-1"):
        environment = compose["services"][name]["environment"]
        monkeypatch.setenv("ITS_FAUST_PROFILE", environment["ITS_FAUST_PROFILE"])
        for key, value in environment.items():
            monkeypatch.setenv(key, str(value))
        assert load_settings().replication_factor <= brokers, name


def test_kubernetes_manifests_parse_and_autoscale_within_partitions(monkeypatch):
    docs = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    kinds = {d["kind"]: d for d in docs}
    assert {"StatefulSet", "ScaledObject"} <= set(kinds)
    scaled = kinds["ScaledObject"]["spec"]
    monkeypatch.setenv("ITS_FAUST_PROFILE", "production")
    assert scaled["maxReplicaCount"] <= load_settings().partitions
    trigger = scaled["triggers"][0]["metadata"]
    assert trigger["consumerGroup"] == load_settings().app_id and trigger["topic"] == "its.frames"


def test_dockerfile_installs_the_package_and_runs_the_cli():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "pip install" in text and 'ENTRYPOINT ["its-faust"]' in text
    for package in ("its_faust", "agents", "tables", "schemas", "api"):
        assert f"COPY {package} " in text
