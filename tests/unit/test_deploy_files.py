"""deploy/ agrees with the code: no Docker engine here, so the files are parsed and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from jobwire.api.app import ROUTES
from jobwire.cli import parser
from jobwire.config import ENV_VARS

DEPLOY = Path(__file__).parents[2] / "deploy"
COMMANDS = set(parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
ROUTE_PATHS = {route.path for route in ROUTES}


def k8s_documents() -> list[dict[str, Any]]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def containers() -> list[dict[str, Any]]:
    found = []
    for doc in k8s_documents():
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        found += spec.get("containers", [])
    return found


def test_dockerfile_runs_jobwire_as_non_root() -> None:
    lines = [line.split(None, 1) for line in (DEPLOY / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    instructions = [(parts[0], parts[1] if len(parts) > 1 else "") for parts in lines]
    assert ("ENTRYPOINT", '["jobwire"]') in instructions
    assert ("CMD", '["api"]') in instructions
    users = [value for name, value in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(name == "FROM" for name, _ in instructions[1:]) and instructions[0][0] == "FROM", "multi-stage"


def test_compose_services_use_real_commands_and_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    jobwire_services = {name: svc for name, svc in compose["services"].items() if svc.get("image") == "jobwire:local"}
    assert set(jobwire_services) == {"topics", "api", "dispatcher", "worker"}
    for name, service in jobwire_services.items():
        assert service["command"][0] in COMMANDS, name
        unknown = set(service["environment"]) - set(ENV_VARS)
        assert unknown == set(), f"{name} sets settings jobwire does not read: {unknown}"
    assert compose["services"]["api"]["ports"] == ["8000:8000"]
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:4.")


def test_k8s_settings_are_known() -> None:
    for doc in k8s_documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            data = doc.get("data") or doc.get("stringData") or {}
            assert set(data) - set(ENV_VARS) == set(), doc["metadata"]["name"]
    for container in containers():
        names = {e["name"] for e in container.get("env", [])}
        assert names - set(ENV_VARS) == set(), container["name"]


@pytest.mark.parametrize("container", containers(), ids=lambda c: c["name"])
def test_k8s_containers_run_real_commands_on_matching_ports(container: dict[str, Any]) -> None:
    args = container["args"]
    assert args[0] in COMMANDS
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if args[0] == "api":
        assert ports["http"] == int(env["JOBWIRE_PORT"])
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["path"] in ROUTE_PATHS
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    if args[0] == "dispatcher":
        assert ports["metrics"] == int(args[args.index("--metrics-port") + 1])
    assert "memory" in container["resources"]["limits"]


def test_k8s_has_disruption_budgets_for_each_deployment() -> None:
    kinds = [(d["kind"], d["metadata"]["name"]) for d in k8s_documents()]
    for kind, name in kinds:
        if kind in ("Deployment", "StatefulSet"):
            assert ("PodDisruptionBudget", name) in kinds


def test_the_three_broker_variants_form_one_quorum() -> None:
    base = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    cluster = yaml.safe_load((DEPLOY / "docker-compose.cluster.yml").read_text())["services"]
    nodes = {name: {**base.get(name, {}).get("environment", {}), **svc["environment"]}
             for name, svc in cluster.items() if name.startswith("kafka")}
    assert sorted(env["KAFKA_NODE_ID"] for env in nodes.values()) == ["1", "2", "3"]
    assert len({env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in nodes.values()}) == 1
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1
    assert {env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] for env in nodes.values()} == {"3"}
    for name in ("topics", "api", "dispatcher", "worker"):
        assert cluster[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"].count(":9092") == 3, name
    k8s = [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "kafka" / "kafka-3-brokers.yaml").read_text()) if d]
    [kafka] = [d for d in k8s if d["kind"] == "StatefulSet"]
    env = {e["name"]: e["value"] for e in kafka["spec"]["template"]["spec"]["containers"][0]["env"]}
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == kafka["spec"]["replicas"] == 3
    config = next(d for d in k8s_documents() if d["kind"] == "ConfigMap")["data"]
    assert sorted(config["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == [f"kafka-{i}.kafka:9092" for i in range(3)]


def test_dispatchers_are_static_members_with_stable_names() -> None:
    [dispatcher] = [d for d in k8s_documents() if d["kind"] == "StatefulSet" and "dispatcher" in d["metadata"]["name"]]
    [container] = dispatcher["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["JOBWIRE_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_every_workload_has_a_network_policy_and_the_dispatcher_reaches_public_addresses_only() -> None:
    """Below the SSRF guard: the dispatcher's egress to webhook receivers leaves out every
    address the guard refuses (private, loopback, link-local and metadata, CGNAT, ...)."""
    import ipaddress

    from jobwire.webhooks.ssrf import refusal

    docs = k8s_documents()
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            labels = doc["spec"]["template"]["metadata"]["labels"] if doc["kind"] != "Job" else {
                "job-name": doc["metadata"]["name"]}
            assert any(labels.items() >= p["spec"]["podSelector"]["matchLabels"].items() and "Egress" in
                       p["spec"]["policyTypes"] for p in policies.values()), doc["metadata"]["name"]
    blocks = [peer["ipBlock"] for rule in policies["jobwire-dispatcher"]["spec"]["egress"] for peer in rule["to"]
              if "ipBlock" in peer]
    for probe in ("10.0.0.5", "172.20.1.1", "192.168.1.1", "127.0.0.1", "169.254.169.254", "100.64.0.1",
                  "0.0.0.1", "fd00::1", "fe80::1", "::1", "::ffff:10.0.0.1"):
        address = ipaddress.ip_address(probe)
        assert refusal(address, ()) is not None, f"the guard refuses {probe}"
        assert not any(address in ipaddress.ip_network(b["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in b.get("except", [])) for b in blocks), f"policy lets {probe} out"
    for public in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"):
        assert any(ipaddress.ip_address(public) in ipaddress.ip_network(b["cidr"]) for b in blocks)
