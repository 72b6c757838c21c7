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

from pydantic import ValidationError

from mailferry_api.common import MAX_ERRORS, SECRET_KEY_PATTERN
from mailferry_api.imap import default_secret_key
from mailferry_api.mailmigration import InventoryError, InventoryStatus, MailboxEntry

__all__ = ["Inventory", "default_secret_key", "from_entries", "parse_csv", "parse_json", "parse_text"]

MAX_ROWS = 10_000
_NOT_IN_ADDRESS = r"\s@,;\"<>\x00-\x1f\x7f"
_ADDRESS = re.compile(
    rf"^[^{_NOT_IN_ADDRESS}]+@[^{_NOT_IN_ADDRESS}]+\.[^{_NOT_IN_ADDRESS}]+$|^[^{_NOT_IN_ADDRESS}]+$"
)
_SECRET_KEY = re.compile(SECRET_KEY_PATTERN)
# CSV header words (lower case, letters and digits only) -> column role
_SOURCE_WORDS = {
    "source",
    "src",
    "from",
    "mailbox",
    "email",
    "address",
    "user",
    "username",
    "login",
    "sourceemail",
    "sourceaddress",
    "sourcemailbox",
    "sourceuser",
    "olduser",
    "oldemail",
    "oldaddress",
}
_DESTINATION_WORDS = {
    "destination",
    "dest",
    "dst",
    "to",
    "target",
    "newemail",
    "newaddress",
    "newuser",
    "newmailbox",
    "destinationemail",
    "destinationaddress",
    "destinationmailbox",
    "destinationuser",
}
_KEY_WORDS = {"secretkey", "key", "passwordkey"}
# The notice cohort (issue 18): a department, "pilot", shared-mailbox owners; see cohort_name().
_COHORT_WORDS = {"cohort", "group", "department", "dept", "team", "tag", "wave"}
_PASSWORD_WORDS = {
    "password",
    "passwords",
    "pass",
    "passwd",
    "pw",
    "pwd",
    "secret",
    "token",
    "credential",
    "credentials",
    "sourcepassword",
    "destinationpassword",
    "oldpassword",
    "newpassword",
}
INVALID = "InventoryInvalid"


Row = tuple[int, str, str | None, str | None, str | None]  # line, source, destination, secretKey, cohort


def cohort_name(value: str | None) -> str | None:
    """A cohort as a notice plan names it: lower case, letters, digits and '-'
    ('Sales EMEA' -> 'sales-emea')."""
    if value is None:
        return None
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", value.lower())).strip("-")[:40].strip("-")
    return cleaned or None


@dataclass
class Inventory:
    entries: list[MailboxEntry] = field(default_factory=list)
    total: int = 0
    errors: list[InventoryError] = field(default_factory=list)
    error_count: int = 0
    # The inventory as a whole cannot be used (not UTF-8, not a list, a password column...): reason, message.
    problem: tuple[str, str] | None = None

    def fail(self, message: str, line: int = 0) -> Inventory:
        self.error(line, message)
        self.problem = (INVALID, message)
        return self

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
        # shown only when it looks like an address: a shifted column may hold a password
        shown = f" {destination[:80]!r}" if "@" in destination else " (value not shown)"
        return f"destination{shown} is not a mailbox address"
    if secret_key is None:
        key = default_secret_key(source)
        if len(key) > 253 or not _SECRET_KEY.match(key):
            return (
                f"the default secretKey {key[:80]!r} (the login with '@' as '_') is not a valid Secret key "
                "(letters, digits, '-', '_', '.'): give the row a secretKey"
            )
    elif len(secret_key) > 253 or not _SECRET_KEY.match(secret_key):
        return "secretKey (value not shown) is not a valid Secret key (letters, digits, '-', '_', '.')"
    return None


def _add_rows(inv: Inventory, rows: Iterable[Row]) -> Inventory:
    seen_source: dict[str, int] = {}
    seen_destination: dict[str, int] = {}
    for line, source, destination, secret_key, cohort in rows:
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
        try:  # the model that reads the row later decides here too: a row it refuses is an error now
            entry = MailboxEntry(
                source=source, destination=destination, secret_key=secret_key, cohort=cohort_name(cohort)
            )
        except ValidationError as exc:
            inv.error(line, _model_reason(exc))
            continue
        seen_source[src_key] = line
        seen_destination[dst_key] = line
        inv.entries.append(entry)
    return inv


def _model_reason(exc: ValidationError) -> str:
    """The first thing MailboxEntry refuses, by field, without the value (a shifted column may hold a
    password)."""
    first = exc.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "row"
    return f"{where}: {first.get('msg', 'invalid')}"


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _word(cell: str) -> str:
    return re.sub(r"[^a-z0-9]", "", cell.lower())


def header_roles(cells: list[str]) -> tuple[dict[str, int] | None, str | None]:
    """(role -> column, problem) when `cells` is a header row; (None, None) when it is data.

    A header has no '@' and at least one known column name. Unknown names are refused (a shifted or
    foreign export would otherwise be read as addresses), and so is a password column: passwords
    belong in the Secret, never in a ConfigMap."""
    words = [_word(c) for c in cells]
    known = _SOURCE_WORDS | _DESTINATION_WORDS | _KEY_WORDS | _COHORT_WORDS | _PASSWORD_WORDS
    if any("@" in c for c in cells) or not any(w in known for w in words):
        return None, None
    roles: dict[str, int] = {}
    for index, (cell, word) in enumerate(zip(cells, words, strict=True), start=1):
        if not word:
            if cell.strip():
                return None, f"CSV header column {index} {cell.strip()[:40]!r} is not a column name"
            continue
        if word in _PASSWORD_WORDS:
            return None, (
                f"CSV header column {index} {cell.strip()[:40]!r}: passwords do not belong in the inventory "
                "(a ConfigMap); put them in the Secret of spec.source/destination.auth.secretRef and "
                "remove the column (the inventory was not read)"
            )
        role = (
            "source"
            if word in _SOURCE_WORDS
            else "destination"
            if word in _DESTINATION_WORDS
            else "secretKey"
            if word in _KEY_WORDS
            else "cohort"
            if word in _COHORT_WORDS
            else None
        )
        if role is None:
            return None, (
                f"CSV header column {index} {cell.strip()[:40]!r} is not one of "
                "source, destination, secretKey, cohort"
            )
        if role in roles:
            return None, f"CSV header names the {role} column twice (columns {roles[role] + 1} and {index})"
        roles[role] = index - 1
    if "source" not in roles:
        return None, "CSV header has no source column (source, destination, secretKey)"
    return roles, None


def parse_csv(text: str) -> Inventory:
    """`source,destination[,secretKey]` per line; optional header (columns by name, any order);
    `#` comments and blank lines skipped."""
    inv = Inventory()
    roles: dict[str, int] = {"source": 0, "destination": 1, "secretKey": 2}
    width = 3
    named = False  # a header row named the columns

    def rows() -> Iterable[Row]:
        nonlocal roles, width, named
        # newline=None: CR-only (old Mac) and CRLF line ends read like LF
        reader = csv.reader(io.StringIO(text, newline=None), skipinitialspace=True)
        first = True
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if first:
                first = False
                found, problem = header_roles(cells)
                if problem is not None:
                    inv.fail(problem, line)
                    return
                if found is not None:
                    roles, width, named = found, len(cells), True
                    continue
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                inv.total += 1
                inv.error(
                    line, f"expected at most {width} columns (source,destination,secretKey), got {len(cells)}"
                )
                continue
            padded = [*cells, *([""] * width)]
            dest = padded[roles["destination"]] if "destination" in roles else None
            key = padded[roles["secretKey"]] if "secretKey" in roles else None
            cohort = padded[roles["cohort"]] if "cohort" in roles else None
            source = (padded[roles["source"]] or "").strip()
            dest_cell = _cell(dest)
            if (
                not named
                and dest_cell is not None
                and ("@" in source) != ("@" in dest_cell)
                and _check(source, dest_cell, _cell(key)) is None
            ):
                # without a header, an address next to a non-address is more often a password or a
                # shifted column than a bare login: ask for the header that says what the columns are
                inv.total += 1
                inv.error(
                    line,
                    "column 1 and column 2 are not both addresses (or both bare logins): give the CSV a "
                    "header (source,destination[,secretKey]) if that is meant; passwords belong in the "
                    "Secret",
                )
                continue
            yield line, source, dest_cell, _cell(key), _cell(cohort)

    try:
        return _add_rows(inv, rows())
    except csv.Error as exc:
        return inv.fail(f"CSV could not be read: {exc}")


def parse_json(text: str) -> Inventory:
    """A list of `{source, destination, secretKey}` (or `{"mailboxes": [...]}`); line = 1-based item index."""
    inv = Inventory()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return inv.fail(
            f"JSON could not be read: {exc.msg} at line {exc.lineno} column {exc.colno}", exc.lineno
        )
    if isinstance(data, dict) and isinstance(data.get("mailboxes"), list):
        data = data["mailboxes"]
    if not isinstance(data, list):
        kind = {dict: "an object", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        shape = '[{"source": ..., "destination": ..., "secretKey": ...}, ...] (or {"mailboxes": [...]})'
        return inv.fail(f"JSON inventory is {kind.get(type(data), 'null')}, not a list: write {shape}")

    def rows() -> Iterable[Row]:
        for index, item in enumerate(data, start=1):
            if isinstance(item, str):
                yield index, item.strip(), None, None, None
            elif isinstance(item, dict):
                key = item.get("secretKey", item.get("secret_key"))
                source = str(item.get("source") or "").strip()
                yield index, source, _cell(item.get("destination")), _cell(key), _cell(item.get("cohort"))
            else:
                inv.total += 1
                inv.error(index, "item is neither an object nor an address string")

    return _add_rows(inv, rows())


def parse_text(text: str, fmt: str = "auto") -> Inventory:
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark from a spreadsheet export
    if "\x00" in text:
        return Inventory().fail("the inventory contains NUL bytes: it is binary data, not CSV or JSON text")
    if not text.strip():
        return Inventory().fail("the inventory is empty")
    if fmt == "json" or (fmt == "auto" and text.lstrip()[:1] in ("[", "{")):
        return parse_json(text)
    return parse_csv(text)


def decode(raw: bytes) -> str | Inventory:
    """ConfigMap binaryData (kubectl puts a file that is not UTF-8 there) -> text, or a failed Inventory."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return Inventory().fail("the inventory is UTF-16 text: save it as UTF-8")
    if raw[:2] == b"\x1f\x8b":
        return Inventory().fail("the inventory is gzip-compressed: store the CSV or JSON text itself")
    if b"\x00" in raw[:65536]:
        return Inventory().fail("the inventory contains NUL bytes: it is binary data, not CSV or JSON text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Inventory().fail(
            f"the inventory is not UTF-8 text (byte {exc.start + 1} is 0x{raw[exc.start]:02x}; "
            "a Latin-1/Windows-1252 export?): save it as UTF-8"
        )


def from_entries(entries: Sequence[MailboxEntry | dict[str, Any]]) -> Inventory:
    """Inline `spec.mailboxes`: the same checks (duplicates), line = 1-based list index."""

    def rows() -> Iterable[Row]:
        for index, item in enumerate(entries, start=1):
            if isinstance(item, MailboxEntry):
                yield index, item.source, item.destination, item.secret_key, item.cohort
            else:
                key = item.get("secretKey", item.get("secret_key"))
                source = str(item.get("source") or "").strip()
                yield index, source, _cell(item.get("destination")), _cell(key), _cell(item.get("cohort"))

    return _add_rows(Inventory(), rows())
