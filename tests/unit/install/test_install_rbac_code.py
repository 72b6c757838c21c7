"""The RBAC we ship matches the Kubernetes calls the code makes.

Scans operator/ and worker/ for the API calls (the REST paths given to the shared HTTP client in
mailferry_kube.client, client-library `*_namespaced_*` calls should one come back, Kopf decorators,
Kopf's own writes) and compares the (group, resource, verb) set with the rules in
deploy/base/rbac.yaml (the chart renders the same rules: tests/integration/install compares them).
A new call without a grant fails here, before it fails as a 403 in a cluster; a grant nothing uses fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
OPERATOR = ROOT / "operator" / "mailferry_operator"
WORKER = ROOT / "worker" / "mailferry_worker"
IMAP = ROOT / "common" / "mailferry_imap"  # the worker's IMAP client and credentials (shared kernel)
KUBE_CLIENT = ROOT / "common" / "mailferry_kube" / "client.py"
BASE = ROOT / "deploy" / "base"

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)

CORE_KINDS = {
    "config_map": "configmaps",
    "secret": "secrets",
    "event": "events",
    "pod": "pods",
    "service_account": "serviceaccounts",
    "namespace": "namespaces",
}
BATCH_KINDS = {"job": "jobs"}
VERBS = {
    "read": "get",
    "list": "list",
    "create": "create",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
}
# Granted ahead of use, on purpose: removing a mailbox from the inventory deletes its MailboxSync;
# retrying a failed batch deletes its Job. Owner references cover deletion of the whole migration.
ANTICIPATED = {
    ("mailferry.io", "mailboxsyncs", "delete"),
    ("batch", "jobs", "delete"),
    ("mailferry.io", "mailboxsyncs", "get"),
    ("mailferry.io", "mailmigrations", "get"),
    # Not a call: the API server checks it for blockOwnerDeletion in owner references.
    ("mailferry.io", "mailmigrations/finalizers", "update"),
    ("mailferry.io", "dnscutovers/finalizers", "update"),
}


def sources(root: Path) -> list[str]:
    return [p.read_text() for p in sorted(root.rglob("*.py"))]


# request("VERB", f"/path") and kube.get_or_none(f"/path") (a GET); the path is always a literal.
REST = re.compile(
    r'(?:request\(\s*"(GET|POST|PATCH|PUT|DELETE)",|get_or_none\()\s*'
    r'f?"(/api/v1|/apis/([\w.]+)/\w+)/namespaces/\{[^}]+\}/(\w+)'
    r'(/\{[^}]+\})?(/status)?"'
)
REST_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def rest_needs(code: str) -> set[Grant]:
    """Raw REST calls with a literal path: request("GET", f"/api/v1/namespaces/{ns}/secrets/{name}")."""
    needs: set[Grant] = set()
    for method, _prefix, group, resource, named, status in REST.findall(code):
        method = method or "GET"  # get_or_none
        verb = ("get" if named else "list") if method == "GET" else REST_VERBS[method]
        needs.add((group, resource + status, verb))
    return needs


def operator_needs(code: str) -> set[Grant]:
    needs: set[Grant] = set()
    consts = dict(re.findall(r'^(\w+)\s*=\s*"([a-z]+)"\s*$', code, re.M))
    for verb, kind in re.findall(
        r"\.(read|list|create|patch|replace|delete)_namespaced_(\w+?)(?:_status)?\(", code
    ):
        if kind == "custom_object":
            continue
        if kind in CORE_KINDS:
            needs.add(("", CORE_KINDS[kind], VERBS[verb]))
        elif kind in BATCH_KINDS:
            needs.add(("batch", BATCH_KINDS[kind], VERBS[verb]))
        else:
            raise AssertionError(f"unknown API call {verb}_namespaced_{kind}: teach this test and the RBAC")
    needs |= rest_needs(code)
    # Custom objects: the plural is a constant or a literal among the arguments; wrappers in kube/client.py
    # take
    # it as a parameter, so follow the callers of those wrappers too.
    wrappers = {
        "create_custom": "create",
        "patch_custom": "patch",
        "list_custom": "list",
        "patch_custom_status": "patch/status",
        "get_custom": "get",
    }
    for name, verb in wrappers.items():
        for args in re.findall(rf"kube\.{name}\(([^)]*)", code):
            plural = next((consts.get(a.strip(), a.strip().strip('"')) for a in args.split(",")[1:2]), "")
            if verb.endswith("/status"):
                needs.add(("mailferry.io", f"{plural}/status", "patch"))
            else:
                needs.add(("mailferry.io", plural, verb))
    for verb, args in re.findall(
        r"\.(get|list|create|patch|delete)_namespaced_custom_object(?:_status)?\(([^)]*)", code
    ):
        parts = [a.strip() for a in args.split(",")]
        if len(parts) >= 4 and parts[0] == "API_GROUP":
            plural = consts.get(parts[3], parts[3].strip('"'))
            if plural in {"mailmigrations", "mailboxsyncs", "dnscutovers"}:
                needs.add(("mailferry.io", plural, verb))
    # Kopf: every resource it watches (handlers, daemons, timers, indexes) is listed and watched; resources
    # with change handlers, daemons or timers get its finalizer and progress annotations (patch).
    for deco, args in re.findall(r"@kopf\.(on\.\w+|daemon|timer|index)\(([^)]*)\)", code):
        if deco == "on.startup" or deco == "on.cleanup" or deco == "on.login" or deco == "on.probe":
            continue
        parts = [a.strip() for a in args.split(",")]
        group = consts.get(parts[0], parts[0].strip('"')) if parts[0] != "API_GROUP" else "mailferry.io"
        plural = consts.get(parts[2], parts[2].strip('"'))
        needs |= {(group, plural, "list"), (group, plural, "watch")}
        if deco not in ("index", "on.event"):
            needs.add((group, plural, "patch"))
    if "kopf_event_safe(" in code or re.search(r"kopf\.(event|info|warn|exception)\(", code):
        needs.add(("", "events", "create"))
    return needs


def worker_needs(code: str) -> set[Grant]:
    needs: set[Grant] = set()
    calls = re.findall(
        r'\.request\(\s*"(GET|PATCH|POST|DELETE|PUT)",\s*(self\.(?:mailboxsync|lease)_path\([^)]*\)|f?"[^"]*")'
        r'(\s*\+\s*"/status")?',
        code,
    )
    for method, path, status in calls:
        verb = {"GET": "get", "PATCH": "patch", "POST": "create", "DELETE": "delete", "PUT": "update"}[method]
        if "mailboxsync_path" in path:
            needs.add(("mailferry.io", "mailboxsyncs/status" if status else "mailboxsyncs", verb))
        elif "lease_path" in path:
            needs.add(("coordination.k8s.io", "leases", verb))
        elif "/secrets/" in path:
            needs.add(("", "secrets", verb))
        elif "/events" in path:
            needs.add(("", "events", verb))
    return needs


def granted(rules: list[dict[str, list[str]]]) -> set[Grant]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def base_rules(name: str) -> list[dict[str, list[str]]]:
    docs = [d for d in yaml.safe_load_all((BASE / "rbac.yaml").read_text()) if d]
    return next(d["rules"] for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name)


KOPF_CLUSTER = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}


def test_operator_rbac_matches_its_calls() -> None:
    needs = set().union(*(operator_needs(code) for code in sources(OPERATOR)))
    assert ("batch", "jobs", "create") in needs and (
        "mailferry.io",
        "mailmigrations/status",
        "patch",
    ) in needs
    have = granted(base_rules("mailferry-operator"))
    assert needs <= have, f"the operator calls the API without a grant: {sorted(needs - have)}"
    unused = have - needs - ANTICIPATED - KOPF_CLUSTER
    assert not unused, f"granted but never used (least privilege): {sorted(unused)}"


def test_worker_rbac_matches_its_calls() -> None:
    # The kube client also reads Secrets (for the `mailferry verify` CLI, run with the user's own identity).
    worker_code = [*sorted(WORKER.rglob("*.py")), *sorted(IMAP.rglob("*.py"))]
    needs = set().union(*(worker_needs(p.read_text()) for p in worker_code))
    needs |= {n for n in worker_needs(KUBE_CLIENT.read_text()) if n[1] != "secrets"}
    assert needs == {
        ("mailferry.io", "mailboxsyncs", "get"),
        ("mailferry.io", "mailboxsyncs/status", "patch"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "delete"),
        ("", "events", "create"),
    }
    assert granted(base_rules("mailferry-worker")) == needs
    # The Job path never reads Secrets via the API (they are mounted); ApiSecrets is for `mailferry verify`.
    main = (WORKER / "main.py").read_text()
    assert "ApiSecrets" not in main
    assert ("", "secrets", "get") in worker_needs(KUBE_CLIENT.read_text())


def test_scanner_can_fail() -> None:
    code = 'X = "jobs"\nawait batch.delete_namespaced_job(n, ns)\n'
    code += "await core.replace_namespaced_secret(a, b, c)\n"
    assert operator_needs(code) == {("batch", "jobs", "delete"), ("", "secrets", "update")}
    rest = 'await request(\n    "DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", None)\n'
    rest += 'await request("GET", f"/api/v1/namespaces/{ns}/configmaps", labelSelector=s)\n'
    rest += (
        'await request("PATCH", f"/apis/mailferry.io/v1alpha1/namespaces/{ns}/dnscutovers/{n}/status", b)\n'
    )
    assert operator_needs(rest) == {
        ("batch", "jobs", "delete"),
        ("", "configmaps", "list"),
        ("mailferry.io", "dnscutovers/status", "patch"),
    }
