"""Structured logs: one JSON object per line on stderr (MAILFERRY_LOG_FORMAT=json) or key=value text."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from . import settings

SECRET_WORDS = ("password", "token", "secret", "authorization", "assertion")


def log(event: str, level: str = "info", **fields: Any) -> None:
    record: dict[str, Any] = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "event": event,
    }
    for k, v in fields.items():
        if any(w in k.lower() for w in SECRET_WORDS):
            continue
        record[k] = v
    if settings.current().log_format == "json":
        line = json.dumps(record, default=str, ensure_ascii=False)
    else:
        line = " ".join(f"{k}={v}" for k, v in record.items())
    print(line, file=sys.stderr, flush=True)
