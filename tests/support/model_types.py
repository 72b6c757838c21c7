"""Reading pydantic model fields with Python's typing introspection (not through mailferry_api.crd).

Shared by tests/unit/api/test_api_schema_agreement.py (model vs CRD schema) and
tests/integration/api/test_api_status_roundtrip.py (sample status values within the field's bounds).
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo


def unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """Strip Annotated and Optional; collect the metadata on the way."""
    metadata: list[Any] = []
    while True:
        if get_origin(tp) is typing.Annotated:
            base, *extra = get_args(tp)
            metadata.extend(extra)
            tp = base
            continue
        if get_origin(tp) in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp, metadata


def constraints(metadata: list[Any]) -> dict[str, Any]:
    """The schema keywords a list of pydantic/annotated-types metadata implies (kind-neutral names:
    minimum, maximum, minLen, maxLen, pattern)."""
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            out.update(constraints(item.metadata))
            continue
        if isinstance(item, annotated_types.Ge):
            out["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            out["maximum"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            out["minLen"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            out["maxLen"] = item.max_length
        elif getattr(item, "pattern", None) is not None:
            out["pattern"] = item.pattern
    return out
