"""PowerDNS Authoritative REST API: one PATCH with changetype REPLACE/DELETE per RRset (atomic)."""

from __future__ import annotations

from typing import Any

import httpx

from mailferry_api.dnscutover import RRset

from ..rrset import canonical_record, fqdn
from .base import ProviderError, RetryPolicy, with_retries
from .http import brief, request


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
                raise ProviderError("ZoneNotFound", f"powerdns: zone {self.zone} not found on the server")
            if resp.status_code >= 400:
                raise ProviderError(
                    "ProviderError", f"powerdns: GET zone -> {resp.status_code}: {brief(resp.text)}"
                )
            data: dict[str, Any] = resp.json()
            return data

        self._cache = await with_retries(self.kind, "GET zone", once, self.retry)
        return self._cache

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

    async def replace(self, rrset: RRset) -> None:
        name, rtype = fqdn(rrset.name), rrset.type.upper()
        self._cache = None
        if rrset.records:
            change: dict[str, Any] = {
                "name": name,
                "type": rtype,
                "ttl": rrset.ttl,
                "changetype": "REPLACE",
                "records": [
                    {"content": canonical_record(rtype, r), "disabled": False} for r in rrset.records
                ],
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
                    f"powerdns: PATCH {name} {rtype} -> {resp.status_code}: {brief(resp.text)}",
                )

        await with_retries(self.kind, f"PATCH {name} {rtype}", once, self.retry, write=True)
