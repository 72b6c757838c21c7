"""The mailbox inventory: inline entries, or a ConfigMap with CSV or JSON, up to MAX_ROWS rows.

Bad rows are reported one by one (line number, reason) and skipped; the valid rows go on.
Errors are bounded in status (MAX_ERRORS) while the counts stay complete.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailferry_api.common import MAX_ERRORS, SECRET_KEY_PATTERN
from mailferry_api.imap import default_secret_key
from mailferry_api.mailmigration import InventoryError, InventoryStatus, MailboxEntry

__all__ = ["Inventory", "default_secret_key", "from_entries", "parse_csv", "parse_json", "parse_text"]

MAX_ROWS = 10_000
_ADDRESS = re.compile(r"^[^\s@,;\"<>]+@[^\s@,;\"<>]+\.[^\s@,;\"<>]+$|^[^\s@,;\"<>]+$")
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)
_HEADER_WORDS = {"source", "src", "from", "mailbox", "email"}


@dataclass
class Inventory:
    entries: list[MailboxEntry] = field(default_factory=list)
    total: int = 0
    errors: list[InventoryError] = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(InventoryError(line=line, reason=reason[:256]))

    def status(self) -> InventoryStatus:
        return InventoryStatus(
            total=self.total, valid=len(self.entries), invalid=self.error_count, errors=list(self.errors)
        )


def _check(source: str, destination: str | None, secret_key: str | None) -> str | None:
    if not source:
        return "source is empty"
    if len(source) > 320 or not _ADDRESS.match(source):
        return f"source {source[:80]!r} is not a mailbox address"
    if destination is not None and (len(destination) > 320 or not _ADDRESS.match(destination)):
        return f"destination {destination[:80]!r} is not a mailbox address"
    key = secret_key if secret_key is not None else default_secret_key(source)
    if len(key) > 253 or not _SECRET_KEY.match(key):
        return f"secretKey {key[:80]!r} is not a valid Secret key (letters, digits, '-', '_', '.')"
    return None


def _add_rows(inv: Inventory, rows: Iterable[tuple[int, str, str | None, str | None]]) -> Inventory:
    seen_source: dict[str, int] = {}
    seen_destination: dict[str, int] = {}
    for line, source, destination, secret_key in rows:
        inv.total += 1
        if inv.total > MAX_ROWS:
            inv.error(line, f"inventory has more than {MAX_ROWS} rows; row ignored")
            continue
        problem = _check(source, destination, secret_key)
        if problem:
            inv.error(line, problem)
            continue
        src_key = source.lower()
        dst_key = (destination or source).lower()
        if src_key in seen_source:
            inv.error(line, f"duplicate source {source} (first on line {seen_source[src_key]})")
            continue
        if dst_key in seen_destination:
            inv.error(
                line,
                f"duplicate destination {destination or source} (first on line {seen_destination[dst_key]})",
            )
            continue
        seen_source[src_key] = line
        seen_destination[dst_key] = line
        inv.entries.append(MailboxEntry(source=source, destination=destination, secret_key=secret_key))
    return inv


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_csv(text: str) -> Inventory:
    """`source,destination[,secretKey]` per line; optional header; `#` comments and blank lines skipped."""
    inv = Inventory()

    def rows() -> Iterable[tuple[int, str, str | None, str | None]]:
        reader = csv.reader(io.StringIO(text), skipinitialspace=True)
        first = True
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if first and cells[0].strip().lower() in _HEADER_WORDS:
                first = False
                continue
            first = False
            if len(cells) > 3:
                inv.total += 1
                inv.error(
                    line, f"expected at most 3 columns (source,destination,secretKey), got {len(cells)}"
                )
                continue
            padded = [*cells, "", ""][:3]
            yield line, (padded[0] or "").strip(), _cell(padded[1]), _cell(padded[2])

    try:
        return _add_rows(inv, rows())
    except csv.Error as exc:
        inv.error(0, f"CSV could not be read: {exc}")
        return inv


def parse_json(text: str) -> Inventory:
    """A list of `{source, destination, secretKey}` (or `{"mailboxes": [...]}`); line = 1-based item index."""
    inv = Inventory()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        inv.error(exc.lineno, f"JSON could not be read: {exc.msg}")
        return inv
    if isinstance(data, dict) and isinstance(data.get("mailboxes"), list):
        data = data["mailboxes"]
    if not isinstance(data, list):
        inv.error(0, "JSON inventory must be a list of {source, destination, secretKey} objects")
        return inv

    def rows() -> Iterable[tuple[int, str, str | None, str | None]]:
        for index, item in enumerate(data, start=1):
            if isinstance(item, str):
                yield index, item.strip(), None, None
            elif isinstance(item, dict):
                key = item.get("secretKey", item.get("secret_key"))
                yield index, str(item.get("source") or "").strip(), _cell(item.get("destination")), _cell(key)
            else:
                inv.total += 1
                inv.error(index, "item is neither an object nor an address string")

    return _add_rows(inv, rows())


def parse_text(text: str, fmt: str = "auto") -> Inventory:
    if fmt == "json" or (fmt == "auto" and text.lstrip()[:1] in ("[", "{")):
        return parse_json(text)
    return parse_csv(text)


def from_entries(entries: Sequence[MailboxEntry | dict[str, Any]]) -> Inventory:
    """Inline `spec.mailboxes`: the same checks (duplicates), line = 1-based list index."""

    def rows() -> Iterable[tuple[int, str, str | None, str | None]]:
        for index, item in enumerate(entries, start=1):
            if isinstance(item, MailboxEntry):
                yield index, item.source, item.destination, item.secret_key
            else:
                key = item.get("secretKey", item.get("secret_key"))
                yield index, str(item.get("source") or "").strip(), _cell(item.get("destination")), _cell(key)

    return _add_rows(Inventory(), rows())
