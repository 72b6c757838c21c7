"""Cloudflare API v4 DNS records. Cloudflare stores single records, so an RRset is replaced with one
`POST /zones/{zone_id}/dns_records/batch` (deletes of the old records + posts of the new ones),
which Cloudflare runs in one database transaction: all or nothing."""

from __future__ import annotations

from typing import Any

import httpx

from mailferry_api.dnscutover import RRset

from ..rrset import fqdn, parse_record, record_ttls, rrset_equal, split_txt
from .base import ProviderError, RetryPolicy, with_retries
from .http import request


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
    def _to_cloudflare(name: str, rtype: str, ttl: int, record: str) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name.rstrip("."), "type": rtype, "ttl": ttl}
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
        return body

    def _rrset(self, name: str, rtype: str, recs: list[dict[str, Any]]) -> RRset:
        """Cloudflare keeps a TTL per record: when they differ, each is kept (a rollback restores them)."""
        ttls = [int(r.get("ttl", 1)) for r in recs]
        return RRset(
            name=name,
            type=rtype,
            ttl=ttls[0],
            records=[self._to_presentation(r) for r in recs],
            record_ttls=ttls if len(set(ttls)) > 1 else [],
        )

    async def get(self, name: str, rtype: str) -> RRset | None:
        name, rtype = fqdn(name), rtype.upper()
        recs = await self._records(name, rtype)
        return self._rrset(name, rtype, recs) if recs else None

    async def replace(self, rrset: RRset) -> None:
        name, rtype = fqdn(rrset.name), rrset.type.upper()
        zid = await self._zone_id()

        async def once() -> None:
            # Re-read on every attempt: a batch that timed out may have been applied already.
            existing = await self._records(name, rtype)
            current = self._rrset(name, rtype, existing) if existing else None
            if rrset_equal(current, rrset):
                return
            body: dict[str, Any] = {}
            if existing:
                body["deletes"] = [{"id": r["id"]} for r in existing]
            if rrset.records:
                body["posts"] = [
                    self._to_cloudflare(name, rtype, ttl, r)
                    for r, ttl in zip(rrset.records, record_ttls(rrset), strict=True)
                ]
            await self._call(
                "POST",
                f"/zones/{zid}/dns_records/batch",
                f"batch {name} {rtype}",
                write=True,
                attempts=1,
                json=body,
            )

        await with_retries(self.kind, f"batch {name} {rtype}", once, self.retry)
