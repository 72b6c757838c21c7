"""The one small interface every DNS provider implements: read an RRset, replace a whole RRset.

`replace(rrset)` is atomic per RRset (one request/UPDATE message); an RRset with no records
deletes it. Transient failures (HTTP 5xx/429, timeouts, REFUSED/SERVFAIL) are retried with
backoff by `with_retries`; what is left is raised as `ProviderError` with a reason a person
can act on. Messages never carry credentials.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from mailferry_api.dnscutover import RRset
from mailferry_api.problems import ProblemError

from ... import metrics

T = TypeVar("T")
log = logging.getLogger(__name__)
Keep = Callable[[RRset | None], RRset]  # the RRset as the provider holds it -> the RRset to write


def to_write(rrset: RRset, keep: Keep | None, current: RRset | None) -> RRset:
    """What replace() writes: `rrset`, or what `keep` makes of it given the provider's current RRset."""
    return rrset if keep is None else keep(current)


class ProviderError(ProblemError):
    """A DNS provider call failed; `reason` names how (the message never holds a credential)."""

    def __init__(self, reason: str, message: str, transient: bool = False) -> None:
        super().__init__(message, reason, transient)


class DnsProvider(Protocol):
    kind: str
    zone: str  # absolute, lower-case

    async def get(self, name: str, rtype: str) -> RRset | None: ...

    async def replace(self, rrset: RRset, keep: Keep | None = None) -> RRset:
        """Make the provider hold `rrset`; returns what it wrote. `keep`: given the RRset as the provider
        holds it when it writes (read again on every attempt), the RRset to write instead: what others
        added to a shared RRset stays. RFC 2136 makes the write conditional on that read."""
        ...

    async def check_zone(self) -> None:
        """Raise ProviderError(ZoneNotFound / ProviderUnreachable / ...) when the zone is not usable."""
        ...

    async def aclose(self) -> None: ...


class RetryPolicy:
    def __init__(self, attempts: int = 5, base_delay: float = 0.2, max_delay: float = 5.0) -> None:
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    def delay(self, attempt: int) -> float:
        d: float = min(self.max_delay, self.base_delay * (2**attempt))
        return d * (0.5 + random.random() / 2)


async def with_retries(
    kind: str, what: str, fn: Callable[[], Awaitable[T]], policy: RetryPolicy, write: bool = False
) -> T:
    last: ProviderError | None = None
    for attempt in range(policy.attempts):
        try:
            result = await fn()
            if write:
                metrics.dns_record_writes.labels(kind, "success").inc()
            return result
        except ProviderError as exc:
            last = exc
            if write:
                metrics.dns_record_writes.labels(kind, "retry" if exc.transient else "error").inc()
            if not exc.transient:
                raise
            log.info("%s: %s failed (%s), retry %d/%d", kind, what, exc.reason, attempt + 1, policy.attempts)
            await asyncio.sleep(policy.delay(attempt))
    assert last is not None
    raise last


async def get_many(provider: DnsProvider, keys: list[tuple[str, str]]) -> dict[tuple[str, str], RRset | None]:
    return {k: await provider.get(*k) for k in keys}
