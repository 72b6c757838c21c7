"""Security posture against the real API server: Pod Security admission (enforce=restricted) admits the
worker pod the operator builds and rejects a non-compliant pod; the NetworkPolicy example is accepted by
``kubectl apply --dry-run=server``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from fixtures.kubeapi import KubeAPI
from mailferry_api.mailmigration import MailMigrationSpec
from mailferry_operator.mailmigration.plan import JobPlan
from mailferry_operator.mailmigration.resources import job_body

REPO = Path(__file__).resolve().parents[3]
NETPOL_DIR = REPO / "deploy" / "networkpolicy"


def _restricted_namespace(kube: KubeAPI, namespace: str) -> None:
    kube.kubectl(
        "label",
        "namespace",
        namespace,
        "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )


def _worker_job(namespace: str) -> dict[str, Any]:
    spec = MailMigrationSpec.model_validate(
        {
            "source": {"host": "imap.old.example", "auth": {"secretRef": {"name": "src"}}},
            "destination": {"host": "imap.new.example", "auth": {"secretRef": {"name": "dst"}}},
            "mailboxes": [{"source": "a@example.test"}],
        }
    )
    plan = JobPlan(name="acme-r1-b0", round=1, batch=0, attempt=0, mailboxes=("acme-a",))
    return job_body("acme", "00000000-0000-0000-0000-000000000001", namespace, spec, plan)


def _pod_from(job: dict[str, Any], name: str) -> dict[str, Any]:
    tmpl = copy.deepcopy(job["spec"]["template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **tmpl.get("metadata", {})},
        "spec": tmpl["spec"],
    }


def _create(kube: KubeAPI, namespace: str, obj: dict[str, Any]) -> tuple[int, str]:
    cp = kube.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)
    return cp.returncode, cp.stdout + cp.stderr


def test_restricted_namespace_admits_the_worker_pod_and_rejects_a_privileged_one(
    kube: KubeAPI, namespace: str
) -> None:
    _restricted_namespace(kube, namespace)
    kube.kubectl("create", "serviceaccount", "mailferry-worker", "-n", namespace, check=False)
    job = _worker_job(namespace)

    rc, out = _create(kube, namespace, _pod_from(job, "worker-pod"))
    print(f"worker pod: rc={rc} {out.strip()[:300]}")
    assert rc == 0, out
    assert "Warning" not in out, out  # no audit/warn violations either

    bad = _pod_from(job, "bad-pod")
    c = bad["spec"]["containers"][0]
    c["securityContext"] = {"privileged": True, "allowPrivilegeEscalation": True}
    bad["spec"]["securityContext"] = {}
    rc, out = _create(kube, namespace, bad)
    print(f"privileged pod: rc={rc} {out.strip()[:300]}")
    assert rc != 0
    assert "violates PodSecurity" in out and "restricted" in out, out

    # Each single relaxation of the worker pod is refused too: the template is not passing by accident.
    for label, mutate in {
        "runAsNonRoot unset": lambda p: p["spec"]["securityContext"].pop("runAsNonRoot"),
        "no seccomp": lambda p: p["spec"]["securityContext"].pop("seccompProfile"),
        "caps not dropped": lambda p: p["spec"]["containers"][0]["securityContext"].pop("capabilities"),
        "escalation allowed": lambda p: p["spec"]["containers"][0]["securityContext"].update(
            allowPrivilegeEscalation=True
        ),
    }.items():
        pod = _pod_from(job, "relaxed-" + label.replace(" ", "-").lower())
        mutate(pod)
        if label == "runAsNonRoot unset":  # set at both levels: drop both
            pod["spec"]["containers"][0]["securityContext"].pop("runAsNonRoot", None)
        if label == "no seccomp":
            pod["spec"]["containers"][0]["securityContext"].pop("seccompProfile", None)
        rc, out = _create(kube, namespace, pod)
        assert rc != 0 and "violates PodSecurity" in out, f"{label}: {out}"


def test_the_job_itself_is_admitted_in_a_restricted_namespace(kube: KubeAPI, namespace: str) -> None:
    _restricted_namespace(kube, namespace)
    rc, out = _create(kube, namespace, _worker_job(namespace) | {"metadata": {"name": "acme-r1-b0"}})
    assert rc == 0, out
    assert "would violate PodSecurity" not in out, out  # Job templates are checked in warn mode


def test_networkpolicy_example_is_accepted_by_the_api_server(kube: KubeAPI, namespace: str) -> None:
    files = sorted(NETPOL_DIR.glob("*.yaml"))
    assert files, f"no NetworkPolicy example in {NETPOL_DIR}"
    names = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc.get("kind") == "NetworkPolicy":
                names.append(doc["metadata"]["name"])
        out = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(f)).stdout
        print(out.strip())
    assert {"mailferry-operator-egress", "mailferry-worker-egress"} <= set(names), names
