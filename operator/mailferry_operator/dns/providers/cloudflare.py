"""Cloudflare API v4 DNS records. Cloudflare stores single records, so an RRset is replaced with one
`POST /zones/{zone_id}/dns_records/batch`, which Cloudflare runs in one database transaction (all or
nothing; deletes, then patches, then posts).

A record keeps more than its value: a TTL of its own (1 = "automatic", served as 300 s), `proxied`,
`comment`, `tags`, `settings`. replace() changes as little as it can: a record whose value stays is kept
(same id, comment, tags...), only its TTL patched when it changes; only records whose value goes are
deleted and only new values posted. get() puts the non-default attributes into `RRset.record_attrs`, so a
snapshot holds them and a rollback posts a removed record again exactly as it was. Server-managed fields
(id, created_on, modified_on, comment_modified_on, tags_modified_on, meta, proxiable) are Cloudflare's."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from mailferry_api.dnscutover import RecordAttrs, RRset

from ..rrset import fqdn, parse_record, record_digest, record_ttls, split_txt
from .base import Keep, ProviderError, RetryPolicy, to_write, with_retries
from .http import request

# Cloudflare's "automatic" TTL, and what resolvers are served for it (its DNS documentation: 300 s).
AUTO_TTL = 1
AUTO_TTL_SERVED = 300


def served_ttl(rec: dict[str, Any]) -> int:
    ttl = int(rec.get("ttl", AUTO_TTL))
    return AUTO_TTL_SERVED if ttl == AUTO_TTL else ttl


def record_attrs(record: str, rec: dict[str, Any]) -> RecordAttrs | None:
    """What `rec` keeps beside its value and TTL, when any of it is not the default."""
    raw_tags, raw_settings = rec.get("tags"), rec.get("settings")
    tags = [str(t) for t in raw_tags] if isinstance(raw_tags, list) else []
    settings = (
        {str(k): v for k, v in raw_settings.items() if isinstance(v, bool)}
        if isinstance(raw_settings, dict)
        else {}
    )
    try:
        attrs = RecordAttrs(
            record=record,
            proxied=True if rec.get("proxied") is True else None,
            comment=str(rec["comment"]) if rec.get("comment") else None,
            tags=tags,
            settings=settings,
            auto_ttl=int(rec.get("ttl", AUTO_TTL)) == AUTO_TTL,
        )
    except ValidationError as exc:  # more than a snapshot can hold: refuse rather than restore it cut short
        raise ProviderError(
            "RecordNotRestorable",
            f"cloudflare: {rec.get('type')} record {str(rec.get('name'))[:253]}: its comment or tags are "
            f"longer than a snapshot keeps ({exc.error_count()} field(s)): a rollback could not restore them",
        ) from exc
    return attrs if attrs != RecordAttrs(record=record) else None


def cloudflare_ttl(ttl: int, attrs: RecordAttrs | None) -> int:
    """The `ttl` to send: "automatic" where the record had it and is to be served 300 s again."""
    return AUTO_TTL if attrs is not None and attrs.auto_ttl and ttl == AUTO_TTL_SERVED else ttl


def _errors(data: Any) -> str:
    """Cloudflare's numeric error codes only (documented per API); its message text is a remote body
    and never goes into status or Events."""
    try:
        codes = [e.get("code") for e in data.get("errors", [])]
    except AttributeError:
        return ""
    return ", ".join(f"code {c}" for c in codes[:5] if isinstance(c, int))


class CloudflareProvider:
    kind = "cloudflare"

    def __init__(
        self,
        api_token: str,
        zone: str,
        zone_id: str | None = None,
        api_url: str = "https://api.cloudflare.com/client/v4",
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.zone = fqdn(zone)
        self.zone_id = zone_id
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), timeout=timeout, headers={"Authorization": f"Bearer {api_token}"}
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, what: str, write: bool = False, attempts: int | None = None, **kw: Any
    ) -> Any:
        async def once() -> Any:
            resp = await request(self.kind, lambda: self._http.request(method, path, **kw), what)
            try:
                data = resp.json()
            except ValueError:
                data = {}
            if resp.status_code == 404:
                raise ProviderError(
                    "ZoneNotFound", f"cloudflare: {what}: not found ({_errors(data) or 'HTTP 404'})"
                )
            if resp.status_code >= 400 or not data.get("success", False):
                raise ProviderError(
                    "ProviderRejected",
                    f"cloudflare: {what} -> HTTP {resp.status_code}"
                    + (f" ({_errors(data)})" if _errors(data) else ""),
                )
            return data

        policy = self.retry if attempts is None else RetryPolicy(attempts=attempts)
        return await with_retries(self.kind, what, once, policy, write=write)

    async def _zone_id(self) -> str:
        if self.zone_id:
            return self.zone_id
        data = await self._call("GET", "/zones", "find zone", params={"name": self.zone.rstrip(".")})
        if not data.get("result"):
            raise ProviderError(
                "ZoneNotFound", f"cloudflare: no zone named {self.zone.rstrip('.')} for this token"
            )
        self.zone_id = str(data["result"][0]["id"])
        return self.zone_id

    async def check_zone(self) -> None:
        zid = await self._zone_id()
        await self._call("GET", f"/zones/{zid}", "GET zone")

    async def _records(self, name: str, rtype: str) -> list[dict[str, Any]]:
        zid = await self._zone_id()
        data = await self._call(
            "GET",
            f"/zones/{zid}/dns_records",
            f"list {name} {rtype}",
            params={"name": name.rstrip("."), "type": rtype, "per_page": 100},
        )
        return [
            r
            for r in data.get("result", [])
            if r.get("type") == rtype and str(r.get("name", "")).lower().rstrip(".") == name.rstrip(".")
        ]

    @staticmethod
    def _to_presentation(rec: dict[str, Any]) -> str:
        rtype, content = rec["type"], str(rec["content"])
        if rtype == "TXT":
            return content if content.startswith('"') else split_txt(content)
        if rtype == "MX":
            return f"{int(rec.get('priority', 0))} {fqdn(content)}"
        if rtype in ("CNAME", "NS"):
            return fqdn(content)
        return content

    @staticmethod
    def _to_cloudflare(
        name: str, rtype: str, ttl: int, record: str, attrs: RecordAttrs | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name.rstrip("."), "type": rtype, "ttl": cloudflare_ttl(ttl, attrs)}
        rd = parse_record(rtype, record)
        if rtype == "MX":
            body["priority"] = rd.preference  # type: ignore[attr-defined]
            body["content"] = rd.exchange.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
        elif rtype in ("CNAME", "NS"):
            body["content"] = rd.target.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
            if rtype == "CNAME":
                body["proxied"] = False
        else:
            body["content"] = rd.to_text()
        if attrs is not None:
            if attrs.proxied is not None:
                body["proxied"] = attrs.proxied
            if attrs.comment is not None:
                body["comment"] = attrs.comment
            if attrs.tags:
                body["tags"] = list(attrs.tags)
            if attrs.settings:
                body["settings"] = dict(attrs.settings)
        return body

    def _rrset(self, name: str, rtype: str, recs: list[dict[str, Any]]) -> RRset:
        """Cloudflare keeps a TTL per record: when they differ, each is kept (a rollback restores them)."""
        ttls = [served_ttl(r) for r in recs]
        records = [self._to_presentation(r) for r in recs]
        attrs = [a for a in (record_attrs(v, r) for v, r in zip(records, recs, strict=True)) if a is not None]
        return RRset(
            name=name,
            type=rtype,
            ttl=ttls[0],
            records=records,
            record_ttls=ttls if len(set(ttls)) > 1 else [],
            record_attrs=attrs,
        )

    async def get(self, name: str, rtype: str) -> RRset | None:
        name, rtype = fqdn(name), rtype.upper()
        recs = await self._records(name, rtype)
        return self._rrset(name, rtype, recs) if recs else None

    def batch(self, name: str, rtype: str, existing: list[dict[str, Any]], rrset: RRset) -> dict[str, Any]:
        """The smallest batch that makes the records at name/type `rrset` ({} when they are already).

        A value that stays keeps its record (id, comment, tags, proxied, settings: whoever set them), at
        most its TTL patched; a value that goes is deleted; a new value is posted with the attributes
        `rrset.record_attrs` has for it (a rollback: the record as the snapshot saw it)."""
        have: dict[bytes, dict[str, Any]] = {}
        for rec in existing:
            have.setdefault(record_digest(rtype, self._to_presentation(rec)), rec)
        attrs = {record_digest(rtype, a.record): a for a in rrset.record_attrs}
        patches: list[dict[str, Any]] = []
        posts: list[dict[str, Any]] = []
        kept: set[str] = set()
        for record, ttl in zip(rrset.records, record_ttls(rrset), strict=True):
            digest = record_digest(rtype, record)
            found = have.pop(digest, None)
            if found is None:
                posts.append(self._to_cloudflare(name, rtype, ttl, record, attrs.get(digest)))
                continue
            kept.add(str(found["id"]))
            want = cloudflare_ttl(ttl, attrs.get(digest))
            if served_ttl(found) != ttl or (want == AUTO_TTL and int(found.get("ttl", AUTO_TTL)) != AUTO_TTL):
                patches.append({"id": found["id"], "ttl": want})
        deletes = [{"id": r["id"]} for r in existing if str(r["id"]) not in kept]
        body = {"deletes": deletes, "patches": patches, "posts": posts}
        return {k: v for k, v in body.items() if v}

    async def replace(self, rrset: RRset, keep: Keep | None = None) -> RRset:
        """One batch (no conditional write: what someone writes between the read and it is overwritten)."""
        name, rtype = fqdn(rrset.name), rrset.type.upper()
        zid = await self._zone_id()
        asked = rrset

        async def once() -> None:
            nonlocal rrset
            # Re-read on every attempt: a batch that timed out may have been applied already.
            recs = await self._records(name, rtype)
            rrset = to_write(asked, keep, self._rrset(name, rtype, recs) if recs else None)
            body = self.batch(name, rtype, recs, rrset)
            if not body:
                return
            await self._call(
                "POST",
                f"/zones/{zid}/dns_records/batch",
                f"batch {name} {rtype}",
                write=True,
                attempts=1,
                json=body,
            )

        await with_retries(self.kind, f"batch {name} {rtype}", once, self.retry)
        return rrset
