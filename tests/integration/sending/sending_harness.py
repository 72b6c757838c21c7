"""Helpers for the SendingCutover tests (real API server, ESP endpoint, Prometheus, PowerDNS, operator).

Not a test module: tests import it via sys.path. The operator runs as
`kopf run -m mailferry_operator.sendingcutover.handlers` (the SendingCutover controller only, so a test
may write a DnsCutover's status itself).
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures._proc import ManagedProcess, Supervised, free_port, port_open, wait_until
from fixtures.esp import EspEndpoint, EspKeys
from fixtures.kubeapi import KubeAPI
from fixtures.prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dns"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import demolib as dl
from dnscutover_harness import condition
from dnscutover_harness import pdns_secret as secret

BIN = Path(sys.executable).parent
OLD_KEY, NEW_KEY = "old-provider-key-0123", "new-provider-key-4567"


class SendingOperator(Supervised):
    def __init__(self, kube: KubeAPI, namespace: str, log_dir: Path) -> None:
        self.kube = kube
        self.namespace = namespace
        self.log = log_dir / "operator.log"
        self.env = {
            **kube.env,
            "MAILFERRY_SENDING_INTERVAL": "1",
            "MAILFERRY_DNS_TIMEOUT": "3",
            "MAILFERRY_EGRESS_ALLOW": "http://127.0.0.1:*",  # the test Prometheus
        }
        self.starts = 0

    def start(self) -> SendingOperator:
        self.starts += 1
        liveness = free_port()
        argv = [
            str(BIN / "kopf"),
            "run",
            "--standalone",
            "-n",
            self.namespace,
            "-m",
            "mailferry_operator.sendingcutover.handlers",
            "--liveness",
            f"http://127.0.0.1:{liveness}/healthz",
        ]
        if os.environ.get("MAILFERRY_TEST_OPERATOR_DEBUG"):
            argv.append("--debug")
        self.proc = ManagedProcess(f"operator#{self.starts}", argv, log=self.log, env=self.env).start()
        self.proc.wait_ready(lambda: port_open(liveness), timeout=60)
        return self

    def restart(self) -> None:
        """SIGKILL, then start again (what a node failure or OOM kill does)."""
        self.kill()
        self.start()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def esp_stack(
    factory: pytest.TempPathFactory, name: str, domain: str
) -> Iterator[tuple[EspEndpoint, Prometheus]]:
    """For a module fixture: the ESP endpoint with test keys for `domain`, and a Prometheus scraping it."""
    root = factory.mktemp(name)
    keys = EspKeys(root / "keys", domain=domain)
    endpoint = EspEndpoint(keys, root).start()
    prom = Prometheus(factory.mktemp(f"{name}-prometheus"), name).start()
    prom.add_target(endpoint.metrics_target, job="esp")
    yield endpoint, prom
    prom.close()
    endpoint.stop()
    keys.close()


def provider_keys(kube: KubeAPI, namespace: str) -> None:
    secret(kube, namespace, "new-esp-key", {"api-key": NEW_KEY})
    secret(kube, namespace, "old-esp-key", {"api-key": OLD_KEY})


def manifest(name: str, domain: str, prometheus_url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "SendingCutover",
        "metadata": {"name": name},
        "spec": {
            "domain": domain,
            "stream": "transactional",
            "provider": {"name": "sendgrid", "secretName": "new-esp-key"},
            "previousProvider": {"name": "ses", "secretName": "old-esp-key"},
            "ramp": [
                {"weight": 10, "minDuration": "1s"},
                {"weight": 50, "minDuration": "1s"},
                {"weight": 100},
            ],
            "warmup": {"minEvents": 50},
            "prometheus": {"address": prometheus_url},
            "appSecretName": "app-sending",
            **spec,
        },
    }


def get_sc(kube: KubeAPI, namespace: str, name: str) -> dict[str, Any]:
    return kube.get("sendingcutover", name, namespace)


def app_secret(kube: KubeAPI, namespace: str, name: str = "app-sending") -> dict[str, str]:
    obj = kube.get("secret", name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def wait_sc(
    kube: KubeAPI,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], object],
    what: str,
    operator: SendingOperator | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    return dl.wait_object(
        kube,
        "sendingcutover",
        namespace,
        name,
        check,
        what,
        timeout=timeout,
        describe=dl.status_brief("phase", "step", "weight", "lastMeasurement", "history"),
        log_text=operator.log_text if operator else None,
    )


def at_weight(weight: int) -> Callable[[dict[str, Any]], bool]:
    return lambda o: (o.get("status") or {}).get("weight") == weight


def waiting_for(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: condition(o, "GatesPassed").get("reason") == reason


def events_for(kube: KubeAPI, namespace: str, name: str) -> list[tuple[str, str]]:
    out = kube.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.name={name},involvedObject.kind=SendingCutover",
        "-o",
        "jsonpath={range .items[*]}{.reason}|{.message}{'\\n'}{end}",
    ).stdout
    return [
        (reason, message) for reason, _, message in (line.partition("|") for line in out.splitlines()) if _
    ]


def expect_secret(kube: KubeAPI, namespace: str, weight: int, primary_new: bool) -> None:
    """The application's Secret as the step says (waits: the Secret is written right after status)."""

    def ok() -> bool:
        data = app_secret(kube, namespace)
        return data.get("weight") == str(weight) and data.get("primaryApiKey") == (
            NEW_KEY if primary_new else OLD_KEY
        )

    wait_until(
        ok, timeout=20, what=f"app Secret at weight {weight}, primary {'new' if primary_new else 'old'}"
    )
    data = app_secret(kube, namespace)
    assert (data["apiKey"], data["previousApiKey"]) == (NEW_KEY, OLD_KEY)
    assert data["primaryProvider"] == ("sendgrid" if primary_new else "ses")
