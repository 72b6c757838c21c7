"""The CRD schemas and the pydantic models agree, field by field.

The walk below reads the models with Python's typing introspection (not through crd.py), so a bug in
the renderer, or a hand edit of a CRD, shows up as a disagreement: every model field appears in the
schema under its camelCase name with the right type, enum, bounds, pattern, default and required-ness,
and the schema has no property the models lack.
"""

from __future__ import annotations

import copy
import json
import re
import types
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from mailferry_api import crd
from mailferry_api.dnscutover import DNS_PHASES, DnsPhase
from mailferry_api.mailmigration import MailMigrationStatus
from support.model_types import constraints, unwrap

CRDS = Path(__file__).resolve().parents[3] / "crds"


def _committed_schema(resource: crd.Resource) -> dict[str, Any]:
    doc = yaml.safe_load((CRDS / f"{resource.crd_name}.yaml").read_text())
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


_LEN_KEYWORDS = {
    "string": ("minLength", "maxLength"),
    "array": ("minItems", "maxItems"),
    "object": ("minProperties", "maxProperties"),
}


def _check_constraints(expected: dict[str, Any], node: dict[str, Any], path: str) -> None:
    for key in ("minimum", "maximum", "pattern"):
        if key in expected:
            assert node.get(key) == expected[key], f"{path}: {key} {node.get(key)!r} != {expected[key]!r}"
    low, high = _LEN_KEYWORDS.get(node.get("type", ""), ("", ""))
    if "minLen" in expected:
        assert node.get(low) == expected["minLen"], f"{path}: {low}"
    if "maxLen" in expected:
        assert node.get(high) == expected["maxLen"], f"{path}: {high}"


def _check_type(
    tp: Any, metadata: list[Any], node: dict[str, Any], path: str, api_defaults: bool = True
) -> int:
    """Asserts `node` describes `tp`; returns the number of schema nodes checked."""
    tp, more = unwrap(tp)
    metadata = metadata + more
    _check_constraints(constraints(metadata), node, path)
    origin = get_origin(tp)
    if tp is Any:
        assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
        return 1
    if origin is Literal:
        assert node["type"] == "string", path
        assert node["enum"] == list(get_args(tp)), f"{path}: enum {node['enum']} != {get_args(tp)}"
        return 1
    if origin in (Union, types.UnionType):
        assert set(get_args(tp)) == {int, str}, f"{path}: only int-or-string unions are supported"
        assert node.get("x-kubernetes-int-or-string") is True, path
        return 1
    if origin is list:
        assert node["type"] == "array", path
        (item,) = get_args(tp)
        return 1 + _check_type(item, [], node["items"], f"{path}[]", api_defaults)
    if origin is dict:
        assert node["type"] == "object", path
        key, value = get_args(tp)
        assert key is str, path
        if value is Any:
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
            return 1
        return 1 + _check_type(value, [], node["additionalProperties"], f"{path}{{}}", api_defaults)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _check_model(tp, node, path, api_defaults)
    if tp is bool:
        assert node["type"] == "boolean", path
    elif tp is int:
        assert node["type"] == "integer", path
    elif tp is float:
        assert node["type"] == "number", path
    elif tp is datetime:
        assert (node["type"], node.get("format")) == ("string", "date-time"), path
    elif tp is date:
        assert (node["type"], node.get("format")) == ("string", "date"), path
    elif tp is str:
        assert node["type"] == "string", path
    else:  # pragma: no cover - a new kind of field needs a rule here
        raise AssertionError(f"{path}: no rule for {tp!r}")
    return 1


def _check_model(model: type[BaseModel], node: dict[str, Any], path: str, api_defaults: bool = True) -> int:
    """`api_defaults=False`: the schema declares no defaults and says the scalar ones in descriptions."""
    assert node["type"] == "object", path
    props: dict[str, Any] = node.get("properties", {})
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    schema_only, model_only = sorted(set(props) - set(fields)), sorted(set(fields) - set(props))
    assert not schema_only and not model_only, f"{path}: schema-only {schema_only}, model-only {model_only}"
    required = {alias for alias, info in fields.items() if info.is_required()}
    assert set(node.get("required", [])) == required, f"{path}: required"
    checked = 1
    for alias, info in fields.items():
        sub = props[alias]
        where = f"{path}.{alias}"
        checked += _check_type(info.annotation, list(info.metadata), sub, where, api_defaults)
        default = info.get_default(call_default_factory=True)
        if not api_defaults:
            assert "default" not in sub, f"{where}: a default the API server would apply"
            if isinstance(default, bool | int | float | str) and not info.is_required():
                said = f"Default: {json.dumps(default)}."
                assert said in sub.get("description", ""), f"{where}: description lacks {said!r}"
        elif isinstance(default, bool | int | float | str) and not info.is_required():
            assert sub.get("default") == default, f"{where}: default {sub.get('default')!r} != {default!r}"
        elif default is None:
            assert "default" not in sub, f"{where}: unexpected default"
        elif isinstance(default, BaseModel):
            # The API server fills the object in as pydantic does (its default + the fields' defaults).
            expected = _drop_empty(default.model_dump(mode="json", by_alias=True, exclude_none=True))
            assert _drop_empty(_apply_defaults(sub, None)) == expected, f"{where}: server default differs"
    return checked


def _apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Structural-schema defaulting as the API server does it (absent field with a default gets it)."""
    if value is None:
        value = copy.deepcopy(node.get("default"))
    if isinstance(value, dict) and "properties" in node:
        for name, prop in node["properties"].items():
            if name in value or "default" in prop:
                value[name] = _apply_defaults(prop, value.get(name))
    elif isinstance(value, list) and "items" in node:
        value = [_apply_defaults(node["items"], item) for item in value]
    return value


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v not in ([], {})}
    if isinstance(value, list):
        return [_drop_empty(v) for v in value]
    return value


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
@pytest.mark.parametrize("part", ["spec", "status"])
def test_schema_matches_model(resource: crd.Resource, part: str) -> None:
    schema = _committed_schema(resource)
    model = resource.spec if part == "spec" else resource.status
    checked = _check_model(model, schema["properties"][part], part, resource.api_defaults or part == "status")
    assert checked > 10  # the walk really went through the tree


@pytest.mark.parametrize("resource", crd.RESOURCES, ids=lambda r: r.kind)
def test_printer_columns_point_at_declared_fields(resource: crd.Resource) -> None:
    schema = _committed_schema(resource)
    for column in resource.columns:
        path = column["jsonPath"]
        if path.startswith(".metadata"):
            continue
        node = schema
        for part in re.sub(r"\[[^\]]*\]", "", path).lstrip(".").split("."):
            node = node["properties"][part]
            if node.get("type") == "array":
                node = node["items"]
        assert node["type"] == column["type"], f"{column['name']}: {path} is {node['type']}"


def test_walker_detects_disagreement() -> None:
    """The check can fail: a schema missing a field, or with a wrong enum, is reported."""
    schema = _committed_schema(crd.RESOURCES[0])["properties"]["status"]
    broken = yaml.safe_load(yaml.safe_dump(schema))
    del broken["properties"]["lag"]["properties"]["maxSeconds"]
    with pytest.raises(AssertionError, match="model-only"):
        _check_model(MailMigrationStatus, broken, "status")
    broken = yaml.safe_load(yaml.safe_dump(schema))
    broken["properties"]["phase"]["enum"].append("Bogus")
    with pytest.raises(AssertionError, match="enum"):
        _check_model(MailMigrationStatus, broken, "status")


def test_phase_constants_match_literals() -> None:
    assert tuple(get_args(DnsPhase)) == DNS_PHASES
