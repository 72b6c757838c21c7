"""Types shared by the three resources: base model, conditions, references.

Field names follow Kubernetes camelCase on the wire; Python code uses snake_case.
`json_schema_extra` on a field or model carries what only the CRD needs (CEL
rules, list types); `mailferry_api.crd` turns the models into the CRDs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

API_GROUP = "mailferry.io"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

# RFC 1123 DNS name, as Kubernetes and DNS both accept it (no trailing dot).
DOMAIN_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]([-a-z0-9]*[a-z0-9])?$"
HOST_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$|^\[?[0-9a-fA-F:.]+\]?$"
# Go-style duration as users write it: 30s, 5m, 1h30m, 2d (days accepted for convenience).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
_DECIMAL = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
# resource.Quantity: a signed decimal with a binary (Ki..Ei), decimal (m, k..E) or exponent suffix.
QUANTITY_PATTERN = rf"^(\+|-)?{_DECIMAL}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_DECIMAL}))?$"
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
K8sName = Annotated[str, Field(pattern=K8S_NAME_PATTERN, min_length=1, max_length=253)]
SecretKey = Annotated[str, Field(pattern=SECRET_KEY_PATTERN, min_length=1, max_length=253)]

# Bounds that keep status objects small (etcd objects should stay well under 1.5 MiB).
MAX_CONDITIONS = 16
MAX_HISTORY = 20
MAX_ERRORS = 100


class ApiModel(BaseModel):
    """Base for every spec/status model: camelCase aliases, accepts both spellings."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        serialize_by_alias=True,
        # A field's docstring is its description in the CRD (`kubectl explain`).
        use_attribute_docstrings=True,
    )

    def to_api(self, *, defaults: bool = True) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optionals omitted; `defaults=False`: fields equal to
        their defaults omitted too."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=not defaults)


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """metav1.Condition, as the Kubernetes API conventions define it."""

    type: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=316)
    """Kind of condition: Ready, or one of the resource's own (e.g. Validated, InSync, GatesPassed)."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    """One CamelCase word for the cause; stable, so alerts and scripts can match it."""
    message: str = Field(default="", max_length=32768)
    """What happened and what to do about it, for a person."""
    last_transition_time: datetime | None = None
    """When the status last changed."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was computed for."""


def list_map(*keys: str) -> dict[str, JsonValue]:
    """`json_schema_extra` for a list of objects keyed by `keys` (unique; merged by key on apply)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=MAX_CONDITIONS,
        json_schema_extra=list_map("type"),
    ),
]


class SecretRef(ApiModel):
    """A Secret in the resource's own namespace."""

    name: K8sName
    """Name of a Secret in this resource's namespace."""


class LocalObjectRef(ApiModel):
    name: K8sName
    """Name of an object in this resource's namespace."""


class HistoryEntry(ApiModel):
    """One transition; status keeps the newest MAX_HISTORY entries."""

    time: datetime
    """When the transition happened."""
    phase: str = Field(max_length=64)
    """The phase entered."""
    reason: str = Field(max_length=128)
    """Why, as one CamelCase word."""
    message: str = Field(default="", max_length=1024)
    """Why, in words."""


History = Annotated[list[HistoryEntry], Field(max_length=MAX_HISTORY)]


class ErrorInfo(ApiModel):
    """The last error of something, in words a person can act on."""

    reason: str = Field(max_length=128)
    """The error's kind, as one CamelCase word (e.g. AuthenticationFailed, Throttled)."""
    message: str = Field(default="", max_length=4096)
    """What went wrong and what to do; never holds a credential."""
    time: datetime | None = None
    """When it happened."""


def kopf_status_field() -> Any:
    """`status.kopf`: Kopf keeps handler progress here; declared so pruning keeps it."""
    return Field(
        default=None,
        description="Kopf's handler progress (the operator's own bookkeeping).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
