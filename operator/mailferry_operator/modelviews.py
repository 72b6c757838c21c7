"""Small immutable views of API objects, derived from their pydantic models.

The operator keeps one summary per MailboxSync in memory (10,000 of them at scale): a frozen, slotted
dataclass costs a fraction of a parsed pydantic model or the raw body. A view class only names the model
fields it keeps, as snake_case paths into the model (`"status.lag.pending_messages"`); the wire keys
(camelCase aliases), the parsing of each value and its default come from the model, and a path or type
that no longer matches the model fails at import, not silently as zeros at run time.

    @derived_from(MailboxSync)
    class MailboxView:
        name: str = meta("name")
        pending_messages: int = picked("status.lag.pending_messages")
"""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar, Union, dataclass_transform, get_args, get_origin, get_type_hints

from pydantic import BaseModel, TypeAdapter, ValidationError

V = TypeVar("V")
Getter = Callable[[Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class _Pick:
    path: str  # "status.lag.pending_messages": into the model; "metadata.<...>": raw
    limit: int | None = None  # keep at most this many characters of a string (memory)
    key: str | None = None  # metadata only: the label/annotation key


def picked(path: str, *, limit: int | None = None) -> Any:
    """A view field holding the model's field at `path` (snake_case, dotted)."""
    return _Pick(path, limit)


def meta(name: str) -> Any:
    """A view field holding `metadata.<name>` (not part of the models: every object has it)."""
    return _Pick(f"metadata.{name}")


def annotation(key: str) -> Any:
    """A view field holding the value of the annotation `key` ("" when absent)."""
    return _Pick("metadata.annotations", key=key)


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _without_none(tp: Any) -> Any:
    if not _is_optional(tp):
        return tp
    rest = tuple(a for a in get_args(tp) if a is not type(None))
    return rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 - built from a runtime tuple


def _model_of(tp: Any) -> type[BaseModel]:
    inner = _without_none(tp)
    if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
        raise TypeError(f"{tp!r} is not a model: a view path goes through nested models only")
    return inner


def _zero(tp: Any) -> Any:
    """The value a view holds when the object does not have the field: the type's empty value."""
    if _is_optional(tp):
        return None
    for kind in (str, int, float, bool, tuple):
        if tp is kind or get_origin(tp) is kind:
            return kind()
    raise TypeError(f"no empty value for {tp!r}: give the model field a default")


def _resolve(model: type[BaseModel], path: str, declared: Any) -> tuple[tuple[str, ...], Any]:
    """(wire keys, default) of a snake_case path into `model`, checked against the view's type."""
    keys: list[str] = []
    current: type[BaseModel] = model
    parts = path.split(".")
    info = None
    for i, part in enumerate(parts):
        info = current.model_fields.get(part)
        if info is None:
            raise AttributeError(f"{model.__name__} has no field {'.'.join(parts[: i + 1])}")
        keys.append(info.alias or part)
        if i < len(parts) - 1:
            current = _model_of(info.annotation)
    assert info is not None
    leaf = info.annotation
    if declared != leaf and _without_none(leaf) != declared:
        raise TypeError(f"view type {declared!r} does not match {model.__name__}.{path}: {leaf!r}")
    default = info.get_default(call_default_factory=True) if not info.is_required() else None
    return tuple(keys), default if default is not None else _zero(declared)


def _converter(declared: Any) -> Callable[[Any], Any]:
    """Value -> the view's type, raising ValueError/ValidationError when it does not fit. The common
    cases skip pydantic (10,000 MailboxSyncs, each view rebuilt on every status write of its worker):
    a plain int or str as is, a Literal by membership, an RFC 3339 string by fromisoformat."""
    adapter: TypeAdapter[Any] = TypeAdapter(declared)
    inner = _without_none(declared)
    if get_origin(inner) is Literal:
        allowed = frozenset(get_args(inner))

        def literal(value: Any) -> Any:
            if value in allowed:
                return value
            raise ValueError(value)

        return literal
    if inner in (int, str):

        def plain(value: Any) -> Any:
            return value if type(value) is inner else adapter.validate_python(value)

        return plain
    if inner is datetime:

        def moment(value: Any) -> Any:
            if isinstance(value, str):
                parsed = datetime.fromisoformat(value)
                return parsed if parsed.tzinfo is not None else adapter.validate_python(value)
            return adapter.validate_python(value)

        return moment
    return adapter.validate_python


def _getter(keys: tuple[str, ...], declared: Any, default: Any, limit: int | None) -> Getter:
    convert = _converter(declared)

    first, rest = keys[0], keys[1:]

    def get(body: Mapping[str, Any]) -> Any:
        value: Any = body.get(first)
        for key in rest:  # below the body, JSON objects are dicts (the C isinstance is the fast one)
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return default
        try:
            value = convert(value)
        except (ValueError, ValidationError):  # bad input in one field: it reads as empty, nothing crashes
            return default
        if limit is not None and isinstance(value, str):
            value = value[:limit]
        return value

    return get


def _meta_getter(pick: _Pick) -> Getter:
    name = pick.path.split(".", 1)[1]

    def get(body: Mapping[str, Any]) -> str:
        value = (body.get("metadata") or {}).get(name)
        if pick.key is not None:
            value = (value or {}).get(pick.key)
        return str(value or "")

    return get


@dataclass_transform(frozen_default=True)
def derived_from(model: type[BaseModel]) -> Callable[[type[V]], type[V]]:
    """Make the decorated class a frozen slotted dataclass whose `picked` fields follow `model`."""

    def build(cls: type[V]) -> type[V]:
        hints = get_type_hints(cls, vars(sys.modules[cls.__module__]), include_extras=False)
        getters: dict[str, Getter] = {}
        for name in cls.__annotations__:
            pick = cls.__dict__.get(name)
            if not isinstance(pick, _Pick):
                raise TypeError(
                    f"{cls.__name__}.{name}: every view field is picked(), meta() or annotation()"
                )
            if pick.path.startswith("metadata."):
                getters[name] = _meta_getter(pick)
                setattr(cls, name, "")
                continue
            keys, default = _resolve(model, pick.path, hints[name])
            getters[name] = _getter(keys, hints[name], default, pick.limit)
            setattr(cls, name, default)
        view = dataclasses.dataclass(frozen=True, slots=True)(cls)
        _GETTERS[view] = tuple(getters.values())
        return view

    return build


_GETTERS: dict[type, tuple[Getter, ...]] = {}  # in field order


def read_view(cls: type[V], body: Mapping[str, Any]) -> V:
    """The view of a raw API body (missing or malformed fields read as their defaults)."""
    return cls(*[get(body) for get in _GETTERS[cls]])
