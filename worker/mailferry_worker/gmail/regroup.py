"""`mailferry verify` with a Gmail source: per message, not per folder (pure).

The views (views.py) are compared folder by folder like any source, but by the labels of the moment of
the verify. A message whose labels changed since it was copied is then "missing" in its new home and an
"extra" copy in the folder it was placed in: one message, present once, no difference. ``regroup`` pairs
such missing/extra entries across folders by message identity (Message-ID and size; a message without a
Message-ID cannot be told apart that way and stays a difference) and moves them to ``placed_elsewhere``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..verify import FolderReport

_IDENTITY = re.compile(r"size=(\d+) message-id=(\S+)$")


def identity(entry: str) -> str | None:
    """(size, Message-ID) of a report line ``[copy ]uid=N size=S message-id=M``; None without an id."""
    m = _IDENTITY.search(entry)
    if m is None or m.group(2) == "-":
        return None
    return f"{m.group(1)} {m.group(2)}"


def regroup(reports: Sequence[FolderReport]) -> int:
    """Pair each missing message with an extra copy of it in another folder; both leave the
    differences (the missing one is listed in its folder's ``placed_elsewhere``). Returns the pairs."""
    extra: dict[str, list[tuple[FolderReport, str]]] = defaultdict(list)
    for r in reports:
        for e in r.extra:
            key = identity(e)
            if key is not None:
                extra[key].append((r, e))
    pairs = 0
    for r in reports:
        kept: list[str] = []
        for miss in r.missing:
            key = identity(miss)
            found = next(((o, e) for o, e in extra.get(key or "", []) if o is not r), None) if key else None
            if found is None:
                kept.append(miss)
                continue
            other, e = found
            extra[key].remove(found)  # type: ignore[index]
            other.extra.remove(e)
            other.extra_copies -= e.startswith("copy ")
            r.placed_elsewhere.append(f"{miss} in {other.destination!r}")
            pairs += 1
        r.missing = kept
    return pairs


__all__ = ["identity", "regroup"]
