"""Static checks of the kustomize tree (kubectl builds it in tests/integration/install)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mailferry_operator.main import parse_args

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"


def test_crds_kustomization_lists_every_crd() -> None:
    k = yaml.safe_load((ROOT / "crds" / "Kustomization").read_text())
    assert k["kind"] == "Kustomization"
    assert sorted(k["resources"]) == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))


def test_base_uses_the_repository_crds_and_existing_files() -> None:
    k = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert "../../crds" in k["resources"]
    for r in k["resources"]:
        assert (DEPLOY / "base" / r).exists(), r
    overlay = yaml.safe_load((DEPLOY / "overlays" / "example" / "kustomization.yaml").read_text())
    for r in overlay["resources"]:
        assert (DEPLOY / "overlays" / "example" / r).exists(), r


def test_base_deployment_args_are_accepted_by_the_operator() -> None:
    dep = yaml.safe_load((DEPLOY / "base" / "deployment.yaml").read_text())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    args = parse_args(c["args"])
    assert args.all_namespaces and args.standalone and args.metrics_port == 8080
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": args.metrics_port, "healthz": args.liveness_port}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532
