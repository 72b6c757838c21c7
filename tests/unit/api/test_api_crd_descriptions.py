"""CRDs that explain themselves: every spec and status field of every CRD in crds/ has a description
(from the models' attribute docstrings or Field(description=...)), and `-o wide` shows why an object is
not Ready."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = sorted((Path(__file__).resolve().parents[3] / "crds").glob("*.mailferry.io.yaml"))


def fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every property below `node`, through arrays and maps."""
    for name, prop in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        yield here, prop
        yield from fields(prop, here)
        if isinstance(prop.get("items"), dict):
            yield from fields(prop["items"], here + "[]")
        if isinstance(prop.get("additionalProperties"), dict):
            yield from fields(prop["additionalProperties"], here + "{}")


def schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("path", CRDS, ids=[p.name.split(".")[0] for p in CRDS])
def test_every_spec_and_status_field_has_a_description(path: Path) -> None:
    root = schema(path)
    found = [("spec", root["properties"]["spec"]), ("status", root["properties"]["status"])]
    for part in ("spec", "status"):
        found += list(fields(root["properties"][part], part))
    missing = [p for p, prop in found if not str(prop.get("description") or "").strip()]
    assert len(found) > 20
    assert not missing, (
        f"{path.name}: fields without a description (add a docstring under the field in "
        f"common/mailferry_api, then `python -m mailferry_api.crd`): {missing}"
    )


def test_walk_sees_nested_fields() -> None:
    """The check above reaches list items and nested objects (a walk that stopped early would pass)."""
    mm = schema(next(p for p in CRDS if p.name.startswith("mailmigrations")))
    paths = {p for p, _ in fields(mm["properties"]["spec"], "spec")}
    assert {
        "spec.mailboxes[].source",
        "spec.folders.mappings[].from",
        "spec.source.auth.secretRef.name",
    } <= paths


@pytest.mark.parametrize("path", CRDS, ids=[p.name.split(".")[0] for p in CRDS])
def test_wide_output_has_the_ready_message(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    message = [c for c in columns if c["name"] == "Message"]
    assert message == [
        {
            "name": "Message",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
            "priority": 1,
        }
    ]
