"""PowerDNS Authoritative REST API: one PATCH with changetype REPLACE/DELETE per RRset (atomic).

Beside the served records PowerDNS keeps disabled records and comments per RRset: replace() keeps the
disabled ones as they are and never sends `comments`, which a REPLACE then leaves untouched, so both
survive every change and its rollback (a DELETE, of an RRset mailferry created, drops its comments)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from mailferry_api.dnscutover import RRset

from ..rrset import canonical_record, fqdn
from .base import Keep, ProviderError, RetryPolicy, to_write, with_retries
from .http import request

_SERVER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class PowerDnsProvider:
    kind = "powerdns"

    def __init__(
        self,
        api_url: str,
        api_key: str,
        zone: str,
        server_id: str = "localhost",
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base = api_url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        self.zone = fqdn(zone)
        self.retry = retry or RetryPolicy()
        self._zone_url = f"{base}/servers/{server_id}/zones/{self.zone}"
        self._servers_url = f"{base}/servers"
        self._server_id = server_id
        self._http = httpx.AsyncClient(headers={"X-API-Key": api_key}, timeout=timeout, transport=transport)
        # The API returns the whole zone; one provider instance lives for one reconcile, so the zone is
        # fetched once and fetched again after any change.
        self._cache: dict[str, Any] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _zone(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache

        async def once() -> dict[str, Any]:
            resp = await request(self.kind, lambda: self._http.get(self._zone_url), "GET zone")
            if resp.status_code in (404, 422):
                raise await self._not_found()
            if resp.status_code >= 400:
                raise ProviderError("ProviderError", f"powerdns: GET zone -> HTTP {resp.status_code}")
            try:
                data = resp.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise self._not_powerdns(resp)
            return data

        self._cache = await with_retries(self.kind, "GET zone", once, self.retry)
        return self._cache

    def _not_powerdns(self, resp: httpx.Response) -> ProviderError:
        kind = resp.headers.get("content-type", "no content type").split(";")[0]
        return ProviderError(
            "ProviderError",
            f"powerdns: {resp.request.url.path} -> HTTP {resp.status_code} ({kind}), not a PowerDNS API "
            "answer: check provider.powerdns.apiUrl (http(s)://host:8081)",
        )

    async def _not_found(self) -> ProviderError:
        """PowerDNS answers a plain-text 404 for an unknown zone and for an unknown server id alike:
        ask for the server list to say which (and whether apiUrl is PowerDNS at all)."""
        resp = await request(self.kind, lambda: self._http.get(self._servers_url), "GET servers")
        try:
            servers = resp.json() if resp.status_code == 200 else None
        except ValueError:
            servers = None
        if not isinstance(servers, list):
            return self._not_powerdns(resp)
        # ids only as far as they look like ids: nothing else of a remote answer goes into status
        ids = [str(s.get("id")) for s in servers if isinstance(s, dict)]
        ids = [i for i in ids if _SERVER_ID.fullmatch(i)]
        if self._server_id not in ids:
            return ProviderError(
                "ProviderError",
                f"powerdns: provider.powerdns.serverId {self._server_id!r} not found "
                f"(the server has: {', '.join(ids[:5]) or 'none'})",
            )
        return ProviderError(
            "ZoneNotFound", f"powerdns: zone {self.zone} not found on the server (provider.zone)"
        )

    async def check_zone(self) -> None:
        self._cache = None
        await self._zone()

    async def get(self, name: str, rtype: str) -> RRset | None:
        name, rtype = fqdn(name), rtype.upper()
        for rr in (await self._zone()).get("rrsets", []):
            if rr["name"].lower() == name and rr["type"] == rtype:
                records = [r["content"] for r in rr.get("records", []) if not r.get("disabled")]
                if not records:
                    return None
                return RRset(name=name, type=rtype, ttl=int(rr.get("ttl", 0)), records=records)
        return None

    async def _fresh(self, name: str, rtype: str) -> tuple[list[str], int, RRset | None]:
        """The RRset's disabled records (not served, so not part of get()), its TTL and the served RRset,
        read fresh."""
        self._cache = None
        for rr in (await self._zone()).get("rrsets", []):
            if rr["name"].lower() == name and rr["type"] == rtype:
                return (
                    [r["content"] for r in rr.get("records", []) if r.get("disabled")],
                    int(rr.get("ttl", 0)),
                    await self.get(name, rtype),  # from the same read
                )
        return [], 0, None

    async def replace(self, rrset: RRset, keep: Keep | None = None) -> RRset:
        """REPLACE the served records; records someone disabled stay as they are (mailferry never wrote
        them: a rollback must find them again), so an RRset of only disabled records is kept, not deleted.
        No conditional write here: what someone writes between the read and the PATCH is overwritten."""
        name, rtype = fqdn(rrset.name), rrset.type.upper()
        disabled, ttl_now, current = await self._fresh(name, rtype)
        rrset = to_write(rrset, keep, current)
        self._cache = None
        records = [{"content": canonical_record(rtype, r), "disabled": False} for r in rrset.records]
        records += [{"content": c, "disabled": True} for c in disabled]
        if records:
            change: dict[str, Any] = {
                "name": name,
                "type": rtype,
                "ttl": rrset.ttl if rrset.records else ttl_now,
                "changetype": "REPLACE",
                "records": records,
            }
        else:
            change = {"name": name, "type": rtype, "changetype": "DELETE"}

        async def once() -> None:
            resp = await request(
                self.kind,
                lambda: self._http.patch(self._zone_url, json={"rrsets": [change]}),
                f"PATCH {name} {rtype}",
            )
            if resp.status_code in (404,):
                raise ProviderError("ZoneNotFound", f"powerdns: zone {self.zone} not found on the server")
            if resp.status_code >= 400:
                raise ProviderError(
                    "ProviderRejected",
                    f"powerdns: PATCH {name} {rtype} -> HTTP {resp.status_code} (the server refused it)",
                )

        await with_retries(self.kind, f"PATCH {name} {rtype}", once, self.retry, write=True)
        return rrset
