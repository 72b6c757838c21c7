"""Renders the CRDs from the pydantic models: the models are the one source of truth.

`python -m mailferry_api.crd [outdir]` rewrites crds/*.yaml; a unit test fails when the
committed files differ from what the models give, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .common import API_GROUP, API_VERSION
from .dnscutover import DnsCutoverSpec, DnsCutoverStatus
from .mailboxsync import MailboxSyncSpec, MailboxSyncStatus
from .mailmigration import MailMigrationSpec, MailMigrationStatus
from .noticeplan import NoticePlanSpec, NoticePlanStatus
from .sendingcutover import SendingCutoverSpec, SendingCutoverStatus

CATEGORY = "mailferry"


@dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    # Names the operator puts into label values (<= 63 characters) are refused at admission when longer,
    # instead of failing every label write with `422 Invalid` later.
    max_name: int | None = None
    # False: the spec's defaults are the model's alone, written into the descriptions (`kubectl explain`),
    # not applied by the API server. A stored object then holds only what its writer set: the operator
    # creates 10,000 MailboxSyncs at a migration's start, and a defaulted object costs the API server,
    # etcd and every watcher about a third more per create (docs/benchmarks.md, "a migration's start").
    api_defaults: bool = True

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"


def _ready_column() -> dict[str, Any]:
    return {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'}


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
ETA_DESCRIPTION = "when the copy is expected to be done (status.etaReason says what bounds it)"
# `kubectl get -o wide`: why the object is (not) Ready, on every resource.
_MESSAGE = {
    "name": "Message",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
    "priority": 1,
}


def _with_message(columns: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The resource's columns with Message before Age (or last)."""
    out = [c for c in columns if c is not _AGE]
    return [*out, _MESSAGE, *([_AGE] if _AGE in columns else [])]


RESOURCES: tuple[Resource, ...] = (
    Resource(
        kind="MailMigration",
        plural="mailmigrations",
        max_name=63,
        short_names=("mm",),
        spec=MailMigrationSpec,
        status=MailMigrationStatus,
        columns=(
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            _ready_column(),
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            {"name": "Mailboxes", "type": "integer", "jsonPath": ".status.mailboxes.total"},
            {
                "name": "Lag",
                "type": "integer",
                "jsonPath": ".status.lag.maxSeconds",
                "description": "seconds",
            },
            # A string, not a date: kubectl prints a future date column as <invalid>.
            {"name": "ETA", "type": "string", "jsonPath": ".status.eta", "description": ETA_DESCRIPTION},
            {
                "name": "Cutover",
                "type": "string",
                "jsonPath": ".status.cutover.holds",
                "description": "until when a DnsCutover holds the final delta round",
            },
            _AGE,
        ),
    ),
    Resource(
        kind="MailboxSync",
        plural="mailboxsyncs",
        short_names=("mbs",),
        api_defaults=False,
        spec=MailboxSyncSpec,
        status=MailboxSyncStatus,
        columns=(
            {"name": "Source", "type": "string", "jsonPath": ".spec.source.username"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            _ready_column(),
            {"name": "Copied", "type": "integer", "jsonPath": ".status.totals.copied"},
            {"name": "Messages", "type": "integer", "jsonPath": ".status.totals.messages"},
            {"name": "Lag", "type": "integer", "jsonPath": ".status.lag.seconds", "description": "seconds"},
            {"name": "ETA", "type": "string", "jsonPath": ".status.eta", "description": ETA_DESCRIPTION},
            _AGE,
        ),
    ),
    Resource(
        kind="DnsCutover",
        plural="dnscutovers",
        max_name=63,
        short_names=("dnsc",),
        spec=DnsCutoverSpec,
        status=DnsCutoverStatus,
        columns=(
            {"name": "Domain", "type": "string", "jsonPath": ".spec.domain"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Target", "type": "string", "jsonPath": ".spec.targetPhase"},
            _ready_column(),
            {"name": "Switched", "type": "string", "jsonPath": ".status.switchedAt"},
            {
                "name": "Drain-Until",
                "type": "string",
                "jsonPath": ".status.drainUntil",
                "description": "the MailMigration's final delta round runs after this",
            },
            {"name": "Provider", "type": "string", "jsonPath": ".spec.provider.type", "priority": 1},
            _AGE,
        ),
    ),
    Resource(
        kind="SendingCutover",
        plural="sendingcutovers",
        short_names=("sendc",),
        spec=SendingCutoverSpec,
        status=SendingCutoverStatus,
        columns=(
            {"name": "Domain", "type": "string", "jsonPath": ".spec.domain"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Weight", "type": "integer", "jsonPath": ".status.weight", "description": "percent"},
            {"name": "Target", "type": "integer", "jsonPath": ".spec.targetWeight"},
            _ready_column(),
            {"name": "Provider", "type": "string", "jsonPath": ".spec.provider.name", "priority": 1},
            _AGE,
        ),
    ),
    Resource(
        kind="NoticePlan",
        plural="noticeplans",
        short_names=("np",),
        spec=NoticePlanSpec,
        status=NoticePlanStatus,
        columns=(
            {"name": "Migration", "type": "string", "jsonPath": ".spec.migrationRef.name"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Pending-Approvals", "type": "integer", "jsonPath": ".status.pendingApprovals"},
            {"name": "Sent", "type": "integer", "jsonPath": ".status.sent"},
            {"name": "Bounced", "type": "integer", "jsonPath": ".status.bounced"},
            {"name": "Acknowledged", "type": "integer", "jsonPath": ".status.acknowledged"},
            _ready_column(),
            _AGE,
        ),
    ),
)

# JSON-schema keywords the Kubernetes structural schema does not accept.
_DROP = {"title", "$defs", "discriminator", "const", "examples"}


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v not in ([], {}, None)}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve $ref, collapse Optional (anyOf with null), drop what CRDs reject."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **extra}, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            merged = _inline(options[0], defs)
            merged.update(_inline(rest, defs))
            if node.get("default") is not None:
                merged["default"] = node["default"]
            return merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _inline(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _inline(value, defs)
    if out.get("format") == "date-time":
        out["format"] = "date-time"
    # `additionalProperties: true` (pydantic's dict[str, Any]) is not a structural schema: the API
    # server prunes (or, with strict field validation, rejects) every key under it. Free-form objects
    # are declared with x-kubernetes-preserve-unknown-fields instead.
    if out.get("additionalProperties") is True:
        del out["additionalProperties"]
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    # A default of [] or {} adds noise to every object; Kubernetes omits empty anyway.
    if out.get("default") in ([], {}):
        del out["default"]
    # An object field whose model default is an instance (worker: WorkerSpec = WorkerSpec()) gets that
    # instance as its default (empty lists dropped), so the API server stores the same object the model
    # fills in. (`default: {}` would be shorter, but the API server checks CEL rules against the literal
    # default before nested defaults apply, and rules like `self.lowered <= self.normal` then fail.)
    if out.get("type") == "object" and isinstance(out.get("default"), dict):
        out["default"] = _drop_empty(out["default"])
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _inline(raw, raw.get("$defs", {}))


def _defaults_described(node: Any) -> Any:
    """The schema without `default`s; a scalar default is said in its field's description instead."""
    if isinstance(node, list):
        return [_defaults_described(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {
        # under "properties" the keys are field names, and one may be called "default"
        k: {name: _defaults_described(p) for name, p in v.items()}
        if k == "properties"
        else _defaults_described(v)
        for k, v in node.items()
        if k != "default"
    }
    default = node.get("default")
    if default is not None and not isinstance(default, (dict, list)):
        said = f"Default: {json.dumps(default)}."
        description = str(out.get("description") or "").rstrip()
        out["description"] = f"{description} {said}" if description else said
    return out


def _name_rules(resource: Resource) -> list[dict[str, Any]] | None:
    if resource.max_name is None:
        return None
    return [
        {
            "rule": f"self.metadata.name.size() <= {resource.max_name}",
            "message": (
                f"metadata.name must be at most {resource.max_name} characters: mailferry uses the "
                f"{resource.kind} name as a label value on the objects it creates"
            ),
            "reason": "FieldValueInvalid",
        }
    ]


def render(resource: Resource) -> dict[str, Any]:
    spec_schema = openapi_schema(resource.spec)
    if not resource.api_defaults:
        spec_schema = _defaults_described(spec_schema)
    status_schema = openapi_schema(resource.status)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": resource.crd_name,
            "labels": {"app.kubernetes.io/part-of": "mailferry"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": list(resource.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _with_message(resource.columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (resource.spec.__doc__ or "").strip() or None,
                            "required": ["spec"],
                            "x-kubernetes-validations": _name_rules(resource),
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def _strip_none(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_none(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_strip_none(v) for v in node]
    return node


def dump(resource: Resource) -> str:
    header = "# Generated from mailferry_api models by `python -m mailferry_api.crd`; do not edit.\n"
    return header + yaml.safe_dump(
        _strip_none(render(resource)), sort_keys=False, width=120, allow_unicode=True
    )


def write_all(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for resource in RESOURCES:
        path = outdir / f"{resource.crd_name}.yaml"
        path.write_text(dump(resource))
        written.append(path)
    return written


def main() -> None:
    outdir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "crds"
    for path in write_all(outdir):
        print(path)


if __name__ == "__main__":
    main()
