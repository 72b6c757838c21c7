"""Typed settings read once from `MAILFERRY_*` environment variables.

Each program (operator, worker) declares one frozen dataclass whose fields carry their variable's name
and a one-line description in `env(...)`; `load()` reads them all at start and `table()` renders the
documentation table (docs/configuration.md is generated from it, so the two cannot drift).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def env(var: str, default: Any, doc: str) -> Any:
    """A settings field read from `var` (a dataclass field with its default)."""
    return dataclasses.field(default=default, metadata={"env": var, "doc": doc})


def _parse(raw: str, default: Any, var: str) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            return raw.strip().lower() not in ("0", "false", "no", "off", "")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is tuple:
            return tuple(x.strip() for x in raw.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"{var}={raw!r} is not a valid {kind.__name__}") from None
    return raw


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """An instance of the settings dataclass `cls` from the environment (unset or empty: the default)."""
    source = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = f.metadata.get("env")
        raw = source.get(var, "") if var else ""
        if var and raw != "":
            values[f.name] = _parse(raw, f.default, var)
    return cls(**values)


def table(cls: type[Any]) -> str:
    """A Markdown table of the variables of `cls`: name, default, what it does."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if "env" in f.metadata:
            default = f.default
            shown = ",".join(default) if isinstance(default, tuple) else default
            rows.append(f"| `{f.metadata['env']}` | `{shown}` | {f.metadata['doc']} |")
    return "\n".join(rows)
