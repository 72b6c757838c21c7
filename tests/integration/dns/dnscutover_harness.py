"""Shared helpers for the DnsCutover e2e tests (real API server, real PowerDNS, operator subprocess).

Not a test module: tests/e2e/test_dnscutover*.py import it via sys.path.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from fixtures._proc import ManagedProcess, Supervised, free_port, port_open
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import demolib as dl

BIN = Path(sys.executable).parent
FAST_ENV = {
    "MAILFERRY_DNS_GATE_INTERVAL": "1",
    "MAILFERRY_SPF_RESOLVE": "0",  # no Internet here: count SPF mechanisms without following them
    "MAILFERRY_DNS_RETRY_DELAY": "0.05",
    "MAILFERRY_DNS_TIMEOUT": "3",
    "MAILFERRY_EGRESS_ALLOW": "http://127.0.0.1:*",  # the test PowerDNS and Prometheus (loopback ports)
}


class Operator(Supervised):
    """The operator as a subprocess: `mailferry-operator` (the real entrypoint) or, with
    `only_dnscutover`, `kopf run -m mailferry_operator.dnscutover.handlers` (no MailMigration
    controller, so a test can write a MailMigration's status itself)."""

    handlers_module = (
        "mailferry_operator.dnscutover.handlers"  # what `only_dnscutover` runs (subclasses: theirs)
    )

    def __init__(
        self,
        kube: KubeAPI,
        namespace: str,
        log_dir: Path,
        only_dnscutover: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.log = log_dir / "operator.log"
        self.only = only_dnscutover
        self.env = {**kube.env, **FAST_ENV, **(env or {})}
        self.starts = 0

    def start(self) -> Operator:
        self.starts += 1
        liveness = free_port()
        self.metrics_port = free_port()
        if self.only:
            argv = [
                str(BIN / "kopf"),
                "run",
                "--standalone",
                "-n",
                self.namespace,
                "-m",
                self.handlers_module,
                "--liveness",
                f"http://127.0.0.1:{liveness}/healthz",
            ]
        else:
            argv = [
                str(BIN / "mailferry-operator"),
                "--namespace",
                self.namespace,
                "--metrics-port",
                str(self.metrics_port),
                "--liveness-port",
                str(liveness),
            ]
        if os.environ.get("MAILFERRY_TEST_OPERATOR_DEBUG"):
            argv += ["--debug"] if self.only else ["--log-level", "debug"]
        self.proc = ManagedProcess(f"operator#{self.starts}", argv, log=self.log, env=self.env).start()
        self.proc.wait_ready(lambda: port_open(liveness), timeout=60)
        return self

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def pdns_secret(kube: KubeAPI, namespace: str, name: str, data: Mapping[str, str]) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"mailferry.io/credentials": "true"},
            },
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def powerdns_provider(api_url: str, secret: str = "dns-creds", **powerdns: str) -> dict[str, Any]:
    """spec.provider for the PowerDNS REST API at `api_url`, its key in the Secret `secret`."""
    return {"type": "powerdns", "secretRef": {"name": secret}, "powerdns": {"apiUrl": api_url, **powerdns}}


# The built-in gates (DESIGN.md "Cutover safety": minimum dwell of hours, the old TTL, verification on
# every authoritative nameserver, MailMigration in sync, destination DKIM) hold a real cutover for a day.
# The tests of the phase machine walk it in seconds, so they turn each one off explicitly, as a user
# would have to: spec.safety.skip with who and why. tests/e2e/test_dnscutover_safety.py runs them on.
FAST_SAFETY: dict[str, Any] = {
    "skip": [
        {
            "gate": gate,
            "by": "mailferry tests",
            "reason": "walks the phases in seconds; built-ins tested apart",
        }
        for gate in ("minDwell", "recordsServed", "oldTtl", "migrationInSync", "dkimVerified")
    ]
}


def cutover_manifest(
    name: str, zone: str, provider: dict[str, Any], target: str, records: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    """A DnsCutover for the domain of `zone` (with or without the trailing dot); `spec` adds ttl, gates...
    and `safety` (default FAST_SAFETY: every built-in gate skipped, said so)."""
    spec.setdefault("safety", FAST_SAFETY)
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "DnsCutover",
        "metadata": {"name": name},
        "spec": {
            "domain": zone.rstrip("."),
            "provider": provider,
            "targetPhase": target,
            "records": records,
            **spec,
        },
    }


def get_dc(kube: KubeAPI, namespace: str, name: str) -> dict[str, Any]:
    return kube.get("dnscutover", name, namespace)


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def wait_dc(
    kube: KubeAPI,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], object],
    what: str,
    timeout: float = 60,
    operator: Operator | None = None,
) -> dict[str, Any]:
    return dl.wait_object(
        kube,
        "dnscutover",
        namespace,
        name,
        check,
        what,
        timeout=timeout,
        describe=dl.status_brief("phase", "gates", "lastError"),
        log_text=operator.log_text if operator else None,
    )


def phase_is(phase: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: (o.get("status") or {}).get("phase") == phase


def in_phase(phase: str, cond: str = "Ready") -> Callable[[dict[str, Any]], bool]:
    """At `phase` with the condition `cond` True (by default: Ready there)."""
    return lambda o: phase_is(phase)(o) and condition(o, cond).get("status") == "True"


def condition_true(type_: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: condition(o, type_).get("status") == "True"


def paused_for(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: condition(o, "Paused").get("reason") == reason


def patch_spec(kube: KubeAPI, namespace: str, name: str, patch: str) -> None:
    kube.kubectl("patch", "dnscutover", name, "-n", namespace, "--type", "merge", "-p", patch)


def zone_rrsets(pdns: PowerDNS, zone: str) -> dict[tuple[str, str], tuple[int, tuple[str, ...]]]:
    """Every RRset of the zone but the SOA (its serial moves with each change)."""
    out = {}
    for rr in pdns.rrsets(zone):
        if rr["type"] == "SOA":
            continue
        out[(rr["name"], rr["type"])] = (rr["ttl"], tuple(sorted(r["content"] for r in rr["records"])))
    return out


def rolled_back(
    pdns: PowerDNS, zone: str, before: dict[tuple[str, str], tuple[int, tuple[str, ...]]]
) -> bool:
    """The zone as it was before the cutover, but for `_mta-sts`: once a policy was published it stays,
    announcing the `mode: none` policy (a sender may cache an enforce one: RFC 8461 §8.3)."""
    now = zone_rrsets(pdns, zone)
    kept = now.pop((f"_mta-sts.{zone.rstrip('.')}.", "TXT"), None)
    return now == before and kept is not None


class PolicyMirror:
    """Stands in for the kubelet's ConfigMap volume + the chart's MTA-STS Deployment: copies the
    policy ConfigMap into a file that `python -m mailferry_operator.mtasts.server` serves."""

    def __init__(self, kube: KubeAPI, namespace: str, configmap: str, root: Path) -> None:
        self.kube, self.namespace, self.configmap = kube, namespace, configmap
        self.file = root / "mta-sts.txt"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/.well-known/mta-sts.txt"
        self.server = ManagedProcess(
            "mta-sts",
            [
                sys.executable,
                "-m",
                "mailferry_operator.mtasts.server",
                "--policy-file",
                str(self.file),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
            ],
            log=root / "mta-sts.log",
            env=dict(os.environ),
        ).start()
        self.server.wait_ready(lambda: port_open(self.port), timeout=30)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            self.refresh()

    def refresh(self) -> None:
        """Copy the ConfigMap's policy into the served file now (the kubelet does it with some delay)."""
        try:
            cm = self.kube.get("configmap", self.configmap, self.namespace)
        except Exception:
            return
        text = (cm.get("data") or {}).get("mta-sts.txt")
        if text is not None and (not self.file.exists() or self.file.read_bytes() != text.encode()):
            tmp = self.file.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_bytes(text.encode())
            tmp.replace(self.file)

    def fetch(self) -> str:
        """The policy as served once the latest ConfigMap content has reached the file."""
        self.refresh()
        return httpx.get(self.url, timeout=5).text

    def close(self) -> None:
        self._stop.set()
        self.server.stop()
