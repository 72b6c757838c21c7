"""Every log line names its object as namespace/Kind/name.

Kopf's object loggers carry `k8s_ref`; the operator's module loggers (`mailferry.*`, the DNS providers,
the probes) did not, so a line about a failure could not be told apart between objects. A handler binds
the object it works on (`bind`), a context variable every task it starts inherits; the filter gives
each record without a reference the bound one, and the text formatter puts it in front of the message
(Kopf's own prefix had no kind). The JSON format carries the reference as Kopf's `object` field.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

_current: ContextVar[dict[str, str] | None] = ContextVar("mailferry_object", default=None)
TEXT_FORMAT = "[%(asctime)s] %(name)-20.20s [%(levelname)-8.8s] %(message)s"


def bind(namespace: str, kind: str, name: str) -> None:
    """The object this task (and every task it starts) works on."""
    _current.set({"namespace": namespace, "kind": kind, "name": name})


class ObjectFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "k8s_ref", None) is None:
            ref = _current.get()
            if ref is not None:
                record.k8s_ref = ref
        return True


def object_label(ref: dict[str, Any]) -> str:
    parts = [ref.get("namespace") or "", ref.get("kind") or "", ref.get("name") or ""]
    return "/".join(p for p in parts if p)


class ObjectTextFormatter(logging.Formatter):
    """`[time] logger [LEVEL] [namespace/Kind/name] message`."""

    def format(self, record: logging.LogRecord) -> str:
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            record = logging.makeLogRecord(record.__dict__)
            record.msg = f"[{object_label(ref)}] {record.msg}"
        return super().format(record)


def install(text: bool) -> None:
    """On the root logger's handlers (kopf.configure made them): the filter, and for text our formatter."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(ObjectFilter())
        if text:
            handler.setFormatter(ObjectTextFormatter(TEXT_FORMAT))
