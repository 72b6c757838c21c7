"""Which client a cloud side (`type: google` or `microsoft`) gets: Google is two APIs (People for contacts,
Calendar for calendars) behind one router; Graph serves both kinds. `url`, when set, is the API root
(tests point it at a contract fake): Google's Calendar API then lives under `calendar/v3` and People
under `people/v1`; Graph under `v1.0` (and `beta` for the unbounded events delta)."""

from __future__ import annotations

import httpx

from mailferry_api.groupware import GroupwareEndpoint

from .cloud import ByKind
from .google import GoogleCalendar
from .graph import Graph
from .people import GooglePeople


def open_cloud(ep: GroupwareEndpoint, auth: httpx.Auth) -> ByKind | Graph:
    root = (ep.url or "").rstrip("/")
    timeout = float(ep.timeout_seconds)
    if ep.type == "google":
        return ByKind(
            GooglePeople(auth, f"{root}/people/v1" if root else None, timeout),
            GoogleCalendar(auth, f"{root}/calendar/v3" if root else None, timeout),
        )
    return Graph(auth, f"{root}/v1.0" if root else None, f"{root}/beta" if root else None, timeout)
