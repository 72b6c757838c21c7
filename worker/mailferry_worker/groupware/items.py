"""What one contact or calendar object is: its UID, a fingerprint that survives re-serialisation, and what a
destination cannot hold. iCalendar is read with `icalendar` (RFC 5545, maintained by the collective/Plone
people, the parser Radicale's peers use); vCard with `vobject` (vCard 3/4, the parser Radicale itself
stores with). The bytes copied are the source's own: parsing only decides, it never rewrites an item.
Both are imported on first use: a no-op round parses nothing, and they cost ~0.7 s of start-up.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mailferry_api.groupware import CollectionKind

if TYPE_CHECKING:
    import icalendar

# Properties a server may rewrite on store without the item changing for a person.
VOLATILE = {"PRODID"}


class BadItem(ValueError):
    """The item does not parse as iCalendar/vCard (reported per item, never copied half)."""


@dataclass
class ItemFacts:
    uid: str | None
    fingerprint: str
    components: set[str] = field(default_factory=set)
    recurrence_overrides: int = 0
    has_photo: bool = False


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()


def _ical_component(comp: icalendar.cal.Component) -> str:
    lines: list[str] = []
    for name, value in comp.property_items(recursive=False, sorted=False):
        if name in ("BEGIN", "END") or name in VOLATILE:
            continue
        params = getattr(value, "params", {}) or {}
        p = ";".join(f"{k.upper()}={params[k]}" for k in sorted(params))
        raw = value.to_ical() if hasattr(value, "to_ical") else str(value)
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        lines.append(f"{name}[{p}]:{text}")
    subs = [_ical_component(c) for c in comp.subcomponents]
    return f"{comp.name}{{{_digest(lines)}|{_digest(subs)}}}"


def ical_facts(data: str) -> ItemFacts:
    import icalendar

    try:
        cal = icalendar.Calendar.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError, IndexError, KeyError, ... on bad input
        raise BadItem(f"not iCalendar: {type(exc).__name__}: {str(exc)[:200]}") from None
    uids: set[str] = set()
    comps: set[str] = set()
    overrides = 0
    for sub in cal.subcomponents:
        if sub.name == "VTIMEZONE":
            continue
        comps.add(str(sub.name))
        if "UID" in sub:
            uids.add(str(sub["UID"]))
        if "RECURRENCE-ID" in sub:
            overrides += 1
    if len(uids) > 1:
        raise BadItem(f"one calendar object holds {len(uids)} UIDs (RFC 4791 §4.1 allows one)")
    return ItemFacts(next(iter(uids), None), _ical_component(cal), comps, overrides)


def _vcard_value(value: object) -> str:
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, list):
        return ",".join(_vcard_value(v) for v in value)
    return str(value)


def vcard_facts(data: str) -> ItemFacts:
    import vobject

    try:
        card: Any = vobject.readOne(data)
    except Exception as exc:  # vobject raises ParseError, ValueError, binascii errors, ...
        raise BadItem(f"not vCard: {str(exc)[:200]}") from None
    lines: list[str] = []
    uid: str | None = None
    photo = False
    for child in card.getChildren():
        name = child.name.upper()
        if name in VOLATILE or name == "VERSION":
            continue
        if name == "UID":
            uid = str(child.value)
        if name in ("PHOTO", "LOGO"):
            photo = True
        params = ";".join(
            f"{k.upper()}={','.join(sorted(str(x).upper() for x in v))}"
            for k, v in sorted(child.params.items())
        )
        lines.append(f"{name}[{params}]:{_vcard_value(child.value)}")
    return ItemFacts(uid, "VCARD{" + _digest(lines) + "}", {"VCARD"}, 0, photo)


def facts(kind: CollectionKind, data: str) -> ItemFacts:
    return ical_facts(data) if kind == "calendars" else vcard_facts(data)


@dataclass
class ItemShape:
    """What a copy needs to know of an item before writing it (no fingerprint: that is verify's and ETag
    mode's, which parse in full)."""

    uid: str | None
    components: set[str]


_ESCAPED = re.compile(r"\\([\\,;nN])")


def _value(line: str) -> str:
    """A content line's value: after the first ':' outside a quoted parameter (RFC 5545 §3.1)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return _ESCAPED.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), line[i + 1 :])
    raise BadItem(f"a content line without a value: {line[:80]!r}")


def shape(kind: CollectionKind, data: str) -> ItemShape:
    """The item's UID and components from its content lines alone (unfolded, BEGIN/END balanced, one
    UID), ~20x cheaper than a full parse: the copy path runs this per item, and the destination server
    still parses what it stores (a value it refuses comes back as a per-item DavRequestRejected)."""
    outer = "VCALENDAR" if kind == "calendars" else "VCARD"
    what = "iCalendar" if kind == "calendars" else "vCard"
    lines = data.replace("\r\n", "\n").replace("\r", "\n").replace("\n ", "").replace("\n\t", "").split("\n")
    stack: list[str] = []
    uids: set[str] = set()
    comps: set[str] = set()
    closed = False
    for line in lines:
        if not line.strip():
            continue
        if ":" not in line:
            raise BadItem(f"a content line without a value: {line[:80]!r}")
        if closed:
            raise BadItem(f"content after END:{outer}")
        name = line.split(":", 1)[0].split(";", 1)[0].strip().upper()
        if name == "BEGIN":
            comp = _value(line).strip().upper()
            if not stack and comp != outer:
                raise BadItem(f"not {what}: starts with BEGIN:{comp}")
            if len(stack) == 1 and kind == "calendars" and comp != "VTIMEZONE":
                comps.add(comp)
            stack.append(comp)
        elif name == "END":
            comp = _value(line).strip().upper()
            if not stack or stack.pop() != comp:
                raise BadItem(f"END:{comp} does not close the open component")
            closed = not stack
        elif not stack:
            raise BadItem(f"not {what}: a line before BEGIN:{outer}")
        elif name == "UID" and len(stack) == (2 if kind == "calendars" else 1) and stack[-1] != "VTIMEZONE":
            uids.add(_value(line).strip())
    if not closed:
        raise BadItem(f"no END:{outer}")
    if len(uids) > 1:
        raise BadItem(f"one calendar object holds {len(uids)} UIDs (RFC 4791 §4.1 allows one)")
    return ItemShape(next(iter(uids), None), comps if kind == "calendars" else {"VCARD"})


def unsupported(
    kind: CollectionKind, item: ItemFacts | ItemShape, size: int, dest_components: set[str], max_bytes: int
) -> str | None:
    """Why the destination cannot hold `item` (a reason for the per-item report), or None."""
    if size > max_bytes:
        return "ItemTooLarge"
    if kind == "calendars" and dest_components and not item.components <= dest_components:
        return "ComponentNotSupported"
    if item.uid is None:
        return "MissingUid"
    return None
