"""One writer per mailbox: a lease per MailboxSync, taken before the first write, renewed while copying.

Kubernetes may run a Job's pod twice (a node gone NotReady, a retry Job while the old pod terminates, a
person running the worker by hand); two writers of one mailbox duplicate every message they both copy.

- API store: a ``coordination.k8s.io/v1`` Lease named after the MailboxSync (``mailboxsync.<name>``),
  owned by it, that exists only while held (or after a holder died holding it). Taking a free mailbox is
  one POST (create); the API server lets only one create of a name succeed, the others get HTTP 409
  AlreadyExists and go the slow way: read, decide (held or expired), PUT with the resourceVersion read.
  Renewals are such PUTs too and the release is a DELETE preconditioned on the resourceVersion this
  worker last wrote, so two workers can never both take, renew or free it: the loser gets HTTP 409. A
  no-op round thus costs the Lease two requests per mailbox, not four. A separate object rather than
  fields on the MailboxSync because renewals then never race the checkpoint writes (which are merge
  patches without a resourceVersion, several per second), do not wake the operator's MailboxSync watch
  every few seconds, and ``kubectl get lease`` shows the holder with the standard fields.
- File store (development): ``fcntl.flock`` on ``<name>.lock`` next to the JSON file. The kernel drops it
  when the process dies; a stopped process keeps it, so nobody else writes meanwhile.

Fencing: ``check()`` raises LeaseLost once the local validity has passed (the last successful renewal,
measured on this process's monotonic clock from *before* the request, plus the lease duration minus a
margin for clock skew), whether or not a renewal could still succeed. The IMAP client calls it before every
command on the destination and the status store before every write, so a worker that was paused or cut
off past its lease stops before its next APPEND/STORE/EXPUNGE/MOVE and never writes the status the new
holder owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import random
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_kube.client import KubeApi, KubeError

from .logs import log

LEASE_PREFIX = "mailboxsync."
MAX_NAME = 253
# Renewed every third of the duration, retried every twelfth after a failure: the validity (three quarters)
# then leaves room for at least three more tries. A follower holds a thousand Leases for hours, and their
# renewals were most of the API server's requests when it renewed every sixth.
RENEW_EVERY = 1 / 3
RETRY_EVERY = 1 / 12
RENEW_JITTER = 0.7  # a renewal comes after 70-100 % of its interval


class AlreadyRunning(Exception):
    """Another worker holds this mailbox's lease: this one must not write."""

    reason = "AlreadyRunning"


class LeaseLost(Exception):
    """This worker's lease lapsed (paused, partitioned) or someone else took it: stop writing."""

    reason = "LeaseLost"


class MailboxLease(Protocol):
    async def acquire(self) -> None: ...

    def check(self) -> None: ...

    async def release(self) -> None: ...


def holder_identity() -> str:
    """Who holds a lease: the pod (HOSTNAME) and this process, unique even for two runs in one pod."""
    host = os.environ.get("HOSTNAME") or socket.gethostname()
    return f"{host[:100]}/{os.getpid()}/{secrets.token_hex(4)}"


def lease_name(mailboxsync: str) -> str:
    name = LEASE_PREFIX + mailboxsync
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(mailboxsync.encode()).hexdigest()[:16]
    return f"{name[: MAX_NAME - 17]}-{digest}"


def micro_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


Decision = Literal["take", "busy"]


def decide(spec: dict[str, Any], me: str, now: datetime) -> tuple[Decision, datetime | None]:
    """Whether a worker ``me`` may take a Lease whose spec is ``spec`` at wall time ``now``.

    Free (no holder), ours, or expired (renewTime + leaseDurationSeconds passed): take. Otherwise busy,
    with the time it expires unless renewed. A Lease without renewTime but with a holder counts as held
    for one duration from its acquireTime (or as expired when it has neither).
    """
    holder = spec.get("holderIdentity")
    if not holder or holder == me:
        return "take", None
    renewed = parse_micro_time(spec.get("renewTime")) or parse_micro_time(spec.get("acquireTime"))
    if renewed is None:
        return "take", None
    until = renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))
    return ("take", None) if now >= until else ("busy", until)


@dataclass
class Validity:
    """The local side of a lease: valid until a monotonic deadline."""

    duration: float
    margin: float
    until: float = 0.0
    lost: bool = False

    def renewed(self, started: float) -> None:
        self.until = started + self.duration - self.margin

    def check(self) -> None:
        if self.lost or time.monotonic() >= self.until:
            self.lost = True
            raise LeaseLost("this worker's lease on the mailbox lapsed or was taken over: it stops writing")


class KubeLease:
    """The Lease object of one MailboxSync, renewed in the background while held."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        mailboxsync: str,
        owner_uid: str | None,
        duration: int,
        identity: str | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.mailboxsync = mailboxsync
        self.name = lease_name(mailboxsync)
        self.owner_uid = owner_uid
        self.identity = identity or holder_identity()
        # Renewed every third of the duration; trusted for three quarters of it after the start of the
        # last successful renewal (the rest absorbs clock skew against the next holder's expiry check).
        self.validity = Validity(float(duration), max(1.0, duration / 4))
        self.duration = duration
        self._obj: dict[str, Any] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._held = False
        self._renewing = False  # a renewal PUT is on its way (its answer, a new resourceVersion, unseen)

    def check(self) -> None:
        self.validity.check()

    @property
    def held(self) -> bool:
        """Taken and not yet released or known lost (the local view; check() also asks the clock)."""
        return self._held and not self.validity.lost

    def _body(self, spec: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": "mailferry"},
        }
        if self.owner_uid:
            meta["ownerReferences"] = [
                {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": "MailboxSync",
                    "name": self.mailboxsync,
                    "uid": self.owner_uid,
                }
            ]
        if self._obj is not None:
            meta["resourceVersion"] = self._obj["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    async def _read(self) -> dict[str, Any]:
        try:
            self._obj = await self.api.get_lease(self.namespace, self.name)
        except KubeError as exc:
            if exc.status != 404:
                raise
            self._obj = None
        return (self._obj or {}).get("spec") or {}

    def _spec(self, now: datetime, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }

    def _held_since(self, started: float) -> None:
        self._held = True
        self.validity.renewed(started)
        self._renewer = asyncio.create_task(self._renew_loop())

    async def acquire(self) -> None:
        """Take the Lease: create it (free: one request), else take it over the slow way (_take_existing)."""
        started = time.monotonic()
        self._obj = None
        try:
            self._obj = await self.api.create_lease(
                self.namespace, self._body(self._spec(datetime.now(UTC), 0))
            )
        except KubeError as exc:
            if exc.status != 409:
                raise
            await self._take_existing()  # AlreadyExists: held, or left by a holder that died
            return
        self._held_since(started)

    async def _take_existing(self) -> None:
        """Take a Lease that exists. Held by someone else: wait while it may have died (a pod killed
        without giving the Lease back, whose retry starts at once); AlreadyRunning once the holder has
        renewed it twice since the first look (one renewal may be a dead holder's last request, still on
        its way), or when it stays held for two durations."""
        first = time.monotonic()
        seen: str | None = None
        renewals = 0
        while True:
            started = time.monotonic()
            now = datetime.now(UTC)
            old = await self._read()
            verdict, until = decide(old, self.identity, now)
            if verdict == "take":
                break
            renewed = str(old.get("renewTime"))
            renewals += seen is not None and renewed != seen
            if renewals >= 2 or started - first > 2 * self.duration + 2:
                raise AlreadyRunning(
                    f"worker {old.get('holderIdentity')} holds the mailbox (until {micro_time(until or now)} "
                    "unless it renews): this worker copies nothing"
                )
            if seen is None:
                log("lease_wait", mailboxsync=self.mailboxsync, holder=old.get("holderIdentity"))
            seen = renewed
            left = ((until or now) - now).total_seconds()
            await asyncio.sleep(min(max(0.2, left + 0.2), self.duration / 6))
        transitions = int(old.get("leaseTransitions") or 0) + (1 if old.get("holderIdentity") else 0)
        spec = self._spec(now, transitions)
        try:
            if self._obj is None:
                self._obj = await self.api.create_lease(self.namespace, self._body(spec))
            else:
                self._obj = await self.api.replace_lease(self.namespace, self.name, self._body(spec))
        except KubeError as exc:
            if exc.status in (409, 422) or exc.reason in ("AlreadyExists", "Conflict"):
                raise AlreadyRunning("another worker took the mailbox's lease at the same moment") from None
            raise
        self._held_since(started)

    async def _renew_loop(self) -> None:
        interval = self.duration * RENEW_EVERY
        while not self.validity.lost:
            # Jittered (never later than the interval): a follower takes a thousand Leases within
            # seconds, and renewing them in step would queue a thousand PUTs at once every interval.
            await asyncio.sleep(interval * random.uniform(RENEW_JITTER, 1.0))
            started = time.monotonic()
            if started >= self.validity.until:
                self.validity.lost = True  # lapsed (this process was paused): never renew a lapsed lease
                break
            assert self._obj is not None
            spec = dict(self._obj.get("spec") or {})
            spec["renewTime"] = micro_time(datetime.now(UTC))
            self._renewing = True  # until an answer says what became of this PUT
            try:
                # A PUT that hangs must not outlast the validity: the tries after it need the time.
                self._obj = await self.api.replace_lease(
                    self.namespace, self.name, self._body(spec), timeout=self.validity.until - started
                )
            except KubeError as exc:
                interval = self.duration * RETRY_EVERY
                if exc.status in (404, 409) and not await self._still_ours(exc.status):
                    self.validity.lost = True  # someone else wrote (took) it, or deleted it
                    break
                log("lease_renew_failed", "warning", mailboxsync=self.mailboxsync, error=str(exc)[:200])
                continue
            self._renewing = False
            self.validity.renewed(started)
            interval = self.duration * RENEW_EVERY
        log("lease_lost", "warning", mailboxsync=self.mailboxsync, holder=self.identity)

    async def _still_ours(self, status: int) -> bool:
        """After a 409 on a renewal: an earlier renewal whose answer never came may have landed (its new
        resourceVersion unseen). Still held by this worker: keep what is read and renew from it."""
        if status != 409:
            return False
        try:
            spec = await self._read()
        except KubeError:
            return False
        if self._obj is None or spec.get("holderIdentity") != self.identity:
            return False
        self._renewing = False
        return True

    async def confirm(self) -> None:
        """Read the Lease: LeaseLost unless this worker still holds it."""
        self.check()
        obj = await self.api.get_lease(self.namespace, self.name)
        if (obj.get("spec") or {}).get("holderIdentity") != self.identity:
            self.validity.lost = True
            raise LeaseLost("another worker holds the mailbox's lease now: this one stops writing")

    async def release(self) -> None:
        """Free the lease for the next round's worker at once: DELETE it while still ours (RV-checked).

        A renewal cancelled mid-request may have changed the Lease (and its resourceVersion) without this
        worker seeing the answer; a release that failed on that would leave the next worker waiting out
        the whole duration. So the Lease is read first then, and after a 409."""
        held, in_flight, self._held = self._held, self._renewing, False
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(BaseException):
                await self._renewer
        if not held or self._obj is None or self.validity.lost:
            return  # never taken (the holder's Lease, read while waiting, is not ours to delete), or lost
        with contextlib.suppress(KubeError):
            for attempt in range(3):
                if in_flight or attempt:
                    spec = await self._read()
                    if self._obj is None or spec.get("holderIdentity") != self.identity:
                        break
                try:
                    await self.api.delete_lease(
                        self.namespace, self.name, self._obj["metadata"]["resourceVersion"]
                    )
                    break
                except KubeError as exc:
                    if exc.status == 404:
                        break
                    if exc.status != 409:
                        raise
        self._obj = None


class FileLease:
    """``flock`` on ``<name>.lock`` (development file store): held until released or the process ends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    async def acquire(self) -> None:
        f = open(self.path, "ab")  # noqa: SIM115 - held open as long as the lock
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise AlreadyRunning(
                f"another worker holds {self.path.name}: this worker copies nothing"
            ) from None
        self._file = f

    def check(self) -> None:
        if self._file is None:
            raise LeaseLost("the mailbox's file lock is not held")

    async def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
