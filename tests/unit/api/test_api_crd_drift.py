"""The committed crds/*.yaml are exactly what `python -m mailferry_api.crd` renders from the models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mailferry_api import crd

CRDS = Path(__file__).resolve().parents[3] / "crds"


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_committed_crd_equals_rendered(resource: crd.Resource) -> None:
    committed = (CRDS / f"{resource.crd_name}.yaml").read_text()
    assert committed == crd.dump(resource), (
        f"crds/{resource.crd_name}.yaml is stale: run `PYTHONPATH=worker python -m mailferry_api.crd`"
    )


def test_no_stray_crd_files() -> None:
    expected = {f"{r.crd_name}.yaml" for r in crd.RESOURCES}
    assert {p.name for p in CRDS.glob("*.yaml")} == expected


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_crd_shape(resource: crd.Resource) -> None:
    doc = yaml.safe_load((CRDS / f"{resource.crd_name}.yaml").read_text())
    spec = doc["spec"]
    assert spec["group"] == "mailferry.io"
    assert spec["scope"] == "Namespaced"
    assert "mailferry" in spec["names"]["categories"]
    assert spec["names"]["shortNames"] == list(resource.short_names)
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert "Phase" in columns and "Ready" in columns and columns[-1] == "Age"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["kopf"]["x-kubernetes-preserve-unknown-fields"] is True


def _walk(node: object, path: str = "") -> list[tuple[str, dict[str, object]]]:
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}/{i}"))
    return found


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_schema_is_structural(resource: crd.Resource) -> None:
    """What the API server would refuse or silently prune, caught before it gets there."""
    schema = crd.render(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        if path.endswith("/properties") or "/x-kubernetes-validations" in path or path.endswith("/default"):
            continue
        if "/default/" in path or path.endswith("/enum") or path == "/properties/metadata":
            continue
        assert "$ref" not in node, path
        assert node.get("additionalProperties") is not True, f"{path}: additionalProperties: true is pruned"
        if "properties" in node or "items" in node:
            assert "type" in node, f"{path}: every schema node needs a type"
        if node.get("type") == "object":
            assert (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields") is True
            ), f"{path}: an object without properties loses every key"
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, f"{path}: anyOf only for int-or-string"
