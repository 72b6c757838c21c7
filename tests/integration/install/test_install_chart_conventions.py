"""Chart conventions (as in argo-helm / cert-manager), with the real helm CLI: labels on every object,
commonLabels, PodDisruptionBudget and spreading with standby replicas, probe overrides, the optional
NetworkPolicy, the `helm test` hook, the values table generated from the `# --` comments, Artifact Hub
annotations."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from installlib import CHART, ROOT, by_kind, helm, kubectl_local, load_all, one, template

from mailferry_api.version import __version__

NEW_VALUES = {
    "commonLabels.team": "mail",
    "operator.replicas": "3",
    "operator.livenessProbe.failureThreshold": "10",
    "operator.readinessProbe.periodSeconds": "5",
    "networkPolicy.enabled": "true",
    "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name": "monitoring",
    "metrics.serviceMonitor.enabled": "true",
    "metrics.prometheusRule.enabled": "true",
    "grafanaDashboard.enabled": "true",
    "mtaSts.enabled": "true",
    "worker.nodeSelector.pool": "batch",
}


@functools.cache
def _render(values: tuple[tuple[str, str], ...], tests: bool) -> list[dict[str, Any]]:
    return template(dict(values), tests=tests)


def render(values: dict[str, str] | None = None, tests: bool = False) -> list[dict[str, Any]]:
    """`helm template`, each distinct set of values once per session (a render takes seconds)."""
    return copy.deepcopy(_render(tuple(sorted((values or {}).items())), tests))


def test_helm_lint_strict_with_the_new_values() -> None:
    args = [a for k, v in NEW_VALUES.items() for a in ("--set", f"{k}={v}")]
    assert "0 chart(s) failed" in helm("lint", "--strict", str(CHART), *args).stdout


def test_every_object_has_the_name_label_and_common_labels() -> None:
    docs = render(NEW_VALUES, tests=True)
    assert len(docs) > 15
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        where = f"{d['kind']} {d['metadata']['name']}"
        assert labels.get("app.kubernetes.io/name"), where
        assert labels.get("app.kubernetes.io/instance") == "mf", where
        assert labels.get("team") == "mail", where


def operator_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(docs, "Deployment", "mf-mailferry-operator")["spec"]["template"]["spec"])


def test_standby_replicas_get_a_budget_and_spread() -> None:
    docs = render(NEW_VALUES)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "mailferry-operator"
    (spread,) = operator_pod(docs)["topologySpreadConstraints"]
    assert (
        spread["topologyKey"] == "kubernetes.io/hostname" and spread["whenUnsatisfiable"] == "ScheduleAnyway"
    )
    # One replica: neither; explicit constraints win over the default.
    single = render()
    assert not by_kind(single, "PodDisruptionBudget") and "topologySpreadConstraints" not in operator_pod(
        single
    )
    tsc = "operator.topologySpreadConstraints[0]"
    custom = render(
        {**NEW_VALUES, f"{tsc}.topologyKey": "zone", f"{tsc}.maxSkew": "2", f"{tsc}.whenUnsatisfiable": "No"}
    )
    assert [c["topologyKey"] for c in operator_pod(custom)["topologySpreadConstraints"]] == ["zone"]


def test_probe_overrides_merge_over_the_defaults() -> None:
    container = operator_pod(render(NEW_VALUES))["containers"][0]
    assert container["livenessProbe"] == {
        "httpGet": {"path": "/healthz", "port": "healthz"},
        "initialDelaySeconds": 15,
        "periodSeconds": 20,
        "failureThreshold": 10,
    }
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/metrics", "port": "metrics"},
        "periodSeconds": 5,
    }


def test_optional_network_policy() -> None:
    assert not by_kind(render(), "NetworkPolicy")
    policy = one(render(NEW_VALUES), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mailferry-operator"
    assert spec["ingress"][0]["from"] == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    assert {p["port"] for p in spec["ingress"][0]["ports"]} == {8080, 8081}
    assert spec["egress"] == [{}]


def test_helm_test_hook_fetches_metrics_through_the_service() -> None:
    docs = render(tests=True)
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    service = one(docs, "Service", "mf-mailferry-metrics")
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"http://{service['metadata']['name']}.mailferry.svc:8080/metrics" in script
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # The script itself is valid Python (it runs in the image with no shell).
    compile(script, "helm-test", "exec")
    assert not by_kind(render({"tests.enabled": "false"}, tests=True), "Pod")


def test_values_table_is_generated_from_the_comments() -> None:
    tool = ROOT / "tests" / "tools" / "chart_values_table.py"
    cp = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    readme = (CHART / "README.md").read_text()
    assert "| `worker.nodeSelector` | `{}` | nodeSelector of the worker pods. |" in readme


def test_values_table_check_notices_a_stale_table(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "tools"))
    import chart_values_table as t

    values = (CHART / "values.yaml").read_text()
    readme = t.render((CHART / "README.md").read_text(), values)
    changed = values.replace("# -- Labels added to every object", "# -- Labels put on every object")
    assert t.render(readme, changed) != readme


@pytest.mark.parametrize("key", ["artifacthub.io/license", "artifacthub.io/links", "artifacthub.io/images"])
def test_artifact_hub_annotations(key: str) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["annotations"][key]
    if key == "artifacthub.io/images":
        (image,) = yaml.safe_load(chart["annotations"][key])
        assert image["image"] == f"ghcr.io/mailferry/mailferry:{__version__}"


def test_kustomize_worker_image_follows_the_image_pin(tmp_path: Path) -> None:
    """kustomize: MAILFERRY_WORKER_IMAGE is the operator's image after an overlay pins it by digest (the
    example overlay's replacement, copied into an overlay of our own that pins another image)."""
    example = (ROOT / "deploy" / "overlays" / "example" / "kustomization.yaml").read_text()
    overlay = yaml.safe_load(example)
    overlay["resources"] = [os.path.relpath(ROOT / "deploy" / "base", tmp_path)]  # kustomize: no absolute
    overlay.pop("patches", None)
    digest = "sha256:" + "cd" * 32
    overlay["images"] = [
        {"name": "ghcr.io/mailferry/mailferry", "newName": "registry.example.com/mf", "digest": digest}
    ]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    docs = load_all(kubectl_local("kustomize", str(tmp_path)))
    container = one(docs, "Deployment", "mailferry-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == f"registry.example.com/mf@{digest}"
    assert env["MAILFERRY_WORKER_IMAGE"] == container["image"]
