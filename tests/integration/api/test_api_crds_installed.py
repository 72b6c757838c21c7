"""The generated CRDs as the real API server sees them: accepted, structural, Established, no warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures._proc import wait_until
from fixtures.kubeapi import KubeAPI
from mailferry_api import crd

CRDS = Path(__file__).resolve().parents[3] / "crds"


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_crd_established_and_structural(kube: KubeAPI, resource: crd.Resource) -> None:
    obj = kube.get("crd", resource.crd_name)
    conditions = {c["type"]: c for c in obj["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    # NonStructuralSchema / KubernetesAPIApprovalPolicyConformant problems show up as extra conditions.
    assert set(conditions) == {"Established", "NamesAccepted"}, conditions
    assert obj["status"]["acceptedNames"]["shortNames"] == list(resource.short_names)
    assert obj["status"]["acceptedNames"]["categories"] == ["mailferry"]


def test_reapply_has_no_warnings(kube: KubeAPI) -> None:
    cp = kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    assert "Warning" not in cp.stderr, cp.stderr
    assert cp.stdout.count("serverside-applied") == len(crd.RESOURCES)


def test_category_lists_all_three(kube: KubeAPI) -> None:
    out = kube.kubectl("api-resources", "--categories=mailferry", "-o", "name").stdout.split()
    assert sorted(out) == sorted(f"{r.plural}.mailferry.io" for r in crd.RESOURCES)


def _explain(kube: KubeAPI, path: str) -> str:
    # The OpenAPI document is republished a moment after a CRD changes; wait for it.
    cp = wait_until(
        lambda: (c := kube.kubectl("explain", path, check=False)).returncode == 0 and c,
        timeout=60,
        what=f"kubectl explain {path}",
    )
    return cp.stdout


def test_schema_published_for_kubectl_explain(kube: KubeAPI) -> None:
    out = _explain(kube, "mailmigration.spec.source.security")
    assert "tls" in out and "starttls" in out
    assert "manualApproval" in _explain(kube, "dnscutover.spec.gates.switched.type")
