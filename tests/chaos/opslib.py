"""Shared pieces of the operator fault scenarios (tests/chaos/operator_faults.py, dns_kill.py, load.py).

- `Operator`: the real `mailferry-operator` as a subprocess (kill -9 / restart), optionally with its own
  kubeconfig (e.g. through a TCP fault proxy) and log level;
- `Watcher`: a watch stream on one object, in a thread, recording every version the API server sends
  (so a check sees each status write, not a poll's sample); it survives API server restarts and 410s;
- `proxied_kubeconfig`: a copy of a kubeconfig whose server is a local port (TLS passes through);
- small time helpers (RFC 3339 timestamps -> epoch seconds).
Usable outside pytest (the chaos runner) and from tests.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

TESTS = Path(__file__).resolve().parents[1]
for extra in (TESTS, TESTS / "tools"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import demolib as dl  # noqa: E402

from fixtures._proc import wait_until  # noqa: E402
from fixtures.kubeapi import KubeAPI  # noqa: E402

BIN = Path(sys.executable).parent


def say(msg: str) -> None:
    print(msg, flush=True)


def epoch(ts: str | None) -> float | None:
    """'2026-11-25T18:00:01Z' -> epoch seconds (None stays None)."""
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def proxied_kubeconfig(kube: KubeAPI, port: int, path: Path) -> Path:
    """The kubeconfig of `kube` with its server replaced by https://127.0.0.1:`port` (a TCP proxy in
    front of kube-apiserver: the serving certificate is valid for 127.0.0.1, TLS passes through)."""
    cfg = yaml.safe_load(kube.kubeconfig.read_text())
    for c in cfg["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)
    return path


class Operator(dl.OperatorProcess):
    """demolib's OperatorProcess with its log at a given path; `kill()` is kill -9 of its process group."""

    def __init__(
        self,
        kube: KubeAPI,
        namespaces: list[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        log_level: str = "info",
        extra_args: list[str] | None = None,
        name: str = "operator",
    ) -> None:
        super().__init__(
            kube,
            namespaces,
            log.parent,
            env,
            name=name,
            log_level=log_level,
            extra_args=extra_args or (),
            log=log,
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.running()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Version:
    mono: float  # time.monotonic() when received
    wall: float  # time.time() when received
    type: str  # ADDED | MODIFIED | DELETED | LISTED (from a re-list)
    obj: dict[str, Any]

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.obj.get("spec") or {})


@dataclass
class Watcher:
    """Watch one object (`path` = the collection URL, `name`) and keep every version received.

    Talks to kube-apiserver directly (not through any fault proxy). On a broken stream it resumes
    from the last resourceVersion; on 410 Gone (or a restart that lost it) it re-lists."""

    kube: KubeAPI
    path: str  # e.g. /apis/mailferry.io/v1alpha1/namespaces/ns/mailmigrations
    name: str
    versions: list[Version] = field(default_factory=list)
    relists: int = 0
    gone: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        ctx = ssl.create_default_context(cafile=str(self.kube.ca_file)) if self.kube.ca_file else True
        self._client = httpx.Client(
            base_url=self.kube.server,
            verify=ctx,
            headers={"Authorization": f"Bearer {self.kube.token}"},
            timeout=httpx.Timeout(10, read=60),
        )
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()

    def _add(self, type_: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self.versions.append(Version(time.monotonic(), time.time(), type_, obj))

    def _list(self) -> str:
        r = self._client.get(self.path, params={"fieldSelector": f"metadata.name={self.name}"})
        r.raise_for_status()
        data = r.json()
        for item in data.get("items", []):
            self._add("LISTED", item)
        self.relists += 1
        return str(data["metadata"]["resourceVersion"])

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                params = {
                    "watch": "1",
                    "fieldSelector": f"metadata.name={self.name}",
                    "resourceVersion": rv,
                    "timeoutSeconds": "30",
                    "allowWatchBookmarks": "true",
                }
                with self._client.stream("GET", self.path, params=params) as resp:
                    if resp.status_code == 410:
                        self.gone += 1
                        rv = None
                        continue
                    resp.raise_for_status()
                    for line in resp.iter_lines():
                        if self._stop.is_set():
                            return
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        obj = ev.get("object") or {}
                        if ev.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                self.gone += 1
                            rv = None
                            break
                        new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                        if new_rv:
                            rv = str(new_rv)
                        if ev.get("type") != "BOOKMARK":
                            self._add(str(ev.get("type")), obj)
            except (httpx.HTTPError, OSError, ValueError):
                if self._stop.wait(0.3):
                    return

    def snapshot(self) -> list[Version]:
        with self._lock:
            return list(self.versions)

    def latest(self) -> Version | None:
        with self._lock:
            return self.versions[-1] if self.versions else None

    def wait(self, check: Callable[[Version], object], timeout: float, what: str) -> Version:
        """Wait until the latest version satisfies `check`."""

        def probe() -> Version | None:
            v = self.latest()
            return v if v is not None and check(v) else None

        return wait_until(probe, timeout=timeout, interval=0.1, what=what)


def phase_of(v: Version | None) -> str | None:
    return None if v is None else v.status.get("phase")


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def percentile(values: list[float], p: float) -> float | None:
    s = sorted(values)
    if not s:
        return None
    return round(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))], 2)
