"""A tenant gets no more than it had (issue 14), against the real API server and the operator process:
a person who may create mailferry resources in a namespace, but not read its Secrets or create Pods,
tries to make the operator send a credential to a listener of theirs, read a Secret nobody opted in,
run a pod of their choosing, switch a public suffix, or leave an object stuck. Each case ends in a
condition with a reason a person can act on; the listeners receive nothing. The tables are printed
(`-s`) for docs/reliability.md."""

from __future__ import annotations

import base64
import contextlib
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures._proc import free_port
from fixtures.bait import BaitListener
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS
from fixtures.prometheus import Prometheus

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "dns"))
import demolib as d
from dnscutover_harness import FAST_ENV, condition, powerdns_provider

pytestmark = pytest.mark.timeout(600)

Obj = dict[str, Any]
CONSENT = {"mailferry.io/credentials": "true"}


def secret(
    name: str, ns: str, data: dict[str, str], labels: dict[str, str] | None = None, **extra: Any
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": CONSENT if labels is None else labels},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        **extra,
    }


def sa_token_secret(name: str, ns: str, data: dict[str, str]) -> Obj:
    """A ServiceAccount token Secret (labelled, even): never read, whatever its labels say."""
    obj = secret(name, ns, data, type="kubernetes.io/service-account-token")
    obj["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "default"}
    return obj


def dns_cutover(name: str, ns: str, domain: str, provider: Obj, target: str = "Switched", **spec: Any) -> Obj:
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "DnsCutover",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "domain": domain,
            "provider": provider,
            "targetPhase": target,
            "records": {"mx": [{"host": "mx1.dest.test", "priority": 10}]},
            **spec,
        },
    }


def settle(
    kube: KubeAPI, ns: str, plural: str, expect: dict[str, tuple[str, str]], timeout: float
) -> dict[str, Obj]:
    """Wait until each named object has condition type expect[name][0] with reason expect[name][1]
    (status False for Validated, True otherwise); returns what each says (reported by the caller)."""
    got: dict[str, Obj] = {}

    def done() -> bool:
        for item in d.get(kube, plural, ns)["items"]:
            name = item["metadata"]["name"]
            if name in expect:
                got[name] = condition(item, expect[name][0])
        return all(got.get(n, {}).get("reason") == r for n, (_, r) in expect.items())

    with contextlib.suppress(AssertionError):
        d.wait_for(done, timeout, f"conditions on {plural}")
    return got


def report(rows: list[tuple[str, str, Obj]]) -> None:
    print("\n| input | condition | reason | message |\n|---|---|---|---|")
    for what, ctype, c in rows:
        print(f"| {what} | {ctype}={c.get('status')} | `{c.get('reason')}` | {str(c.get('message'))[:200]} |")


# ---------------------------------------------------------------------------------------- DnsCutover
@pytest.fixture
def policy_operator(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, prometheus: Prometheus, tmp_path: Path
) -> Iterator[d.OperatorProcess]:
    """The operator as an installer would run it: only the PowerDNS API and Prometheus are allowed."""
    env = {**FAST_ENV, "MAILFERRY_EGRESS_ALLOW": f"{powerdns.api_url},{prometheus.url}"}
    op = d.OperatorProcess(kube, [namespace], tmp_path, extra_env=env).start()
    try:
        yield op
    finally:
        op.stop()


def test_hostile_dnscutovers_get_no_secret_no_egress_no_public_suffix(
    kube: KubeAPI,
    namespace: str,
    powerdns: PowerDNS,
    prometheus: Prometheus,
    policy_operator: d.OperatorProcess,
) -> None:
    ns, op = namespace, policy_operator
    zone = f"tn{ns[-6:]}.test"
    old_mx = ["10 mx.old.test."]
    powerdns.create_zone(zone + ".", [("@", "MX", 60, old_mx), ("@", "TXT", 60, ["v=spf1 -all"])])
    prometheus.set("mf_tenant_ratio", 0.1)
    with BaitListener() as bait:
        d.apply(
            kube,
            secret("pdns", ns, {"api-key": powerdns.api_key}),
            secret("pdns-no-consent", ns, {"api-key": powerdns.api_key}, labels={}),
            sa_token_secret("pdns-sa-token", ns, {"api-key": powerdns.api_key}),
            verb=("create",),
        )

        def cutover(name: str, domain: str, secret_name: str = "pdns", api_url: str = "", **spec: Any) -> Obj:
            provider = powerdns_provider(api_url or powerdns.api_url, secret_name)
            if domain.endswith(zone):
                provider["zone"] = zone
            return dns_cutover(name, ns, domain, provider, **spec)

        prom_gate = {
            "ttlLowered": [
                {
                    "name": "ratio",
                    "type": "prometheus",
                    "prometheus": {
                        "address": bait.url,
                        "query": "mf_tenant_ratio",
                        "thresholdRange": {"max": 0.5},
                    },
                }
            ]
        }
        cases = {
            "no-consent": (
                "provider Secret without mailferry.io/credentials",
                "Stalled",
                "SecretNotPermitted",
                cutover("no-consent", f"a.{zone}", "pdns-no-consent"),
            ),
            "sa-token": (
                "provider Secret of type service-account-token (labelled)",
                "Stalled",
                "SecretNotPermitted",
                cutover("sa-token", f"b.{zone}", "pdns-sa-token"),
            ),
            "api-url": (
                "provider.powerdns.apiUrl at a listener",
                "Stalled",
                "EgressNotAllowed",
                cutover("api-url", f"c.{zone}", api_url=bait.url),
            ),
            "prom-address": (
                "prometheus gate address at a listener",
                "Stalled",
                "GateFailed",
                cutover("prom-address", f"d.{zone}", gates=prom_gate),
            ),
            "public-suffix": (
                "domain co.uk (a public suffix)",
                "Stalled",
                "PublicSuffix",
                cutover("public-suffix", "co.uk"),
            ),
        }
        d.apply(kube, *(c[3] for c in cases.values()), verb=("create",))
        got = settle(kube, ns, "dnscutovers.mailferry.io", {n: (c[1], c[2]) for n, c in cases.items()}, 120)
        report([(c[0], c[1], got.get(n, {})) for n, c in cases.items()])
        for n, c in cases.items():
            assert got.get(n, {}).get("reason") == c[2], (n, got.get(n))
            assert got[n].get("status") == "True", (n, got[n])
        assert "not labelled mailferry.io/credentials=true" in got["no-consent"]["message"]
        assert "kubernetes.io/service-account-token" in got["sa-token"]["message"]
        assert "EgressNotAllowed" in str(
            d.get(kube, "dnscutovers.mailferry.io", ns, "prom-address")["status"]
        )
        assert "public suffix" in got["public-suffix"]["message"]
        statuses = str([i.get("status") for i in d.get(kube, "dnscutovers.mailferry.io", ns)["items"]])
        assert powerdns.api_key not in statuses and "BAIT-PAGE" not in statuses
        assert bait.data() == b"", bait.data()[:200]  # not one byte: no X-API-Key, no query
    assert powerdns.answer(zone + ".", "MX") == old_mx
    assert op.alive()


def test_dnscutover_with_a_150kb_annotation_is_deleted_within_seconds(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, policy_operator: d.OperatorProcess
) -> None:
    """Kopf copied every annotation into its last-handled-configuration: 2 x 150 KB was over the API
    server's 256 KB annotation limit, every patch failed with 422 and the finalizer stayed."""
    ns = namespace
    zone = f"big{ns[-6:]}.test"
    powerdns.create_zone(zone + ".", [("@", "MX", 60, ["10 mx.old.test."])])
    d.apply(kube, secret("pdns", ns, {"api-key": powerdns.api_key}), verb=("create",))
    big = dns_cutover("big", ns, zone, powerdns_provider(powerdns.api_url, "pdns"), target="Planned")
    big["metadata"]["annotations"] = {"example.com/notes": "n" * 150_000}
    d.apply(kube, big, verb=("create",))
    handled = d.wait_for(
        lambda: (
            (o := d.get(kube, "dnscutovers.mailferry.io", ns, "big"))
            and (o.get("metadata", {}).get("finalizers") and condition(o, "Ready").get("status") == "True")
            and o
        ),
        90,
        "the operator to handle the annotated DnsCutover (finalizer + Ready)",
    )
    print(f"handled; finalizers {handled['metadata']['finalizers']}")
    started = time.monotonic()
    kube.kubectl("delete", "dnscutover", "big", "-n", ns, "--wait=false")
    d.wait_for(
        lambda: kube.kubectl("get", "dnscutover", "big", "-n", ns, check=False).returncode != 0,
        60,
        "the annotated DnsCutover to be gone",
    )
    print(f"DnsCutover with a 150 KB annotation deleted {time.monotonic() - started:.1f} s after the request")
    assert policy_operator.alive()


# ------------------------------------------------------------------------------------- MailMigration
def migration(name: str, ns: str, source: Obj, destination: Obj | None = None, **spec: Any) -> Obj:
    body: Obj = {
        "source": source,
        "destination": destination or {**source, "host": "127.0.0.2"},
        **spec,
    }
    if "inventoryRef" not in body:
        body.setdefault("mailboxes", [{"source": "victim@example.com"}])
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailMigration",
        "metadata": {"name": name, "namespace": ns},
        "spec": body,
    }


def endpoint(host: str, port: int, secret_name: str, **auth: Any) -> Obj:
    return {
        "host": host,
        "port": port,
        "security": "none",
        "connectTimeoutSeconds": 5,
        "readTimeoutSeconds": 5,
        "auth": {"secretRef": {"name": secret_name}, **auth},
    }


def test_hostile_mailmigrations_get_no_secret_no_egress_no_pod_and_stuck_ones_say_why(
    kube: KubeAPI, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    with BaitListener(imap=True) as imap_bait, BaitListener() as http_bait:
        # the installer allowed one other token endpoint host, not the tenant's listener
        op = d.OperatorProcess(
            kube, [ns], tmp_path, extra_env={"MAILFERRY_EGRESS_ALLOW": "https://login.example.org"}
        ).start()
        try:
            _mailmigration_cases(kube, ns, op, imap_bait, http_bait)
        finally:
            op.stop()
            kube.kubectl(
                "delete", "jobs,mailboxsyncs.mailferry.io", "--all", "-n", ns, "--wait=false", check=False
            )


def _mailmigration_cases(
    kube: KubeAPI, ns: str, op: d.OperatorProcess, imap_bait: BaitListener, http_bait: BaitListener
) -> None:
    from mailferry_operator.mailmigration.naming import mailbox_sync_name

    bait = endpoint("127.0.0.1", imap_bait.port, "sa-token")
    unreachable = endpoint("127.0.0.1", free_port(), "creds")
    d.apply(
        kube,
        sa_token_secret(
            "sa-token", ns, {"token": "VICTIM-SA-TOKEN", "victim_example.com": "VICTIM-SA-TOKEN"}
        ),
        secret("no-consent", ns, {"victim_example.com": "NOT-CONSENTED-PW"}, labels={}),
        secret(
            "creds",
            ns,
            {"victim_example.com": "pw", "client-secret": "CLIENT-SECRET-CANARY", "bob_example.com": "pw"},
        ),
        d.inventory_manifest("inv-short", ns, "ab\nbob@example.com\n"),
        d.inventory_manifest(
            "inv-cr", ns, "source,destination\rvictim@example.com,victim@new.example\rbob@example.com,\r"
        ),
        verb=("create",),
    )
    # a MailboxSync made beforehand under the name the operator will use for `squatted`
    squat_name = mailbox_sync_name("squatted", "victim@example.com")
    d.apply(
        kube,
        {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "MailboxSync",
            "metadata": {"name": squat_name, "namespace": ns},
            "spec": {
                "source": {
                    "username": "victim@example.com",
                    "endpoint": endpoint("imap.squatter.example", 993, "creds"),
                },
                "destination": {
                    "username": "victim@example.com",
                    "endpoint": endpoint("imap.squatter.example", 993, "creds"),
                },
            },
        },
        verb=("create",),
    )
    xoauth2 = endpoint(
        "127.0.0.1",
        imap_bait.port,
        "creds",
        method="xoauth2",
        oauth2={
            "provider": "microsoft",
            "clientId": "app",
            "tenantId": "t",
            "tokenUrl": f"{http_bait.url}/token",
        },
    )
    cases: dict[str, tuple[str, str, str, Obj]] = {
        "sa-token": (
            "IMAP Secret = a service-account-token Secret, source host = a listener",
            "Validated",
            "SecretNotPermitted",
            migration(
                "sa-token",
                ns,
                {**bait, "auth": {"secretRef": {"name": "sa-token"}}},
                mailboxes=[{"source": "victim@example.com", "secretKey": "token"}],
            ),
        ),
        "no-consent": (
            "IMAP Secret without mailferry.io/credentials",
            "Validated",
            "SecretNotPermitted",
            migration("no-consent", ns, endpoint("127.0.0.1", imap_bait.port, "no-consent")),
        ),
        "token-url": (
            "OAuth2 tokenUrl at a listener",
            "Validated",
            "EgressNotAllowed",
            migration("token-url", ns, xoauth2, unreachable),
        ),
        "worker-image": (
            "spec.worker.image registry.invalid/exfiltrate + a powerful ServiceAccount",
            "Validated",
            "WorkerNotAllowed",
            migration(
                "worker-image",
                ns,
                unreachable,
                worker={"image": "registry.invalid/exfiltrate:latest", "serviceAccountName": "default"},
            ),
        ),
        "squatted": (
            "a MailboxSync created beforehand under the operator's name",
            "Validated",
            "MailboxSyncNameTaken",
            migration("squatted", ns, unreachable),
        ),
        "mapping-backref": (
            "folder mapping with a backreference (not RE2)",
            "Validated",
            "InvalidFolderMapping",
            migration(
                "mapping-backref", ns, unreachable, folders={"mappings": [{"from": "^(a)\\1$", "to": "x"}]}
            ),
        ),
    }
    plain = {
        "short-login": migration("short-login", ns, unreachable, inventoryRef={"name": "inv-short"}),
        "cr-only": migration("cr-only", ns, unreachable, inventoryRef={"name": "inv-cr"}),
        "recreate": migration(
            "recreate",
            ns,
            unreachable,
            mailboxes=[{"source": "victim@example.com"}, {"source": "bob@example.com"}],
        ),
    }
    d.apply(kube, *(c[3] for c in cases.values()), *plain.values(), verb=("create",))
    got = settle(kube, ns, "mailmigrations.mailferry.io", {n: (c[1], c[2]) for n, c in cases.items()}, 120)

    # --- the stuck ones of old: inventory rows, CR-only CSV, a MailboxSync deleted by hand
    def inventory(name: str) -> Obj:
        return (d.get(kube, "mailmigrations.mailferry.io", ns, name).get("status") or {}).get(
            "inventory"
        ) or {}

    short = d.wait_for(
        lambda: inventory("short-login").get("total") and inventory("short-login"),
        60,
        "short-login inventory",
    )
    cr = d.wait_for(
        lambda: inventory("cr-only").get("total") and inventory("cr-only"), 60, "cr-only inventory"
    )

    def syncs(name: str) -> dict[str, str]:
        items = d.get(kube, "mailboxsyncs.mailferry.io", ns)["items"]
        return {
            i["metadata"]["name"]: i["metadata"]["uid"]
            for i in items
            if i["metadata"].get("labels", {}).get("mailferry.io/migration") == name
        }

    before = d.wait_for(
        lambda: len(syncs("recreate")) == 2 and syncs("recreate"), 60, "2 MailboxSyncs of recreate"
    )
    gone = sorted(before)[0]
    kube.kubectl("delete", "mailboxsync", gone, "-n", ns)
    again = d.wait_for(
        lambda: (s := syncs("recreate")).get(gone, before[gone]) != before[gone] and s,
        60,
        f"{gone} made again",
    )

    rows = [(c[0], c[1], got.get(n, {})) for n, c in cases.items()]
    rows.append(
        (
            "inventory row with a 2-character login",
            "status.inventory",
            {
                "status": f"invalid={short.get('invalid')}",
                "reason": "row error",
                "message": str(short.get("errors")),
            },
        )
    )
    rows.append(
        (
            "CR-only CSV inventory",
            "status.inventory",
            {"status": f"valid={cr.get('valid')}", "reason": "read", "message": str(cr.get("errors"))},
        )
    )
    rows.append(
        (
            "MailboxSync deleted by hand",
            "re-created",
            {
                "status": "True",
                "reason": "new uid",
                "message": f"{gone}: {before[gone][:8]} -> {again[gone][:8]}",
            },
        )
    )
    report(rows)
    for n, c in cases.items():
        assert got.get(n, {}).get("reason") == c[2] and got[n].get("status") == "False", (n, got.get(n))
    assert "kubernetes.io/service-account-token" in got["sa-token"]["message"]
    assert "registry.invalid/exfiltrate:latest" in got["worker-image"]["message"]
    assert squat_name in got["squatted"]["message"] and "no owner; written by" in got["squatted"]["message"]
    assert "RE2" in got["mapping-backref"]["message"]
    assert short["invalid"] == 1 and short["valid"] == 1 and "at least 3 characters" in str(short["errors"])
    assert cr["valid"] == 2 and cr.get("invalid", 0) == 0, cr
    # nothing left the cluster: no SA token, no password, no client secret; no Job for the foreign image
    assert b"VICTIM-SA-TOKEN" not in imap_bait.data() and b"NOT-CONSENTED-PW" not in imap_bait.data()
    assert http_bait.data() == b"", http_bait.data()[:200]
    assert b"CLIENT-SECRET-CANARY" not in imap_bait.data()
    jobs = d.get(kube, "jobs", ns)["items"]
    assert not [j for j in jobs if "exfiltrate" in str(j["spec"])], jobs
    # no Job (which the kubelet would give the Secret volumes) for a Secret that did not opt in
    mounted = {
        v["secret"]["secretName"]
        for j in jobs
        for v in j["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    assert not mounted & {"sa-token", "no-consent"}, mounted
    squatter = d.get(kube, "mailboxsyncs.mailferry.io", ns, squat_name)
    assert squatter["spec"]["source"]["endpoint"]["host"] == "imap.squatter.example"  # not overwritten
    log = op.log.read_text(errors="replace")
    assert "VICTIM-SA-TOKEN" not in log and "CLIENT-SECRET-CANARY" not in log and "Traceback" not in log
    # every line about an object names it: namespace/Kind/name
    about = [line for line in log.splitlines() if " kopf.objects " in line or " mailferry." in line]
    named = re.compile(rf"\[{re.escape(ns)}/[A-Z][A-Za-z]+/[a-z0-9.-]+\]")
    print(f"{len(about)} log lines about objects, e.g. {about[0] if about else None}")
    assert about and all(named.search(line) for line in about), [x for x in about if not named.search(x)][:3]
    assert op.alive()
