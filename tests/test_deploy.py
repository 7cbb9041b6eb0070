"""Deployment files are validated by parsing (no Docker engine or cluster here)."""

import os
import re
import shlex
import subprocess
import time
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
    for name in ("worker", "camera-1", "camera-1-setup", "api"):
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
    # CPU torch unless asked otherwise: PyPI's CUDA build made the image about 6 GB larger.
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text
    assert text.index('--index-url "$TORCH_INDEX" torch torchvision') < text.index("pip install --no-cache-dir .")


def _its_faust_commands():
    """Every its-faust command line the deployment files run: (where, args)."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        if service.get("entrypoint") == ["sh", "-c"]:  # a script: each its-faust command in it
            for part in re.split(r"\|\||&&|;", service["command"][0]):
                words = shlex.split(part)
                if words and words[0] == "its-faust":
                    yield f"compose {name}", words[1:]
        else:
            yield f"compose {name}", service["command"]
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc["kind"] in ("Deployment", "StatefulSet"):
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    yield f"{f.name} {container['name']}", container["args"]


def test_every_command_the_deployments_run_is_one_the_cli_takes():
    import click

    from its_faust.cli import main

    commands = list(_its_faust_commands())
    assert {args[0] for _, args in commands} >= {"worker", "ingest", "api", "cameras"}
    for where, args in commands:
        group, ctx, rest = main, main.make_context("its-faust", list(args)), list(args)
        while True:  # down through groups (cameras add-line ...) to the command, each parsing its own options
            command = group.get_command(ctx, rest[0])
            assert command is not None, f"{where}: no command {rest[0]!r} in {args}"
            try:
                ctx = command.make_context(rest[0], rest[1:], parent=ctx)
            except click.UsageError as exc:
                raise AssertionError(f"{where}: {args}: {exc}") from None
            if not isinstance(command, click.Group):
                break
            group, rest = command, [*ctx.protected_args, *ctx.args]


def test_the_api_is_deployed_and_probed_on_routes_it_has(monkeypatch):
    from api.app import create_app

    routes = set(create_app(load_settings(), "127.0.0.1:9").openapi()["paths"])
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    api = compose["services"]["api"]
    assert "--host" in api["command"] and "0.0.0.0" in api["command"]  # reachable from outside its container
    assert api["ports"] == ["8000:8000"] and any("/api/v1/health" in part for part in api["healthcheck"]["test"])
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "api.yaml").read_text())]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in routes, probe
    # The API serves only once its broker answers; it waits for it as long as the profile says (a cluster's cold
    # start): the startup probe must allow that, or the liveness probe restarts it while it waits.
    startup = container["startupProbe"]
    profile = {e["name"]: e.get("value") for e in container.get("env", [])}["ITS_FAUST_PROFILE"]
    monkeypatch.setenv("ITS_FAUST_PROFILE", profile)
    assert startup["periodSeconds"] * startup["failureThreshold"] > load_settings().broker_wait_s == 300, profile
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert "/api/v1/health" in routes and "/api/v1/workers" in routes


def test_workers_are_probed_on_the_file_they_write_when_ready_and_keep_fresh_while_well(tmp_path):
    from its_faust.worker import LIVENESS_TOUCH_S

    def alive(shell: str, ready_file: str, age_s: float | None) -> bool:
        """Run the probe's shell command against a stand-in for the ready file touched ``age_s`` ago."""
        stand_in = tmp_path / "worker.ready"
        stand_in.unlink(missing_ok=True)
        if age_s is not None:
            stand_in.touch()
            os.utime(stand_in, (time.time() - age_s,) * 2)
        return subprocess.run(["sh", "-c", shell.replace(ready_file, str(stand_in))]).returncode == 0

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    ready_file = worker["command"][worker["command"].index("--ready-file") + 1]
    kind, shell = worker["healthcheck"]["test"]
    statefulset = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text()) if d["kind"] == "StatefulSet")
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["args"][container["args"].index("--ready-file") + 1] == ready_file
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["test", "-f", ready_file], probe
    sh, dash_c, liveness = container["livenessProbe"]["exec"]["command"]
    assert kind == "CMD-SHELL" and (sh, dash_c) == ("sh", "-c")
    for check in (shell, liveness):
        # Touched every LIVENESS_TOUCH_S: fresh between touches; a minute without one (a wedged loop), or gone: dead.
        assert alive(check, ready_file, 3 * LIVENESS_TOUCH_S) and not alive(check, ready_file, 65)
        assert not alive(check, ready_file, None)


def test_kubernetes_objects_the_manifests_refer_to_are_defined():
    docs = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for d in docs:
        if d["kind"] == "StatefulSet":
            assert d["spec"]["serviceName"] in services
        if d["kind"] in ("StatefulSet", "Deployment"):
            for volume in d["spec"]["template"]["spec"].get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims, volume


def test_the_image_runs_as_its_own_user_and_caches_torch_before_the_code():
    text = (DEPLOY / "Dockerfile").read_text()
    uid = re.search(r"useradd --uid (\d+)", text)[1]
    assert re.search(rf"^USER {uid}$", text, re.M) and "chown -R its /data" in text
    # torch's layer comes before any of the project's files: a code change does not reinstall it
    assert text.index("torch torchvision") < text.index("COPY ")
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc["kind"] in ("Deployment", "StatefulSet"):
                assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid), f.name


def test_the_build_context_sends_what_the_image_copies_and_nothing_else():
    """Without a .dockerignore the context was the whole checkout: the venv with torch, weights, clips, .git."""
    ignore = [line.strip() for line in (DEPLOY.parent / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # everything is left out, then what is copied is let in
    sources = {w for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")
               for w in line.split()[1:-1]}  # COPY a b ./: all but the last word
    assert sources and all(f"!{source}" in ignore for source in sources), sources
    assert not any(f"!{name}" in ignore for name in (".venv", "assets", ".git", "artifacts"))


def test_the_compose_set_up_is_not_an_error_when_run_again_and_hides_no_other_failure():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    script = compose["services"]["camera-1-setup"]["command"][0]
    assert "|| true" not in script  # it hid timeouts and unreachable brokers too
    for part in script.split("&&"):
        assert "--exist-ok" in shlex.split(part), part
    assert "kafka-data" in compose["volumes"] and any("kafka-data:" in v for v in compose["services"]["kafka"]["volumes"])


def test_kubernetes_workers_scale_out_together_on_claims_a_cluster_can_provide():
    docs = [d for f in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert "replicas" not in statefulset["spec"]  # KEDA's; a re-apply reset them
    assets = next(d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "its-faust-assets")
    # ReadOnlyMany cannot be provisioned empty (and then not filled): the claim stayed Pending, and every worker with it
    assert assets["spec"]["accessModes"] == ["ReadWriteMany"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    cpus = int(container["resources"]["requests"]["cpu"])
    assert int(env["ITS_FAUST_MODEL__PARALLEL"]) * int(env["ITS_FAUST_MODEL__ORT_THREADS"]) == cpus
