"""Building blocks shared by `make demo`, the operator e2e tests and `make bench-operator`.

Usable outside pytest: it reuses the server helpers in tests/fixtures (plain functions and classes),
never pytest fixtures. Everything runs on loopback: kube-apiserver+etcd, two Dovecot servers, the
operator as a subprocess (`mailferry-operator`), and the local job runner.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fixtures._proc import ManagedProcess, Supervised, free_port, port_open, wait_until  # noqa: E402
from fixtures.dovecot import Dovecot, make_message  # noqa: E402
from fixtures.kubeapi import KubeAPI  # noqa: E402
from mailferry_kubectl.verify import VerifyResult, verify_mailboxes  # noqa: E402

REPO = TESTS.parent
BIN = Path(sys.executable).parent
GROUP = "mailferry.io"
FIRST = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "xena",
    "yara",
    "zoe",
]
FOLDERS = ["INBOX", "Sent", "Archive", "Projects/2026"]


@dataclass
class Org:
    domain: str
    users: dict[str, str] = field(default_factory=dict)  # address -> password
    messages: dict[str, int] = field(default_factory=dict)  # address -> messages seeded

    @property
    def addresses(self) -> list[str]:
        return sorted(self.users)


def make_org(n: int, domain: str = "example.test", prefix: str = "") -> Org:
    org = Org(domain)
    for i in range(n):
        name = FIRST[i % len(FIRST)] + (str(i // len(FIRST)) if i >= len(FIRST) else "")
        org.users[f"{prefix}{name}@{domain}"] = f"pw-{name}-{random.randrange(10**9)}"
    return org


def add_org_users(src: Dovecot, dst: Dovecot, org: Org, wrong_destination: Iterable[str] = ()) -> None:
    """Same users on both servers (the destination passwords may differ for `wrong_destination`)."""
    src.add_users(dict(org.users))
    dst.add_users(dict(org.users))
    for addr in wrong_destination:
        dst.add_user(addr, org.users[addr] + "-but-different")


def start_dovecots(
    stack: ExitStack, work: Path, roles: Iterable[str], prefix: str, org: Org, extra_config: str = ""
) -> dict[str, Dovecot]:
    """One Dovecot per role under work/<role> holding the org's users, destroyed when the stack closes."""
    servers: dict[str, Dovecot] = {}
    for role in roles:
        (work / role).mkdir()
        server = Dovecot(work / role, f"{prefix}-{role}", extra_config=extra_config)
        stack.callback(server.destroy)
        server.start()
        server.add_users(dict(org.users))
        servers[role] = server
    return servers


def same_address_inventory(addresses: Iterable[str]) -> str:
    """An inventory CSV copying each address onto itself, its password under the address's secret key."""
    return "source,destination,secretKey\n" + "".join(f"{a},{a},{a.replace('@', '_')}\n" for a in addresses)


def seed_org(src: Dovecot, org: Org, per_mailbox: int = 12, seed: int = 7) -> int:
    """Deterministic mail in several folders of each source mailbox; returns the total."""
    rnd = random.Random(seed)
    total = 0
    for addr in org.addresses:
        count = 0
        for f_index, folder in enumerate(FOLDERS):
            n = max(1, per_mailbox // len(FOLDERS) + (1 if f_index < per_mailbox % len(FOLDERS) else 0))
            msgs = [
                make_message(
                    f"{folder} {i} for {addr}", size=rnd.choice((600, 2000, 9000)), domain=org.domain
                )
                for i in range(n)
            ]
            count += src.append(addr, folder, msgs, flags="\\Seen" if f_index % 2 else "")
        org.messages[addr] = count
        total += count
    return total


def secret_manifest(name: str, namespace: str, values: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        # the owner's consent: the operator reads no other Secret (docs/threat-model.md)
        "metadata": {"name": name, "namespace": namespace, "labels": {"mailferry.io/credentials": "true"}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def inventory_manifest(name: str, namespace: str, csv: str) -> dict[str, Any]:
    """A ConfigMap holding a mailbox inventory CSV under `mailboxes` (for spec.inventoryRef)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"mailboxes": csv},
    }


def credentials(org: Org) -> dict[str, str]:
    return {addr.replace("@", "_"): pw for addr, pw in org.users.items()}


def migration_manifest(
    name: str,
    namespace: str,
    src: Dovecot,
    dst: Dovecot,
    mailboxes: list[str] | None = None,
    inventory_configmap: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {
            "host": "127.0.0.1",
            "port": src.port,
            "security": "none",
            "auth": {"method": "password", "secretRef": {"name": f"{name}-source"}},
        },
        "destination": {
            "host": "127.0.0.1",
            "port": dst.port,
            "security": "none",
            "auth": {"method": "password", "secretRef": {"name": f"{name}-destination"}},
        },
        "batchSize": 5,
        "maxConcurrentJobs": 2,
        "deltaInterval": "5s",
    }
    if inventory_configmap:
        body["inventoryRef"] = {"name": inventory_configmap}
    else:
        body["mailboxes"] = [{"source": m} for m in mailboxes or []]
    body.update(spec)
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MailMigration",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def seeded_org(src: Dovecot, dst: Dovecot, n: int, per_mailbox: int, domain: str) -> Org:
    """`n` users on both servers, `per_mailbox` messages each on the source (seed_org)."""
    org = make_org(n, domain=domain)
    add_org_users(src, dst, org)
    seed_org(src, org, per_mailbox)
    return org


def org_migration(
    name: str, namespace: str, src: Dovecot, dst: Dovecot, org: Org, **spec: Any
) -> list[dict[str, Any]]:
    """A MailMigration of every mailbox of `org` and its two credential Secrets (`<name>-source`,
    `<name>-destination`), ready for `apply`."""
    return [
        secret_manifest(f"{name}-source", namespace, credentials(org)),
        secret_manifest(f"{name}-destination", namespace, credentials(org)),
        migration_manifest(name, namespace, src, dst, org.addresses, **spec),
    ]


def cutover_manifest(name: str, namespace: str, domain: str, **spec: Any) -> dict[str, Any]:
    """A minimal valid DnsCutover (RFC 2136 on loopback, one MX); `spec` adds or overrides fields."""
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "DnsCutover",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "domain": domain,
            "provider": {"type": "rfc2136", "rfc2136": {"server": "127.0.0.1"}},
            "records": {"mx": [{"host": "mx.new.example", "priority": 10}]},
            **spec,
        },
    }


def condition_entry(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    """A status condition as the operator writes it."""
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-12-03T10:00:00Z",
    }


def set_status(kube: KubeAPI, namespace: str, plural: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge `status` into a mailferry object's status subresource (what the operator would write)."""
    kube.kubectl(
        "patch", f"{plural}.{GROUP}", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": dict(status)}),
    )  # fmt: skip


def apply(kube: KubeAPI, *docs: Mapping[str, Any], verb: tuple[str, ...] = ("apply",)) -> None:
    """`kubectl apply -f` a file holding the documents (`verb=("create",)` for objects too big to
    carry a last-applied annotation)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all([dict(d) for d in docs], f, sort_keys=False)
        path = f.name
    try:
        kube.kubectl(*verb, "-f", path)
    finally:
        os.unlink(path)


def get(
    kube: KubeAPI, kind: str, namespace: str, name: str | None = None, selector: str | None = None
) -> Any:
    args = ["get", kind, "-n", namespace, "-o", "json"]
    if name:
        args.insert(2, name)
    if selector:
        args += ["-l", selector]
    return json.loads(kube.kubectl(*args).stdout)


def migration(kube: KubeAPI, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(kube, "mailmigrations.mailferry.io", namespace, name))


def worker_jobs(kube: KubeAPI, namespace: str, name: str) -> list[dict[str, Any]]:
    items = get(kube, "jobs", namespace, selector=f"mailferry.io/migration={name}")["items"]
    return list(items)


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_until(check, timeout=timeout, interval=0.5, what=what)


def status_brief(*fields: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A status shown as ``fields`` and its conditions, one (status, reason, message) per type."""

    def brief(status: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: status.get(k) for k in fields}
        out["conditions"] = {
            c["type"]: (c["status"], c["reason"], c.get("message", "")[:200])
            for c in status.get("conditions") or []
        }
        return out

    return brief


def wait_object(
    kube: KubeAPI,
    plural: str,
    namespace: str,
    name: str,
    check: Callable[[dict[str, Any]], object],
    what: str,
    *,
    describe: Callable[[Mapping[str, Any]], object],
    timeout: float = 60,
    log_text: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Poll one object until ``check`` holds, and return it. On timeout the failure shows its last
    status as ``describe`` renders it, and the tail of ``log_text()`` (the operator's log, without the
    lines that only say a request went through)."""
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        nonlocal last
        last = kube.get(plural, name, namespace)
        return last if check(last) else None

    try:
        return wait_until(probe, timeout=timeout, what=what)
    except AssertionError as exc:
        lines = log_text().splitlines() if log_text else []
        tail = "\n".join(line for line in lines if "HTTP Request" not in line and "succeeded" not in line)
        status = describe(last.get("status") or {})
        raise AssertionError(f"{exc}\nstatus: {status}\noperator log tail:\n{tail[-4000:]}") from None


LOOPBACK_EGRESS = "http://127.0.0.1:*,https://127.0.0.1:*"


class OperatorProcess(Supervised):
    """`mailferry-operator` as a subprocess watching `namespaces` (kill() is kill -9 of its group; start()
    again restarts it, on fresh ports). `extra_args` e.g. ["--peering", NAME, "--priority", "100"]."""

    def __init__(
        self,
        kube: KubeAPI,
        namespaces: list[str],
        log_dir: Path,
        extra_env: Mapping[str, str] | None = None,
        *,
        name: str = "operator",
        log_level: str = "info",
        extra_args: Sequence[str] = (),
        log: Path | None = None,
    ) -> None:
        self.kube = kube
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.namespaces = namespaces
        self.name = name
        self.log = log or log_dir / f"{name}.log"
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.env = dict(kube.env)
        # the tests' PowerDNS, Prometheus and token endpoints listen on loopback ports: the installer's
        # egress allowlist of a test installation (a test of the policy passes its own)
        self.env["MAILFERRY_EGRESS_ALLOW"] = LOOPBACK_EGRESS
        self.env.update(extra_env or {})
        self.starts = 0

    def start(self, timeout: float = 90) -> Self:
        if self.starts:  # a restart after a kill: the old ports may still be held for a moment
            self.metrics_port, self.liveness_port = free_port(), free_port()
        argv = [
            str(BIN / "mailferry-operator"),
            "--metrics-port",
            str(self.metrics_port),
            "--liveness-port",
            str(self.liveness_port),
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        self.starts += 1
        self.proc = ManagedProcess(f"{self.name}#{self.starts}", argv, log=self.log, env=self.env).start()
        port = self.liveness_port
        self.proc.wait_ready(lambda: port_open(port), timeout=timeout)
        return self

    def metrics(self) -> str:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Running, and its liveness endpoint answers 200."""
        import httpx

        if self.proc is None or not self.proc.running():
            return False
        return httpx.get(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=5).status_code == 200

    def memory_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM = peak RSS) in MB, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return fields["VmRSS"], fields["VmHWM"]


class JobRunnerProcess:
    """tests/tools/jobrunner.py as a subprocess (so a test can kill the operator without the runner)."""

    def __init__(self, kube: KubeAPI, namespaces: list[str], log_dir: Path) -> None:
        argv = [
            sys.executable,
            str(REPO / "tests" / "tools" / "jobrunner.py"),
            "--kubeconfig",
            str(kube.kubeconfig),
            "--log-dir",
            str(log_dir / "jobs"),
        ]
        for ns in namespaces:
            argv += ["--namespace", ns]
        self.log_dir = log_dir / "jobs"
        self.proc = ManagedProcess("jobrunner", argv, log=log_dir / "jobrunner.log", env=dict(kube.env))

    def start(self) -> JobRunnerProcess:
        self.proc.start()
        time.sleep(0.5)
        if not self.proc.running():
            raise RuntimeError(self.proc.diagnostics())
        return self

    def stop(self) -> None:
        self.proc.stop()


def verify(
    kube: KubeAPI, namespace: str, name: str, skip: Iterable[str] = (), timeout: float = 300
) -> VerifyResult:
    """`kubectl mailferry verify`'s code (the worker's verifier, `mailferry verify --mailboxsync X --json`,
    per MailboxSync of the migration) for every mailbox whose source address is not in `skip`."""
    skipped = set(skip)
    syncs = [
        s
        for s in get(kube, "mailboxsyncs.mailferry.io", namespace, selector=f"mailferry.io/migration={name}")[
            "items"
        ]
        if s["spec"]["source"]["username"] not in skipped
    ]
    return verify_mailboxes(syncs, namespace, env=kube.env, timeout=timeout)


def folder_counts(server: Dovecot, user: str) -> dict[str, int]:
    return {k: v.get("messages", 0) for k, v in server.mailbox_status(user, "messages").items()}
