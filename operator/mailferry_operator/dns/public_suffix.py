"""Public suffixes (co.uk, github.io, ...): no DnsCutover may switch one, whoever asks.

The list is the Public Suffix List as pinned by the `publicsuffixlist` package version in
pyproject.toml, read from the package's own file: offline, the same on every run. An unlisted top-level
label counts as public (the list's default rule `*`), so `test` is public and `example.test` is not.
"""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList


@functools.cache
def _list() -> PublicSuffixList:
    return PublicSuffixList()  # the packaged file, no download


def is_public_suffix(name: str) -> bool:
    """`name` (with or without the trailing dot) is itself a public suffix, including ICANN TLDs and
    private suffixes such as github.io."""
    return bool(_list().is_public(name.rstrip(".").lower()))
