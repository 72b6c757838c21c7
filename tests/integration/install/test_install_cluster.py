"""The chart and the kustomize tree installed into the real test API server, with RBAC enforced for real.

Tokens for the chart's ServiceAccounts come from the TokenRequest API (`kubectl create token`, via
KubeAPI.service_account_kubeconfig); every allowed/refused check goes through the API server's RBAC
authorizer, both as `kubectl auth can-i` (SelfSubjectAccessReview) and as real requests.

No kubelet runs here: Deployments never become ready, so `helm install` runs without --wait.
The Prometheus Operator does not run either: its ServiceMonitor/PrometheusRule CRDs are installed as
schema-less stand-ins (group, kinds and scope as upstream) so the monitoring objects go through the API.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from installlib import CHART, CRDS, DEPLOY, load_all

from fixtures.kubeapi import KubeAPI
from mailferry_api.mailmigration import MailMigrationSpec
from mailferry_operator.mailmigration.plan import JobPlan
from mailferry_operator.mailmigration.resources import job_body

pytestmark = pytest.mark.timeout(600)


def uid() -> str:
    return secrets.token_hex(3)


def stand_in_crd(plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "listKind": f"{kind}List", "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def monitoring_crds(kube: KubeAPI) -> None:
    kube.apply(
        [stand_in_crd("servicemonitors", "ServiceMonitor"), stand_in_crd("prometheusrules", "PrometheusRule")]
    )
    for plural in ("servicemonitors", "prometheusrules"):
        kube.kubectl(
            "wait", "--for=condition=Established", f"crd/{plural}.monitoring.coreos.com", "--timeout=60s"
        )


@pytest.fixture
def namespaces(kube: KubeAPI) -> Iterator[dict[str, str]]:
    """Fresh namespaces: sys (the release), a and b (watched), other (not watched)."""
    suffix = uid()
    names = {role: f"mf-{role}-{suffix}" for role in ("sys", "a", "b", "other")}
    for ns in names.values():
        kube.kubectl("create", "namespace", ns)
    try:
        yield names
    finally:
        for ns in names.values():
            kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def as_identity(
    kube: KubeAPI, kubeconfig: Path, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(kube.env, KUBECONFIG=str(kubeconfig))
    return subprocess.run(
        [kube.kubectl_bin, *args], env=env, input=input, capture_output=True, text=True, timeout=60
    )


def can_i(
    kube: KubeAPI,
    kubeconfig: Path,
    verb: str,
    resource: str,
    namespace: str | None,
    subresource: str | None = None,
) -> bool:
    args = ["auth", "can-i", verb, resource]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args += [f"--subresource={subresource}"]
    cp = as_identity(kube, kubeconfig, *args)
    answer = cp.stdout.strip()
    assert answer in ("yes", "no"), cp.stdout + cp.stderr
    return answer == "yes"


def api_patch(kube: KubeAPI, kubeconfig: Path, path: str, body: dict[str, Any]) -> httpx.Response:
    """A merge-patch with the identity's bearer token, as the operator and the worker send it (kubectl patch
    would GET the object first, which neither of them does)."""
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    assert kube.ca_file is not None
    with httpx.Client(verify=ssl.create_default_context(cafile=str(kube.ca_file)), timeout=30) as http:
        return http.patch(
            f"{kube.server}{path}",
            json=body,
            headers={
                "Authorization": f"Bearer {user['token']}",
                "Content-Type": "application/merge-patch+json",
            },
        )


def forbidden(cp: subprocess.CompletedProcess[str]) -> bool:
    return cp.returncode != 0 and "Forbidden" in cp.stderr


def example(kind: str, namespace: str, name: str) -> dict[str, Any]:
    for path in sorted((DEPLOY / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                doc["metadata"] = {"name": name, "namespace": namespace}
                return dict(doc)
    raise AssertionError(f"no {kind} example")


def secret(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"mailferry.io/credentials": "true"}},
        "stringData": {"alice_example.com": "not-a-real-password"},
    }


def helm_install(kube: KubeAPI, release: str, namespace: str, *values: str, upgrade: bool = False) -> str:
    verb = ["upgrade", "--install"] if upgrade else ["install"]
    cp = kube.helm(*verb, release, str(CHART), "--namespace", namespace, *values)
    return cp.stdout


def test_helm_install_namespaced_mode_rbac_enforced(
    kube: KubeAPI, namespaces: dict[str, str], monitoring_crds: None
) -> None:
    sys_ns, a, b, other = namespaces["sys"], namespaces["a"], namespaces["b"], namespaces["other"]
    release = f"mf{uid()}"
    out = helm_install(
        kube,
        release,
        sys_ns,
        "--set",
        "crds.install=false",
        "--set",
        f"watch.namespaces={{{a},{b}}}",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "mtaSts.enabled=true",
    )
    assert f"The operator watches only: {a}, {b}" in out, out
    assert "keeps the CRDs" not in out  # crds.install=false
    fullname = f"{release}-mailferry"
    for ns in (a, b):
        roles = kube.get("roles", namespace=ns)["items"]
        assert {r["metadata"]["name"] for r in roles} == {f"{fullname}-operator", f"{fullname}-worker"}
        assert kube.get("serviceaccount", "mailferry-worker", namespace=ns)
    assert not kube.get("roles", namespace=other)["items"]
    assert kube.get("servicemonitors.monitoring.coreos.com", f"{fullname}-operator", namespace=sys_ns)
    assert kube.get("prometheusrules.monitoring.coreos.com", fullname, namespace=sys_ns)["spec"]["groups"]
    assert kube.get("deployment", f"{fullname}-operator", namespace=sys_ns)["spec"]["replicas"] == 1

    op = kube.service_account_kubeconfig(sys_ns, f"{fullname}-operator")
    allowed = [
        ("list", "mailmigrations.mailferry.io", a, None),
        ("watch", "mailmigrations.mailferry.io", b, None),
        ("patch", "mailmigrations.mailferry.io", a, "status"),
        ("patch", "dnscutovers.mailferry.io", b, "status"),
        ("create", "mailboxsyncs.mailferry.io", a, None),
        ("watch", "jobs.batch", a, None),
        ("create", "jobs.batch", a, None),
        ("get", "secrets", a, None),
        ("create", "secrets", b, None),
        ("get", "configmaps", a, None),
        ("patch", "configmaps", a, None),
        ("create", "events", a, None),
    ]
    refused = [
        ("get", "secrets", other, None),
        ("get", "secrets", sys_ns, None),
        ("list", "secrets", a, None),
        ("delete", "secrets", a, None),
        ("list", "mailmigrations.mailferry.io", other, None),
        ("list", "mailmigrations.mailferry.io", None, None),
        ("create", "jobs.batch", other, None),
        ("patch", "mailboxsyncs.mailferry.io", a, "status"),
        ("create", "pods", a, None),
        ("create", "roles.rbac.authorization.k8s.io", a, None),
        ("list", "customresourcedefinitions", None, None),
    ]
    assert [c for c in allowed if not can_i(kube, op, *c)] == []
    assert [c for c in refused if can_i(kube, op, *c)] == []

    # Real requests as the operator.
    kube.apply(
        [
            secret(a, "imap"),
            secret(other, "imap"),
            example("MailMigration", a, "acme"),
            example("MailboxSync", a, "acme-alice"),
        ]
    )
    cp = as_identity(kube, op, "get", "mailmigrations.mailferry.io", "-n", a, "-o", "name")
    assert cp.returncode == 0 and "mailmigration.mailferry.io/acme" in cp.stdout, cp.stderr
    mm_path = f"/apis/mailferry.io/v1alpha1/namespaces/{a}/mailmigrations/acme"
    resp = api_patch(kube, op, mm_path + "/status", {"status": {"phase": "Validating"}})
    assert resp.status_code == 200, resp.text
    assert api_patch(kube, op, mm_path.replace(a, other) + "/status", {"status": {}}).status_code == 403
    assert kube.get("mailmigration", "acme", namespace=a)["status"]["phase"] == "Validating"
    assert as_identity(kube, op, "get", "secret", "imap", "-n", a).returncode == 0
    denied = as_identity(kube, op, "get", "secret", "imap", "-n", other)
    assert forbidden(denied) and 'cannot get resource "secrets"' in denied.stderr, denied.stderr
    assert forbidden(as_identity(kube, op, "get", "secrets", "-n", a))  # list
    # A worker Job exactly as the operator builds it (restricted pod security is admitted).
    mm = kube.get("mailmigration", "acme", namespace=a)
    spec = MailMigrationSpec.model_validate(mm["spec"])
    job = job_body(
        "acme", mm["metadata"]["uid"], a, spec, JobPlan("acme-r0-b0", 0, 0, 0, ("alice@example.com",))
    )
    # default=: job_body leaves spec.worker.resources as a pydantic model (an operator bug, reported).
    job_json = json.dumps(job)
    cp = as_identity(kube, op, "create", "-f", "-", "-o", "name", input=job_json)
    assert cp.returncode == 0 and "job.batch/acme-r0-b0" in cp.stdout, cp.stderr
    job["metadata"]["namespace"] = other
    assert forbidden(as_identity(kube, op, "create", "-f", "-", input=json.dumps(job)))

    # The worker's identity in namespace a: its MailboxSyncs and their status only.
    wk = kube.service_account_kubeconfig(a, "mailferry-worker")
    assert as_identity(kube, wk, "get", "mailboxsync", "acme-alice", "-n", a).returncode == 0
    mbs_path = f"/apis/mailferry.io/v1alpha1/namespaces/{a}/mailboxsyncs/acme-alice"
    resp = api_patch(kube, wk, mbs_path + "/status", {"status": {"phase": "Syncing", "attempts": 1}})
    assert resp.status_code == 200, resp.text
    assert kube.get("mailboxsync", "acme-alice", namespace=a)["status"]["phase"] == "Syncing"
    assert api_patch(kube, wk, mbs_path, {"spec": {"connectionsPerMailbox": 4}}).status_code == 403
    assert forbidden(as_identity(kube, wk, "get", "secret", "imap", "-n", a))
    assert forbidden(as_identity(kube, wk, "get", "mailboxsyncs", "-n", a))  # list
    assert forbidden(as_identity(kube, wk, "get", "mailmigration", "acme", "-n", a))
    assert not can_i(kube, wk, "get", "mailboxsyncs.mailferry.io", b)

    kube.helm("uninstall", release, "--namespace", sys_ns)
    assert not kube.get("roles", namespace=a)["items"]
    gone = as_identity(kube, op, "get", "mailmigrations.mailferry.io", "-n", a)
    # Forbidden (binding gone) or, once the ServiceAccount's deletion reached the authenticator, 401
    refused = forbidden(gone) or (gone.returncode != 0 and "must be logged in" in gone.stderr)
    assert refused, f"the binding is gone with the release: {gone.stderr[-300:]}"


def test_helm_cluster_mode_install_upgrade_uninstall_keeps_crds(
    kube: KubeAPI, namespaces: dict[str, str]
) -> None:
    sys_ns, a, other = namespaces["sys"], namespaces["a"], namespaces["other"]
    release = f"mfc{uid()}"
    fullname = f"{release}-mailferry"
    crd_names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted(CRDS.glob("*.yaml"))]
    # The CRDs already exist (the kube fixture installed them): let this release adopt them, as a user adopts
    # CRDs installed before the chart (Helm's documented ownership labels/annotations).
    for name in crd_names:
        kube.kubectl("label", "crd", name, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        kube.kubectl(
            "annotate",
            "crd",
            name,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={sys_ns}",
            "--overwrite",
        )
    try:
        out = helm_install(
            kube, release, sys_ns, "--set", "watch.mode=cluster", "--set", f"worker.namespaces={{{a}}}"
        )
        assert "watches every namespace" in out and "keeps the CRDs" in out, out
        for name in crd_names:
            crd = kube.get("crd", name)
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == release
        manifest = kube.helm("get", "manifest", release, "-n", sys_ns).stdout
        assert sum(1 for d in load_all(manifest) if d["kind"] == "CustomResourceDefinition") == len(crd_names)

        op = kube.service_account_kubeconfig(sys_ns, f"{fullname}-operator")
        assert can_i(kube, op, "list", "mailmigrations.mailferry.io", None)
        assert can_i(kube, op, "watch", "dnscutovers.mailferry.io", None)
        assert can_i(kube, op, "get", "secrets", other)
        assert can_i(kube, op, "list", "customresourcedefinitions", None)
        assert not can_i(kube, op, "list", "secrets", other)
        assert not can_i(kube, op, "delete", "customresourcedefinitions", None)
        assert not can_i(kube, op, "create", "clusterroles.rbac.authorization.k8s.io", None)
        assert not can_i(kube, op, "list", "kopfpeerings.kopf.dev", a), "no peering with one replica"
        wk = kube.service_account_kubeconfig(a, "mailferry-worker")
        assert can_i(kube, wk, "patch", "mailboxsyncs.mailferry.io", a, "status")
        assert not can_i(kube, wk, "get", "mailboxsyncs.mailferry.io", other), (
            "worker rights are per namespace"
        )

        kube.apply(example("MailMigration", a, "kept"))
        # Upgrade: two replicas -> Kopf peering (its CRD, the ClusterKopfPeering and the RBAC for it).
        helm_install(
            kube,
            release,
            sys_ns,
            "--set",
            "watch.mode=cluster",
            "--set",
            f"worker.namespaces={{{a}}}",
            "--set",
            "operator.replicas=2",
            upgrade=True,
        )
        dep = kube.get("deployment", f"{fullname}-operator", namespace=sys_ns)
        assert dep["spec"]["replicas"] == 2
        assert "--peering=mailferry" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert kube.get("clusterkopfpeerings.kopf.dev", "mailferry")["metadata"]["name"] == "mailferry"
        assert can_i(kube, op, "patch", "clusterkopfpeerings.kopf.dev", None)

        kube.helm("uninstall", release, "--namespace", sys_ns)
        # What is kept: the CRDs and so every resource; what is gone: the operator's RBAC and workload.
        for name in crd_names:
            assert kube.kubectl("get", "crd", name, check=False).returncode == 0, f"{name} was deleted"
        assert kube.get("mailmigration", "kept", namespace=a)["metadata"]["name"] == "kept"
        assert kube.kubectl("get", "clusterrole", f"{fullname}-operator", check=False).returncode != 0
        assert (
            kube.kubectl("get", "deployment", f"{fullname}-operator", "-n", sys_ns, check=False).returncode
            != 0
        )
    finally:
        kube.helm("uninstall", release, "--namespace", sys_ns, check=False)
        kube.kubectl("delete", "mailmigrations.mailferry.io", "--all", "-n", a, "--wait=false", check=False)
        for name in crd_names:  # leave the shared CRDs unowned again, for any later adoption
            kube.kubectl(
                "annotate",
                "crd",
                name,
                "meta.helm.sh/release-name-",
                "meta.helm.sh/release-namespace-",
                check=False,
            )
            kube.kubectl("label", "crd", name, "app.kubernetes.io/managed-by-", check=False)
        kube.kubectl(
            "delete", "crd", "clusterkopfpeerings.kopf.dev", "--ignore-not-found", "--wait=false", check=False
        )


def test_kustomize_apply(kube: KubeAPI, monitoring_crds: None) -> None:
    """`kubectl apply -k deploy/base` for real (server-side), then the example overlay (--dry-run=server)."""
    cp = kube.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(DEPLOY / "base"))
    assert "deployment.apps/mailferry-operator serverside-applied" in cp.stdout, cp.stdout
    assert "clusterrole.rbac.authorization.k8s.io/mailferry-operator serverside-applied" in cp.stdout
    kube.kubectl("create", "namespace", "mail-migration", check=False)
    cp = kube.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-k",
        str(DEPLOY / "overlays" / "example"),
    )
    assert (
        "prometheusrule.monitoring.coreos.com/mailferry serverside-applied (server dry run)" in cp.stdout
    ), cp.stdout
    assert "configmap/mailferry-dashboard serverside-applied (server dry run)" in cp.stdout
    # The base's RBAC is enforced for the base's ServiceAccount too.
    op = kube.service_account_kubeconfig("mailferry", "mailferry-operator")
    assert can_i(kube, op, "list", "mailmigrations.mailferry.io", None)
    assert not can_i(kube, op, "list", "secrets", "mailferry")
    assert os.path.exists(op)


def test_pod_templates_pass_restricted_pod_security(kube: KubeAPI, namespaces: dict[str, str]) -> None:
    """PodSecurity admission enforcing `restricted` admits every pod we ship.

    The operator, the MTA-STS server and a worker Job's pod as the operator builds it; a pod without seccomp
    is refused (the check can fail)."""
    ns = namespaces["a"]
    kube.kubectl(
        "label",
        "namespace",
        ns,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "--overwrite",
    )
    # "default" is what the serviceaccount controller makes in a real cluster (the MTA-STS pod uses it,
    # with no token mounted); this API server runs no controllers.
    for sa in ("mf-mailferry-operator", "mailferry-worker", "default"):
        kube.kubectl("create", "serviceaccount", sa, "-n", ns, check=sa != "default")
    docs = load_all(
        kube.helm("template", "mf", str(CHART), "--namespace", ns, "--set", "mtaSts.enabled=true").stdout
    )
    templates = {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] == "Deployment"}
    mm = example("MailMigration", ns, "psa")
    spec = MailMigrationSpec.model_validate(mm["spec"])
    job = job_body(
        "psa",
        "00000000-0000-0000-0000-000000000000",
        ns,
        spec,
        JobPlan("psa-r0-b0", 0, 0, 0, ("alice@example.com",)),
    )
    templates["worker-job"] = job["spec"]["template"]
    assert set(templates) == {"mf-mailferry-operator", "mf-mailferry-mta-sts", "worker-job"}
    for name, tpl in templates.items():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"psa-{name}", "namespace": ns},
            "spec": tpl["spec"],
        }
        cp = kube.kubectl(
            "create",
            "--dry-run=server",
            "-f",
            "-",
            input=json.dumps(pod),
            check=False,
        )
        assert cp.returncode == 0, f"{name}: {cp.stderr}"
        assert "Warning" not in cp.stderr, f"{name}: {cp.stderr}"
    bad = json.loads(json.dumps(templates["mf-mailferry-operator"]["spec"]))
    del bad["securityContext"]["seccompProfile"]  # restricted requires RuntimeDefault/Localhost seccomp
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-bad", "namespace": ns}, "spec": bad}
    cp = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert cp.returncode != 0 and 'violates PodSecurity "restricted:latest"' in cp.stderr, cp.stderr
