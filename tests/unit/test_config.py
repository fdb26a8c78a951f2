"""Configuration: the catalogs we ship load, settings come from the environment, bad config is named."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from common.experts import ExpertCatalog
from common.settings import FeedbackSettings, RouterSettings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_files_parse():
    catalog = ExpertCatalog.from_file(ROOT / "compose" / "experts.toml")
    assert catalog.premium.name == "llama-3.1-nemotron-51b-instruct"
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    assert {"kafka", "redis", "router", "worker", "feedback", "prometheus"} <= set(compose["services"])
    router = compose["services"]["router"]
    assert "8080:8080" in router["ports"] and router["environment"]["BR_AUTH"] == "true"
    from router_svc.auth import KeyRing
    assert KeyRing.from_file(ROOT / "compose" / "keys.toml").tenants == {}   # no key ships: the operator mints them


def test_kubernetes_manifests_agree_with_the_code_and_compose():
    """deploy/k8s: every resource kustomize lists parses; each Deployment runs a module that
    exists with the shared settings, reads settings the code knows, is autoscaled, and the
    catalog is compose's."""
    k8s = ROOT / "deploy" / "k8s"
    kust = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    docs = [d for f in kust["resources"] for d in yaml.safe_load_all((k8s / f).read_text()) if d]
    by_kind: dict[str, dict] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind["Deployment"]
    assert set(deployments) == {"router", "worker", "feedback"}
    assert {h["spec"]["scaleTargetRef"]["name"] for h in by_kind["HorizontalPodAutoscaler"].values()} == set(deployments)
    env = by_kind["ConfigMap"]["bandit-router-env"]["data"]
    known = {f"BR_{k.upper()}" for k in {**RouterSettings.model_fields, **FeedbackSettings.model_fields}}
    for name, dep in deployments.items():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        module = c["command"][-1]
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
        assert c["envFrom"] == [{"configMapRef": {"name": "bandit-router-env"}}]
        assert {e["name"] for e in c.get("env", [])} | set(env) <= known | {"BR_HOST", "BR_PORT"}
    RouterSettings(**{k[3:].lower(): v for k, v in env.items()})        # the values validate
    router = deployments["router"]["spec"]["template"]["spec"]["containers"][0]
    assert router["readinessProbe"]["grpc"]["port"] == 50051 == by_kind["Service"]["router-grpc"]["spec"]["ports"][0]["port"]
    files = by_kind["ConfigMap"]["bandit-router-files"]["data"]
    assert files["experts.toml"] == (ROOT / "compose" / "experts.toml").read_text()


def test_compose_prometheus_scrapes_every_service():
    """Checked by Debian's promtool (installed by run.sh with prometheus)."""
    path = ROOT / "compose" / "prometheus.yml"
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {j["job_name"]: j["dns_sd_configs"][0]["names"] for j in yaml.safe_load(path.read_text())["scrape_configs"]}
    assert jobs == {"router": ["router"], "worker": ["worker"], "feedback": ["feedback"]}


def test_settings_come_from_environment(monkeypatch):
    monkeypatch.setenv("BR_POLICY_PARAMS", '{"alpha": 0.2, "project_to": 64}')
    monkeypatch.setenv("BR_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("BR_DECISION_TTL_S", "60")
    r, f = RouterSettings(), FeedbackSettings()
    assert r.policy_params == {"alpha": 0.2, "project_to": 64} and r.decisions_topic == "staging.router.decisions"
    assert f.decision_ttl_s == 60 and f.expert_topic("x") == "staging.experts.x.requests"
    monkeypatch.setenv("BR_DEFAULT_COST_WEIGHT", "-1")
    with pytest.raises(ValidationError, match="default_cost_weight"):
        RouterSettings()
    monkeypatch.delenv("BR_DEFAULT_COST_WEIGHT")
    monkeypatch.setenv("BR_TLS_CERT_FILE", "/etc/cert.pem")
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file go together"):
        RouterSettings()


def test_shadow_policies_come_from_the_environment_and_bad_ones_are_named(monkeypatch):
    monkeypatch.setenv("BR_POLICY", "lints")
    monkeypatch.setenv("BR_SHADOW_POLICIES", '{"linucb": {}, "wide": {"policy": "linucb", "params": {"alpha": 2}}}')
    specs = FeedbackSettings().policy_specs
    assert [(s.name, s.kind, s.params) for s in specs.values()] == [
        ("lints", "lints", {}), ("linucb", "linucb", {}), ("wide", "linucb", {"alpha": 2})]
    for bad, message in [('{"lints": {}}', "has the serving policy's name"),
                         ('{"a b": {}}', "must be 1 to 64 of"),
                         ('{"x": {"policy": "linucb", "alpha": 2}}', 'must be {"policy": NAME'),
                         ('{"x": {"params": [1]}}', 'must be {"policy": NAME')]:
        monkeypatch.setenv("BR_SHADOW_POLICIES", bad)
        with pytest.raises(ValidationError, match=message):
            RouterSettings()


@pytest.mark.parametrize("toml, message", [
    ('[experts."bad name"]\nbackend = "replay"', "must match"),
    ('[experts.a]\nbackend = "replay"\nprice_per_call = -1', "greater than or equal to 0"),
    ("title = 'no experts'", "expected one or more"),
])
def test_bad_catalogs_are_named(tmp_path, toml, message):
    path = tmp_path / "e.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message):
        ExpertCatalog.from_file(path)


def test_tools_take_the_deployment_from_the_services_settings_and_flags_override(monkeypatch):
    import argparse

    from common.cli import add_deployment_args, settings_from

    p = argparse.ArgumentParser()
    add_deployment_args(p, kafka=True, redis=True, policy=True)
    monkeypatch.setenv("BR_TOPIC_PREFIX", "prod.")
    monkeypatch.setenv("BR_POLICY", "lints")
    monkeypatch.setenv("BR_POLICY_PARAMS", '{"v": 0.2}')
    s = settings_from(p.parse_args([]))
    assert (s.policy, s.policy_params, s.redis_prefix, s.rewards_topic) == ("lints", {"v": 0.2}, "br:prod.",
                                                                          "prod.router.rewards")
    s = settings_from(p.parse_args(["--topic-prefix", "", "--policy", "linucb", "--params", '{"alpha": 1}',
                                    "--bootstrap", "h:1"]))
    assert (s.policy, s.policy_params, s.redis_prefix, s.kafka_bootstrap) == ("linucb", {"alpha": 1}, "br:", "h:1")
    with pytest.raises(SystemExit, match="^error: --params is not JSON"):
        settings_from(p.parse_args(["--params", "{nope"]))
