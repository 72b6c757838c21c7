"""SPF records (RFC 7208): merge includes, count DNS lookups and void lookups. Pure, except the
optional `TxtLookup` callable the caller injects to follow includes recursively."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
LOOKUP_MECHANISMS = ("include", "a", "mx", "ptr", "exists")


class SpfError(ValueError):
    """The SPF record would break RFC 7208 limits (a spec problem, shown as a condition)."""


class LookupUnavailable(Exception):
    """The include target could not be resolved (timeout, SERVFAIL): counted, not followed."""


# Returns the TXT strings at a name; [] when the name exists without TXT; None for NXDOMAIN.
TxtLookup = Callable[[str], Awaitable[list[str] | None]]


def is_spf(value: str) -> bool:
    return value.lower() == "v=spf1" or value.lower().startswith("v=spf1 ")


def terms(record: str) -> list[str]:
    parts = record.split()
    return parts[1:] if parts and parts[0].lower() == "v=spf1" else parts


def _mechanism(term: str) -> tuple[str, str]:
    """(lower-case mechanism name without qualifier, argument after ':' or '=')."""
    t = term.lstrip("+-~?")
    for sep in (":", "=", "/"):
        if sep in t:
            name, _, arg = t.partition(sep)
            return name.lower(), arg if sep != "/" else ""
    return t.lower(), ""


def includes(record: str) -> list[str]:
    return [arg.lower().rstrip(".") for name, arg in map(_mechanism, terms(record)) if name == "include"]


def merge(existing: str | None, add: list[str], remove: list[str], all_qualifier: str | None) -> str:
    """One SPF record: `existing` with `add` includes appended before `all`/`redirect` and `remove`
    includes dropped; `all_qualifier` (e.g. "~all") replaces the existing all term when given. An
    existing `redirect=` is kept and then no `all` is added (RFC 7208 §6.1: an `all` would silence it)."""
    body = terms(existing) if existing else []
    removes = {r.lower().rstrip(".") for r in remove}
    kept: list[str] = []
    tail: list[str] = []
    for term in body:
        name, arg = _mechanism(term)
        if name == "include" and arg.lower().rstrip(".") in removes:
            continue
        if name in ("all", "redirect"):
            tail.append(term)
        else:
            kept.append(term)
    have = {arg.lower().rstrip(".") for name, arg in map(_mechanism, kept) if name == "include"}
    for inc in add:
        norm = inc.lower().rstrip(".")
        if norm not in have and norm not in removes:
            kept.append(f"include:{norm}")
            have.add(norm)
    redirect = [t for t in tail if _mechanism(t)[0] == "redirect"]
    if redirect:
        tail = redirect
    elif all_qualifier is not None:
        tail = [all_qualifier]
    elif not tail:
        tail = ["~all"]
    return " ".join(["v=spf1", *kept, *tail])


@dataclass
class LookupCount:
    lookups: int = 0
    void: int = 0
    unresolved: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.lookups > MAX_LOOKUPS:
            raise SpfError(f"SPF needs {self.lookups} DNS lookups; RFC 7208 allows {MAX_LOOKUPS}")
        if self.void > MAX_VOID_LOOKUPS:
            raise SpfError(f"SPF has {self.void} void lookups; RFC 7208 allows {MAX_VOID_LOOKUPS}")


async def count_lookups(record: str, lookup: TxtLookup | None = None, _depth: int = 0) -> LookupCount:
    """Lookups an evaluation of `record` costs: include/a/mx/ptr/exists/redirect count one each;
    includes and redirect are followed through `lookup` when given (their lookups add up)."""
    total = LookupCount()
    for term in terms(record):
        name, arg = _mechanism(term)
        if name not in (*LOOKUP_MECHANISMS, "redirect"):
            continue
        total.lookups += 1
        if name not in ("include", "redirect") or lookup is None or _depth > MAX_LOOKUPS:
            continue
        target = arg.rstrip(".")
        try:
            txts = await lookup(target)
        except LookupUnavailable:
            total.unresolved.append(target)
            continue
        spf = [t for t in (txts or []) if is_spf(t)]
        if txts is None or not spf:
            # RFC 7208 §5.2/§6.1: an include or redirect target without an SPF record is a permerror
            # for every message, not a void lookup: refuse it before it is published.
            what = "does not exist (NXDOMAIN)" if txts is None else "has no SPF record"
            term = f"redirect={target}" if name == "redirect" else f"include:{target}"
            raise SpfError(f"{term} {what}: every SPF check of the domain would fail (permerror)")
        nested = await count_lookups(spf[0], lookup, _depth + 1)
        total.lookups += nested.lookups
        total.void += nested.void
        total.unresolved.extend(nested.unresolved)
    return total
