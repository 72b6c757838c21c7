"""A lean asyncio IMAP4rev1 client: just what a migration needs, at protocol level.

Why not aioimaplib: it has no STARTTLS, no MULTIAPPEND/LITERAL+, no pipelining of literals and a
RecursionError on long responses (upstream #118). This client streams literals (big ones to a
SpooledTemporaryFile), parses iteratively, and sends MULTIAPPEND with LITERAL+ where offered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from . import utf7
from .append import AppendPipeline, _append_parts, _appenduid
from .connection import BODY_MEMORY_BUDGET, STREAM_LIMIT, ImapConnection
from .errors import (
    CommandFailed,
    FolderVanished,
    ImapError,
    ProtocolError,
    classify_text,
)
from .fetchmeta import _BODY_FAST, _fast_fetch_meta, _parse_fetch_meta, _slow_fetch_meta
from .parser import (
    Literal,
    Response,
    Spool,
    as_bytes,
    as_str,
    pairs,
    parse_status_text,
    tokenize,
)
from .wire import (
    AppendItem,
    Completion,
    FolderInfo,
    MessageMeta,
    RawLiteral,
    SelectInfo,
    compress_uids,
    expand_uids,
    format_internaldate,
    mailbox_arg,
    parse_internaldate,
    parse_message_id,
    quote,
)

__all__ = [
    "STREAM_LIMIT",
    "AppendItem",
    "AppendPipeline",
    "Completion",
    "FolderInfo",
    "ImapClient",
    "MessageMeta",
    "SelectInfo",
    "_fast_fetch_meta",
    "_slow_fetch_meta",
    "compress_uids",
    "expand_uids",
    "format_internaldate",
    "parse_internaldate",
    "parse_message_id",
]


class ImapClient(ImapConnection):
    """One IMAP connection with the commands a migration needs."""

    # -------------------------------------------------------------- mailboxes
    async def namespace(self) -> tuple[str, str | None]:
        """(prefix, delimiter) of the first personal namespace; ("", None) when NAMESPACE is absent."""
        if not self.has("NAMESPACE"):
            return "", None
        done = await self.execute(b"NAMESPACE")
        for r in done.untagged:
            toks = tokenize(r.rest_after(2), r.literals)
            if toks and isinstance(toks[0], list) and toks[0] and isinstance(toks[0][0], list):
                first = toks[0][0]
                prefix = utf7.decode(as_str(first[0])) if first else ""
                delim = as_bytes(first[1]) if len(first) > 1 else None
                return prefix, delim.decode() if delim else None
        return "", None

    async def list_folders(self, pattern: str = "*") -> list[FolderInfo]:
        special = self.has("SPECIAL-USE") and self.has("LIST-EXTENDED")
        cmd: list[bytes] = [b"LIST", b'""', quote(pattern)]
        if special:
            cmd += [b"RETURN (SPECIAL-USE)"]
        done = await self.execute(*cmd)
        out: list[FolderInfo] = []
        for r in done.untagged:
            w = r.words(2)
            if len(w) < 2 or w[1].upper() != "LIST":
                continue
            toks = tokenize(r.rest_after(2), r.literals)
            if len(toks) < 3:
                continue
            flags = {as_str(f) for f in toks[0]} if isinstance(toks[0], list) else set()
            d = as_bytes(toks[1])
            raw = as_str(toks[2])
            out.append(FolderInfo(utf7.decode(raw), raw, d.decode() if d else None, flags))
        return out

    async def status(self, mailbox: str) -> dict[str, int]:
        items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"]
        if self.has("CONDSTORE"):
            items.append(b"HIGHESTMODSEQ")
        try:
            done = await self.execute(b"STATUS", mailbox_arg(mailbox), b"(" + b" ".join(items) + b")")
        except CommandFailed as exc:
            raise _vanished_or(exc, mailbox) from None
        for r in done.untagged:
            if r.words(2)[-1].upper() == "STATUS":
                toks = tokenize(r.rest_after(2), r.literals)
                if toks and isinstance(toks[-1], list):
                    return {k: int(as_str(v)) for k, v in pairs(toks[-1]).items()}
        raise ProtocolError(f"no STATUS response for {mailbox}")

    async def status_many(
        self, mailboxes: Sequence[str], items: Sequence[str] | None = None
    ) -> dict[str, dict[str, int] | ImapError]:
        """STATUS of several mailboxes, pipelined (all commands sent at once): one round trip in total.

        ``items``: the STATUS data items to ask for (e.g. ``("MESSAGES", "SIZE")`` where the server has
        STATUS=SIZE); default MESSAGES UIDNEXT UIDVALIDITY (+ HIGHESTMODSEQ with CONDSTORE)."""
        if items is None:
            items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
            if self.has("CONDSTORE"):
                items.append("HIGHESTMODSEQ")
        wanted = b"(" + " ".join(items).encode("ascii") + b")"
        results: dict[str, dict[str, int] | ImapError] = {}
        async with self._holding():
            tags: dict[bytes, str] = {}
            wire: dict[str, str] = {}
            buf = bytearray()
            for mb in mailboxes:
                tag = self._next_tag()
                tags[tag] = mb
                wire[utf7.encode(mb)] = mb
                buf += tag + b" STATUS " + mailbox_arg(mb) + b" " + wanted + b"\r\n"
            self._send(buf)
            await self._drain()
            pending = set(tags)
            while pending:
                resp = await self._read()
                tag = resp.line.split(b" ", 1)[0]
                if tag in pending:
                    pending.discard(tag)
                    done = self._completion(resp, [])
                    if done.status != "OK":
                        err = CommandFailed(done.text, done.status, done.code)
                        mb = tags[tag]
                        results[mb] = classify_text(done.text, done.code) or _vanished_or(err, mb)
                    continue
                self._note_untagged(resp)
                if resp.words(2)[-1].upper() == "STATUS":
                    toks = tokenize(resp.rest_after(2), resp.literals)
                    if len(toks) >= 2 and isinstance(toks[-1], list):
                        name = wire.get(as_str(toks[0]), utf7.decode(as_str(toks[0])))
                        results[name] = {k: int(as_str(v)) for k, v in pairs(toks[-1]).items()}
        return results

    async def enable(self, *extensions: str) -> set[str]:
        """ENABLE (RFC 5161) where the server has it; returns what is enabled now."""
        if not self.has("ENABLE"):
            return self.enabled
        done = await self.execute(b"ENABLE", *(e.encode("ascii") for e in extensions), check=False)
        for r in done.untagged:
            words = r.text().split()
            if len(words) >= 2 and words[1].upper() == "ENABLED":
                self.enabled |= {w.upper() for w in words[2:]}
        return self.enabled

    async def select(
        self, mailbox: str, readonly: bool = False, qresync: tuple[int, int] | None = None
    ) -> SelectInfo:
        """SELECT/EXAMINE. ``qresync`` (UIDVALIDITY, HIGHESTMODSEQ known before), on a connection with
        QRESYNC enabled: the same round trip reports the UIDs expunged (VANISHED (EARLIER)) and those
        whose flags changed since that modseq (RFC 7162 section 3.2.5)."""
        cmd = [b"EXAMINE" if readonly else b"SELECT", mailbox_arg(mailbox)]
        use_qresync = qresync is not None and "QRESYNC" in self.enabled
        if use_qresync and qresync is not None:
            cmd.append(b"(QRESYNC (%d %d))" % qresync)
        elif self.has("CONDSTORE"):
            cmd.append(b"(CONDSTORE)")
        self.selected = None
        try:
            done = await self.execute(*cmd)
        except CommandFailed as exc:
            raise _vanished_or(exc, mailbox) from None
        info = SelectInfo(0, None, 0, None, set(), readonly, qresync=use_qresync)
        for r in done.untagged:
            text = r.text()
            parts = text.split(" ", 2)
            if len(parts) >= 3 and parts[2].upper().startswith("EXISTS"):
                info.exists = int(parts[1])
            elif len(parts) >= 3 and parts[1].upper() == "VANISHED":
                info.vanished += expand_uids(parts[2].removeprefix("(EARLIER)").strip())
            elif len(parts) >= 3 and parts[2].upper().startswith("FETCH"):
                meta = _parse_fetch_meta(r)
                if meta is not None:
                    info.changed.append(meta.uid)
            elif text.upper().startswith("* OK ["):
                code, args, _ = parse_status_text(text[5:])
                if code == "UIDVALIDITY" and args:
                    info.uidvalidity = int(args)
                elif code == "UIDNEXT" and args:
                    info.uidnext = int(args)
                elif code == "HIGHESTMODSEQ" and args:
                    info.highestmodseq = int(args)
                elif code == "PERMANENTFLAGS" and args:
                    info.permanentflags = set(args.strip("()").split())
                elif code == "NOMODSEQ":
                    info.highestmodseq = None
        self.selected = mailbox
        return info

    async def create(self, mailbox: str) -> bool:
        """CREATE; False if it already existed."""
        done = await self.execute(b"CREATE", mailbox_arg(mailbox), check=False)
        if done.status == "OK":
            return True
        if done.code == "ALREADYEXISTS" or "exists" in done.text.lower():
            return False
        raise classify_text(done.text, done.code) or CommandFailed(
            f"CREATE {mailbox} failed: {done.text[:200]}", done.status, done.code
        )

    async def subscribe(self, mailbox: str) -> None:
        await self.execute(b"SUBSCRIBE", mailbox_arg(mailbox), check=False)

    async def delete(self, mailbox: str) -> None:
        await self.execute(b"DELETE", mailbox_arg(mailbox))

    # --------------------------------------------------------------- messages
    async def fetch_meta(
        self,
        uid_set: str,
        *,
        changedsince: int | None = None,
        with_message_id: bool = True,
        on_meta: Callable[[MessageMeta], None] | None = None,
    ) -> list[MessageMeta]:
        """UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE [Message-ID] [MODSEQ]) over any range, streamed."""
        items = [b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"]
        if with_message_id:
            items.append(b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")
        modseq = self.has("CONDSTORE")
        if modseq:
            items.append(b"MODSEQ")
        cmd = [b"UID FETCH", uid_set.encode(), b"(" + b" ".join(items) + b")"]
        if changedsince is not None and modseq:
            cmd.append(b"(CHANGEDSINCE %d)" % changedsince)
        out: list[MessageMeta] = []

        def handle(resp: Response) -> bool:
            meta = _parse_fetch_meta(resp)
            if meta is None:
                return False
            if on_meta is not None:
                on_meta(meta)
            else:
                out.append(meta)
            return True

        await self.execute(*cmd, on_untagged=handle)
        return out

    async def fetch_bodies(self, uids: Sequence[int]) -> dict[int, Literal]:
        """UID FETCH BODY.PEEK[] of ``uids``; big bodies arrive as Spool (bounded memory)."""
        out: dict[int, Literal] = {}
        if not uids:
            return out
        in_memory = [0]

        def handle(resp: Response) -> bool:
            fast = _BODY_FAST.fullmatch(resp.line) if len(resp.literals) == 1 else None
            if fast is not None:  # the usual shape: no tokenizer
                uid: Any = fast.group(1)
                body: Any = resp.literals[0]
            else:
                if b" FETCH " not in resp.line[:40].upper():
                    return False
                toks = tokenize(resp.rest_after(3), resp.literals)
                if not toks or not isinstance(toks[0], list):
                    return False
                attrs = pairs(toks[0])
                uid = attrs.get("UID")
                body = attrs.get("BODY[]")
            if uid is None or body is None:
                resp.close()
                return True
            lit: Literal = body if isinstance(body, Spool | bytes) else b""
            if isinstance(lit, bytes):
                if in_memory[0] + len(lit) > BODY_MEMORY_BUDGET:
                    lit = Spool.from_bytes(lit)
                else:
                    in_memory[0] += len(lit)
            old = out.get(int(as_str(uid)))
            if isinstance(old, Spool):
                old.close()
            out[int(as_str(uid))] = lit
            for extra in resp.literals:
                if isinstance(extra, Spool) and extra is not body:
                    extra.close()
            return True

        try:
            await self.execute(
                b"UID FETCH", compress_uids(uids).encode(), b"(UID BODY.PEEK[])", on_untagged=handle
            )
        except BaseException:
            for v in out.values():
                if isinstance(v, Spool):
                    v.close()
            raise
        return out

    async def append(self, mailbox: str, items: Sequence[AppendItem]) -> list[int] | None:
        """APPEND one message, or several in one MULTIAPPEND (RFC 3502) when the server has it.

        Returns the destination UIDs from APPENDUID (UIDPLUS) or None.
        """
        if len(items) > 1 and not self.has("MULTIAPPEND"):
            uids: list[int] = []
            for it in items:
                got = await self.append(mailbox, [it])
                if got is None:
                    return None
                uids += got
            return uids
        try:
            done = await self.execute(*_append_parts(mailbox, items))
        except CommandFailed as exc:
            if exc.code == "TRYCREATE":
                raise FolderVanished(f"destination folder {mailbox} does not exist") from None
            raise
        return _appenduid(done)

    def can_pipeline_append(self, items: Sequence[AppendItem]) -> bool:
        """Whether ``items`` can be sent as one MULTIAPPEND without waiting for a continuation."""
        return self.has("MULTIAPPEND") and all(self._literal_plus(len(it.data)) for it in items)

    @contextlib.asynccontextmanager
    async def append_pipeline(self, mailbox: str) -> AsyncIterator[AppendPipeline]:
        """Hold the connection for a run of pipelined MULTIAPPENDs (see AppendPipeline).

        Leaving with a command still outstanding (an error, a cancel) closes the connection: what
        it did is unknown, and the caller's recovery (a re-match against the destination) decides.
        """
        async with self._holding():
            pipe = AppendPipeline(self, mailbox)
            try:
                yield pipe
            finally:
                if pipe.outstanding:
                    self._abort()

    async def store_flags(self, uids: Sequence[int], flags: Sequence[str], mode: str = "FLAGS") -> None:
        """UID STORE uids <mode>.SILENT (flags); mode FLAGS (replace), +FLAGS or -FLAGS."""
        await self.execute(
            b"UID STORE",
            compress_uids(uids).encode(),
            mode.encode() + b".SILENT",
            b"(" + " ".join(flags).encode("utf-8") + b")",
        )

    async def uid_expunge(self, uids: Sequence[int]) -> None:
        """UID EXPUNGE (UIDPLUS): remove exactly these messages (they must carry \\Deleted)."""
        await self.execute(b"UID EXPUNGE", compress_uids(uids).encode())

    async def uid_move(self, uids: Sequence[int], mailbox: str) -> dict[int, int]:
        """Move messages of the selected mailbox to ``mailbox``: UID MOVE (RFC 6851), or UID COPY +
        \\Deleted + UID EXPUNGE. Returns {old UID: new UID} from COPYUID (empty without UIDPLUS)."""
        seq = compress_uids(uids).encode()
        if self.has("MOVE"):
            done = await self.execute(b"UID MOVE", seq, mailbox_arg(mailbox))
        else:
            done = await self.execute(b"UID COPY", seq, mailbox_arg(mailbox))
            await self.store_flags(uids, ["\\Deleted"], mode="+FLAGS")
            await self.uid_expunge(uids)
        codes = [(done.code, done.code_args)]
        for r in done.untagged:
            text = r.text()
            if text.upper().startswith("* OK ["):
                code, args, _ = parse_status_text(text[5:])
                codes.append((code, args))
        for code, args in codes:
            if code == "COPYUID" and args and len(args.split()) == 3:
                _, old, new = args.split()
                return dict(zip(expand_uids(old), expand_uids(new), strict=False))
        return {}

    async def uid_count(self, uid_set: str) -> int:
        """How many messages of the selected mailbox have a UID in ``uid_set`` (ESEARCH COUNT: one number
        on the wire; plain SEARCH otherwise)."""
        if self.has("ESEARCH"):
            done = await self.execute(b"UID SEARCH RETURN (COUNT) UID", uid_set.encode())
            for r in done.untagged:
                words = r.text().upper().split()
                if len(words) >= 2 and words[1] == "ESEARCH" and "COUNT" in words[:-1]:
                    return int(words[words.index("COUNT") + 1])
            return 0
        done = await self.execute(b"UID SEARCH UID", uid_set.encode())
        return sum(len(r.line.split()) - 2 for r in done.untagged if r.line.upper().startswith(b"* SEARCH"))

    async def search_message_id(self, message_id: str) -> list[int]:
        arg: bytes | RawLiteral = self._astring(message_id)
        done = await self.execute(b"UID SEARCH HEADER Message-ID", arg)
        uids: list[int] = []
        for r in done.untagged:
            if r.line.upper().startswith(b"* SEARCH"):
                uids += [int(x) for x in r.line.split()[2:] if x.isdigit()]
        return uids

    async def noop(self) -> None:
        await self.execute(b"NOOP")

    async def exists_now(self) -> int | None:
        """NOOP on the selected mailbox: the message count it reports (None: no EXISTS update)."""
        done = await self.execute(b"NOOP")
        count: int | None = None
        for r in done.untagged:
            parts = r.line.split(b" ", 3)
            if len(parts) >= 3 and parts[2].upper().startswith(b"EXISTS") and parts[1].isdigit():
                count = int(parts[1])
        return count

    async def logout(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(ImapError, OSError, TimeoutError):
            await asyncio.wait_for(self.execute(b"LOGOUT", check=False), 5)
        self._abort()

    async def close(self) -> None:
        await self.logout()


def _vanished_or(exc: CommandFailed, mailbox: str) -> ImapError:
    text = exc.message.lower()
    if (
        exc.code == "NONEXISTENT"
        or "doesn't exist" in text
        or "does not exist" in text
        or "unknown mailbox" in text
    ):
        return FolderVanished(f"folder {mailbox!r} does not exist (any more)")
    return exc
