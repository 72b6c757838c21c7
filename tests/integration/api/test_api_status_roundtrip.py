"""A fully populated status survives the /status subresource: nothing the models declare is pruned.

The status is generated from the models themselves (every field, recursively, with a non-default
value that satisfies the field's constraints), validated by pydantic, written with a merge patch to
/status, read back and compared as dicts. A field added to a model but not to the CRD, or a schema
that prunes (status.kopf, free-form maps), fails here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from fixtures.kubeapi import KubeAPI
from mailferry_api.dnscutover import DnsCutoverStatus
from mailferry_api.mailboxsync import MailboxSyncStatus
from mailferry_api.mailmigration import MailMigrationStatus
from support.model_types import constraints, unwrap

EXAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples"

# Candidates for pattern-constrained strings; the first that matches a field's pattern is used.
_PATTERN_SAMPLES = (
    "Ready",
    "mailbox-sync.r3",
    "mx2.example.org",
    "90m",
    "https://hooks.example.org/x",
    "alice@example.com",
)
_WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

KOPF_STATE = {
    "progress": {
        "migration_handler/reconcile": {
            "started": "2026-03-04T05:06:07.123456+00:00",
            "delayed": "2026-03-04T05:07:07.000000+00:00",
            "purpose": "update",
            "retries": 3,
            "success": False,
            "failure": False,
            "message": "waiting for the scan",
            "subrefs": ["a", "b"],
        }
    },
    "dummy": "2026-03-04T05:06:07",
}


def sample(tp: Any, metadata: list[Any], default: Any, name: str) -> Any:
    """A JSON value for `tp` that differs from `default` and satisfies the field's constraints."""
    tp, more = unwrap(tp)
    bounds = constraints(metadata + more)
    origin = get_origin(tp)
    if name == "kopf":
        return KOPF_STATE
    if origin is Literal:
        choices = list(get_args(tp))
        return next((c for c in reversed(choices) if c != default), choices[0])
    if origin is list:
        (item,) = get_args(tp)
        return [sample(item, [], None, name)]
    if origin is dict:
        _, value = get_args(tp)
        return {"NoMessageId": sample(value, [], None, name), "TooLarge": sample(value, [], None, name)}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return populate(tp)
    if tp is bool:
        return not default if isinstance(default, bool) else True
    if tp is int:
        low, high = bounds.get("minimum", 0), bounds.get("maximum", 10**9)
        value = min(max(low, 7), high)
        return value if value != default else min(value + 1, high)
    if tp is float:
        return 0.25
    if tp is datetime:
        return _WHEN.isoformat().replace("+00:00", "Z")
    if tp is date:
        return "2026-03-04"
    if tp is str:
        if "pattern" in bounds:
            return next(s for s in _PATTERN_SAMPLES if re.search(bounds["pattern"], s))
        return f"some {name}"[: bounds.get("maxLen", 64)]
    raise AssertionError(f"{name}: no sample for {tp!r}")


def populate(model: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        out[info.alias or name] = sample(info.annotation, list(info.metadata), default, name)
    return out


def _leaf_paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict) and value and not prefix.endswith("kopf"):
        return set().union(*(_leaf_paths(v, f"{prefix}.{k}") for k, v in value.items()))
    if isinstance(value, list) and value:
        return set().union(*(_leaf_paths(v, f"{prefix}[]") for v in value))
    return {prefix}


CASES = [
    ("mailmigration", "10-mailmigration-inline.yaml", MailMigrationStatus),
    ("mailboxsync", "12-mailboxsync.yaml", MailboxSyncStatus),
    ("dnscutover", "20-dnscutover.yaml", DnsCutoverStatus),
]


@pytest.mark.parametrize(("kind", "example", "model"), CASES, ids=[c[0] for c in CASES])
def test_generated_status_is_complete_and_valid(kind: str, example: str, model: type[BaseModel]) -> None:
    status = populate(model)
    parsed = model.model_validate(status)
    # pydantic accepts it and gives back the same thing: every value is valid and none is a default.
    assert parsed.model_dump(mode="json", by_alias=True, exclude_none=True) == json.loads(json.dumps(status))
    assert set(parsed.model_fields_set) == set(model.model_fields)


@pytest.mark.parametrize(("kind", "example", "model"), CASES, ids=[c[0] for c in CASES])
def test_status_round_trip(
    kube: KubeAPI, namespace: str, kind: str, example: str, model: type[BaseModel]
) -> None:
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    status = model.model_validate(populate(model)).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "kopf" in status and len(_leaf_paths(status)) > 20
    cp = kube.kubectl(
        "patch",
        kind,
        doc["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    assert "Warning" not in cp.stderr, cp.stderr
    stored = kube.get(kind, doc["metadata"]["name"], namespace)
    back = stored["status"]
    dropped = _leaf_paths(status) - _leaf_paths(back)
    assert not dropped, f"pruned by the API server: {sorted(dropped)}"
    assert back == status
    # A spec write does not touch status, and the status write did not bump the generation.
    assert stored["metadata"]["generation"] == 1
    assert model.model_validate(back).model_dump(mode="json", by_alias=True, exclude_none=True) == status
