"""Contacts and calendars of one MailboxSync, after its mail: log in to both groupware sides, discover
the collections of each kind the spec wants, create the missing ones on the destination, run each
collection (collection.py), and keep the checkpoints in the MailboxSync's status."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from mailferry_api.conditions import set_condition
from mailferry_api.groupware import (
    MAX_COLLECTIONS,
    MAX_ITEM_ERRORS,
    CollectionCheckpoint,
    CollectionKind,
    GroupwareEndpoint,
    ItemError,
    collection_totals,
)
from mailferry_api.imap import default_secret_key
from mailferry_api.mailboxsync import MailboxSide, MailboxSyncSpec, MailboxSyncStatus
from mailferry_api.problems import ProblemError
from mailferry_imap.credentials import Connector, MissingSecret, SecretSource, Side

from ..checkpoint import StatusStore
from ..clients import close_all, open_both
from ..logs import log
from .cloudsides import open_cloud
from .collection import CollectionSync
from .dav import Collection, DavClient, DavError
from .plan import home_of, token_unchanged
from .protocol import DESTINATION_PROPS

Side_ = Any  # DavClient, or a cloud side (cloud.Source/Destination; Google's two APIs routed by ByKind)
Outcome = Literal["synced", "transient", "permanent", "none", "busy", "lost"]


@dataclass
class GroupwareResult:
    outcome: Outcome
    reason: str | None = None
    copied: int = 0
    requests: int = 0
    noop_collections: int = 0
    errors: list[ItemError] = field(default_factory=list)


async def http_auth(
    side: Side, endpoint: GroupwareEndpoint, mail: MailboxSide, secrets: SecretSource, secret_key: str | None
) -> httpx.Auth:
    """Basic auth with the side's password, or a bearer token from the same OAuth2 settings as the mail."""
    auth = endpoint.auth or mail.endpoint.auth
    conn = Connector(
        side, mail.endpoint.model_copy(update={"auth": auth}), mail.username, secrets, secret_key
    )
    if auth.method == "xoauth2":
        token = await (await conn.token_source()).token()
        return _Bearer(token)
    if auth.method == "master-user":
        master = await _secret(secrets, side, auth.secret_ref.name, auth.master_user_key)
        user = f"{mail.username}{auth.master_separator}{master}"
        return httpx.BasicAuth(
            user, await _secret(secrets, side, auth.secret_ref.name, auth.master_password_key)
        )
    keys = (secret_key or default_secret_key(mail.username), default_secret_key(mail.username))
    return httpx.BasicAuth(mail.username, await _secret(secrets, side, auth.secret_ref.name, *keys))


async def _secret(secrets: SecretSource, side: Side, name: str, *keys: str) -> str:
    for key in keys:
        value = await secrets.get(side, name, key)
        if value is not None:
            return value
    raise MissingSecret(f"{side} secret {name!r} has no key {keys[0]!r}")


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = self._header
        yield request


async def open_client(
    side: Side, spec: MailboxSyncSpec, secrets: SecretSource, ca_file: str | None = None
) -> Side_:
    assert spec.groupware is not None
    ep = spec.groupware.source if side == "source" else spec.groupware.destination
    mail = spec.source if side == "source" else spec.destination
    if ep.type != "dav":  # google (People + Calendar API) or microsoft (Graph), with the mail side's OAuth2
        return open_cloud(ep, await http_auth(side, ep, mail, secrets, spec.secret_key))
    if not ep.url:
        raise DavError(f"{side}: type dav needs a url", "GroupwareTypeNotSupported")
    verify: bool | str = (ca_file or True) if ep.tls_verify else False
    auth = await http_auth(side, ep, mail, secrets, spec.secret_key)
    return DavClient(ep.url, auth, verify, ep.timeout_seconds)


async def open_pair(
    spec: MailboxSyncSpec, secrets: SecretSource, ca_file: str | None = None
) -> tuple[Side_, Side_]:
    """Source and destination clients: CalDAV/CardDAV, Google or Microsoft Graph on either side."""
    src, dst = await open_both(
        open_client("source", spec, secrets, ca_file), open_client("destination", spec, secrets, ca_file)
    )
    return src, dst


class GroupwareRunner:
    def __init__(
        self, name: str, store: StatusStore, secrets: SecretSource, ca_file: str | None = None
    ) -> None:
        self.name, self.store, self.secrets, self.ca_file = name, store, secrets, ca_file
        self.status = MailboxSyncStatus()
        self.lease: Any = None
        self._last_error: str | None = None

    async def save(self) -> None:
        if self.lease is not None:
            self.lease.check()  # fencing: only the lease holder writes the status (or the destination)
        self.status.collection_totals = collection_totals(self.status.collections)
        await self.store.save(self.name, self.status)

    async def run(self) -> GroupwareResult:
        """Under the mailbox's lease when the store has one (the mail engine's; the same one writer)."""
        take = getattr(self.store, "lease", None)
        if take is None:
            return await self._run()
        self.lease = take(self.name)
        try:
            await self.lease.acquire()
        except Exception as exc:  # AlreadyRunning, or the lease API refused: write nothing
            log("groupware_skipped", "warning", mailboxsync=self.name, reason=type(exc).__name__)
            return GroupwareResult("busy", type(exc).__name__)
        try:
            return await self._run()
        finally:
            await self.lease.release()

    async def _run(self) -> GroupwareResult:
        spec, self.status, _ = await self.store.load(self.name)
        kinds = spec.groupware_kinds()
        if not kinds or spec.suspend:
            return GroupwareResult("none")
        assert spec.groupware is not None
        result = GroupwareResult("synced")
        src = dst = None
        try:
            src, dst = await open_pair(spec, self.secrets, self.ca_file)
            not_wired: DavError | None = None
            for kind in kinds:
                try:
                    await self._kind(kind, src, dst, spec, result)
                except DavError as exc:  # e.g. Google contacts: report it, still copy the calendars
                    if exc.reason != "GroupwareTypeNotSupported":
                        raise
                    not_wired = exc
            if not_wired is not None:
                raise not_wired
        except (ProblemError, OSError) as exc:
            reason = getattr(exc, "reason", "GroupwareError")
            result.outcome = "transient" if getattr(exc, "transient", False) else "permanent"
            result.reason = reason
            self._last_error = str(exc)[:600]
            log("groupware_failed", "error", mailboxsync=self.name, reason=reason, error=str(exc)[:300])
        finally:
            result.requests += sum(c.requests for c in (src, dst) if c is not None)
            await close_all((src, dst))
        self.status.item_errors = (self.status.item_errors + result.errors)[-MAX_ITEM_ERRORS:]
        if result.outcome == "synced":
            msg = (
                f"{len(self.status.collections)} collection(s) in sync, {len(result.errors)} item(s) reported"
            )
            self.status.conditions = set_condition(
                self.status.conditions, "CollectionsSynced", "True", "Synced", msg
            )
        else:
            msg = f"contacts/calendars: {result.reason}" + (
                f": {self._last_error}" if self._last_error else ""
            )
            self.status.conditions = set_condition(
                self.status.conditions,
                "CollectionsSynced",
                "False",
                result.reason or "GroupwareError",
                msg[:1024],
            )
        log(
            "groupware_finished",
            mailboxsync=self.name,
            outcome=result.outcome,
            copied=result.copied,
            http_requests=result.requests,
            noop_collections=result.noop_collections,
        )
        try:
            await self.save()
        except Exception as exc:  # LeaseLost or the API: the next round starts from the last checkpoint
            log("groupware_status_write_failed", "error", mailboxsync=self.name, error=str(exc)[:300])
            return GroupwareResult(
                "lost" if type(exc).__name__ == "LeaseLost" else "transient", type(exc).__name__
            )
        return result

    async def _kind(
        self,
        kind: CollectionKind,
        src: Side_,
        dst: Side_,
        spec: MailboxSyncSpec,
        result: GroupwareResult,
    ) -> None:
        assert spec.groupware is not None
        force_etag = spec.groupware.source.sync == "etag"
        by_name = {c.name: c for c in self.status.collections}
        known = [c for c in self.status.collections if c.kind == kind]
        # After the first round the home is known: one PROPFIND lists every collection and its token.
        sources = await src.list_home(kind, home_of(known[0].source)) if known else None
        if not sources:
            _, sources = await src.discover(kind)
        dest_home: str | None = None
        for source in sources:
            ckpt_name = f"{kind}/{source.name}"
            ckpt = by_name.get(ckpt_name)
            if ckpt is not None and token_unchanged(ckpt, source.sync_token, force_etag):
                result.noop_collections += 1
                log("collection_synced", mailboxsync=self.name, collection=ckpt_name, noop=True)
                continue
            if ckpt is None:
                if len(self.status.collections) >= MAX_COLLECTIONS:
                    raise DavError(f"more than {MAX_COLLECTIONS} collections", "TooManyCollections")
                if dest_home is None:
                    dest_home, _ = await dst.discover(kind)  # once per kind, for new collections only
                dest_url = dst.destination_url(kind, dest_home, source)
                ckpt = CollectionCheckpoint(
                    name=ckpt_name, kind=kind, source=source.url, destination=dest_url
                )
                self.status.collections.append(ckpt)
            dest = await dst.collection(kind, ckpt.destination, DESTINATION_PROPS)
            if dest is None:
                await dst.make_collection(source, ckpt.destination)
                dest = await dst.collection(kind, ckpt.destination, DESTINATION_PROPS)
            dest = dest or Collection(kind, ckpt.destination)
            run = CollectionSync(
                src,
                dst,
                source,
                dest,
                ckpt,
                spec.groupware,
                self.save,
                force_etag=force_etag,
            )
            copied_before = ckpt.copied
            try:
                await run.run()
            except DavError as exc:
                ckpt.last_error = f"{exc.reason}: {exc.message}"[:1024]
                raise
            finally:
                result.errors.extend(run.errors)
                result.copied += ckpt.copied - copied_before
            log(
                "collection_synced",
                mailboxsync=self.name,
                collection=ckpt_name,
                mode=ckpt.mode,
                items=ckpt.items,
                copied=ckpt.copied,
                deleted=ckpt.deleted,
                noop=run.noop,
            )
            result.noop_collections += run.noop
