"""Bad input beyond the CRD schema, against the running operator (`mailferry-operator` as a process):
each bad resource ends with a condition that has a reason, and the operator stays up and keeps working.
(The schema-level cases are in tests/integration/api/test_api_bad_resources.py.)"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import demolib as d

pytestmark = pytest.mark.timeout(300)


def _conditions(kube: KubeAPI, kind: str, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    obj = d.get(kube, kind, namespace, name)
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _wait_condition(
    kube: KubeAPI,
    namespace: str,
    name: str,
    type_: str,
    status: str,
    kind: str = "mailmigrations.mailferry.io",
    timeout: float = 90,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = _conditions(kube, kind, namespace, name).get(type_)
        return c if c and c.get("status") == status and c.get("reason") else None

    return dict(d.wait_for(check, timeout, f"{name}: {type_}={status} with a reason"))


def _migration(name: str, namespace: str, pair: DovecotPair, secret: str, **spec: Any) -> dict[str, Any]:
    m = d.migration_manifest(name, namespace, pair.source, pair.destination, **spec)
    m["spec"]["source"]["auth"]["secretRef"]["name"] = secret
    m["spec"]["destination"]["auth"]["secretRef"]["name"] = secret
    return m


def test_semantically_bad_migrations_get_reasons_and_the_operator_stays_up(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, operator: d.OperatorProcess
) -> None:
    good_user = f"good@{namespace}.test"
    pw = "pw-good-" + namespace
    dovecot_pair.source.add_user(good_user, pw)
    dovecot_pair.destination.add_user(good_user, pw)
    key = good_user.replace("@", "_")
    bad_rows = "source,destination\n" + "".join(f"not-an-address-{i},also bad {i}\n" for i in range(10_000))
    d.apply(
        kube,
        d.secret_manifest("no-key", namespace, {"someone_else_example.test": "x"}),
        d.secret_manifest("good", namespace, {key: pw}),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "bad-rows", "namespace": namespace},
            "data": {"mailboxes": bad_rows},
        },
        _migration("missing-secret", namespace, dovecot_pair, "does-not-exist", mailboxes=[good_user]),
        _migration("secret-without-key", namespace, dovecot_pair, "no-key", mailboxes=[good_user]),
        _migration("bad-inventory", namespace, dovecot_pair, "good", inventory_configmap="bad-rows"),
        _migration("missing-inventory", namespace, dovecot_pair, "good", inventory_configmap="nope"),
        verb=("create",),
    )
    t0 = time.monotonic()
    seen: dict[str, tuple[str, str]] = {}
    for name, reasons in {
        "missing-secret": {"SecretNotFound"},
        "secret-without-key": {"SecretNotFound", "SecretKeyMissing", "NoMailboxReachable"},
        "bad-inventory": {"NoMailboxes", "InventoryInvalid"},
        "missing-inventory": {"InventoryNotFound"},
    }.items():
        c = _wait_condition(kube, namespace, name, "Validated", "False")
        seen[name] = (c["reason"], c.get("message", ""))
        print(f"{name}: Validated=False reason={c['reason']} message={c.get('message', '')[:160]!r}")
        assert c["reason"] in reasons, c
        assert c.get("message"), c
    scan = d.migration(kube, namespace, "secret-without-key")["status"].get("scan") or {}
    errors = scan.get("errors") or []
    print(f"secret-without-key: scan.errors={errors}")
    assert errors and errors[0]["reason"] in {"SecretNotFound", "SecretKeyMissing"}, errors
    print(f"all bad migrations had a reason after {time.monotonic() - t0:.1f}s")
    inv = d.migration(kube, namespace, "bad-inventory")["status"].get("inventory") or {}
    listed = len(inv.get("errors") or [])
    print(f"bad-inventory: total={inv.get('total')} invalid={inv.get('invalid')} errors listed={listed}")
    assert inv.get("invalid") == 10_000, inv.get("invalid")
    assert len(inv.get("errors") or []) <= 100, "status must stay small: errors are capped"
    assert operator.alive(), "the operator died"

    # and it still does its job: a good migration next to the bad ones validates
    d.apply(kube, _migration("good", namespace, dovecot_pair, "good", mailboxes=[good_user]))
    c = _wait_condition(kube, namespace, "good", "Validated", "True")
    print(f"good: Validated=True reason={c['reason']}")
    assert operator.alive()


def test_inventory_over_the_configmap_limit_is_refused_by_the_api_server(
    kube: KubeAPI, namespace: str, tmp_path: Path
) -> None:
    rows = "".join(f"user{i:07d}@big.example.test\n" for i in range(45_000))  # ~1.2 MiB
    f = tmp_path / "mailboxes.csv"
    f.write_text(rows)
    cp = kube.kubectl("create", "configmap", "too-big", "-n", namespace, f"--from-file={f}", check=False)
    print(f"ConfigMap of {len(rows) / 1048576:.2f} MiB: rc={cp.returncode} {cp.stderr.strip()[:200]}")
    assert cp.returncode != 0
    assert "1048576" in cp.stderr or "too long" in cp.stderr or "Too long" in cp.stderr, cp.stderr


def test_two_dnscutovers_for_one_domain_conflict_is_reported(
    kube: KubeAPI, namespace: str, operator: d.OperatorProcess
) -> None:
    def cutover(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "mailferry.io/v1alpha1",
            "kind": "DnsCutover",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "domain": "twice.example.test",
                "provider": {
                    "type": "powerdns",
                    "secretRef": {"name": "pdns"},
                    "zone": "twice.example.test",
                    "powerdns": {"apiUrl": "http://127.0.0.1:9", "serverId": "localhost"},
                },
                "targetPhase": "Planned",
                "records": {"mx": [{"host": "mx.new.example.test", "priority": 10}]},
            },
        }

    d.apply(kube, cutover("first"))
    time.sleep(1)  # "second" is the younger one
    d.apply(kube, cutover("second"))

    def conflict() -> dict[str, Any] | None:
        for c in _conditions(kube, "dnscutovers.mailferry.io", namespace, "second").values():
            if any(w in (c.get("reason") or "") for w in ("Conflict", "Duplicate")):
                return c
        return None

    try:
        c = d.wait_for(conflict, 45, "a conflict condition on the second DnsCutover")
    finally:
        print(f"second: {_conditions(kube, 'dnscutovers.mailferry.io', namespace, 'second')}")
    print(f"second: {c['type']}={c['status']} reason={c['reason']} message={c.get('message', '')[:120]!r}")
    assert "first" in c.get("message", "")
    first = _conditions(kube, "dnscutovers.mailferry.io", namespace, "first")
    assert not any("Conflict" in (x.get("reason") or "") for x in first.values()), first  # the older one wins
    assert operator.alive()


def test_failed_validation_backs_off_and_a_retry_request_tests_at_once(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, operator: d.OperatorProcess
) -> None:
    """Wrong passwords: validation is repeated with back-off (30 s, 60 s, … 15 min: logins lock accounts),
    and after the user fixes the Secret, a new retry-failed annotation value tests again at once, back-off
    reset. Deterministic without timing: the natural retry would announce 60 s, the requested one 30 s."""
    user = f"locked@{namespace}.test"
    dovecot_pair.source.add_user(user, "right-" + namespace)
    dovecot_pair.destination.add_user(user, "right-" + namespace)
    d.apply(
        kube,
        d.secret_manifest("wrong", namespace, {user.replace("@", "_"): "wrong-" + namespace}),
        _migration("locked", namespace, dovecot_pair, "wrong", mailboxes=[user]),
    )
    first = _wait_condition(kube, namespace, "locked", "Validated", "False")
    print(f"first: {first['reason']}: {first['message'][:300]}")
    assert first["reason"] == "NoMailboxReachable" and "tested again in 30s" in first["message"], first

    kube.kubectl(
        "annotate",
        "mailmigrations.mailferry.io/locked",
        "-n",
        namespace,
        "mailferry.io/retry-failed=1",
        "--overwrite",
    )

    def warnings() -> list[str] | None:
        out = kube.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "-o",
            "json",
            "--field-selector",
            "involvedObject.name=locked,reason=NoMailboxReachable",
        ).stdout
        msgs = [e.get("message", "") for e in json.loads(out)["items"] for _ in range(e.get("count") or 1)]
        return msgs if len(msgs) >= 2 else None

    msgs = d.wait_for(warnings, 120, "a second failed validation (its Warning Event)")
    print(f"after the annotation: {len(msgs)} failed validations announced: {[m[-140:-110] for m in msgs]}")
    # both say 30 s: the request reset the back-off (a natural retry would have announced 60 s)
    assert all("tested again in 30s" in m for m in msgs), msgs

    # the fix: the right password, then a new request value; validated without waiting for the back-off
    d.apply(kube, d.secret_manifest("wrong", namespace, {user.replace("@", "_"): "right-" + namespace}))
    kube.kubectl(
        "annotate",
        "mailmigrations.mailferry.io/locked",
        "-n",
        namespace,
        "mailferry.io/retry-failed=2",
        "--overwrite",
    )
    ok = _wait_condition(kube, namespace, "locked", "Validated", "True")
    print(f"after the fix: {ok['reason']}")
    assert operator.alive()
