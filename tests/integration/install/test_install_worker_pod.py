"""Worker pods follow the installation: what the chart sets reaches the Job's pod template.

The chart is rendered by the real helm CLI with an image digest, pull secrets and worker scheduling
values; the operator process gets exactly the env of the rendered Deployment; a MailMigration that names
no image is applied to the test API server (which validates the Job, pod template included). The
MailMigration must not carry a stored image default (the bug: a CRD default pinned every Job to one tag).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from installlib import one, template

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import demolib as d

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

pytestmark = pytest.mark.timeout(240)
DIGEST = "sha256:" + "ab" * 32
WORKER_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example.com/mirror/mailferry", "digest": DIGEST},
    "imagePullSecrets": [{"name": "regcred"}],
    "worker": {
        "podAnnotations": {"sidecar.istio.io/inject": "false"},
        "podLabels": {"team": "mail", "app.kubernetes.io/name": "not-the-operators"},
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "batch-low",
    },
}


def chart_operator_env(tmp_path: Path, namespace: str) -> dict[str, str]:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(WORKER_VALUES))
    docs = template({}, namespace=namespace, extra=["-f", str(values)])
    dep = one(docs, "Deployment")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    # The worker ServiceAccount carries the pull secrets too (pods of other tools that use it).
    workers = [
        sa for sa in docs if sa["kind"] == "ServiceAccount" and sa["metadata"]["name"] == "mailferry-worker"
    ]
    assert workers and all(sa["imagePullSecrets"] == [{"name": "regcred"}] for sa in workers)
    return {e["name"]: e["value"] for e in env if e["name"].startswith("MAILFERRY_")}


def test_job_pod_spec_carries_what_the_chart_set(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    env = chart_operator_env(tmp_path, namespace)
    assert env["MAILFERRY_WORKER_IMAGE"] == f"registry.example.com/mirror/mailferry@{DIGEST}"
    org = d.make_org(2, domain=f"{namespace}.test")
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org)
    d.apply(
        kube,
        d.secret_manifest("wp-source", namespace, d.credentials(org)),
        d.secret_manifest("wp-destination", namespace, d.credentials(org)),
        d.migration_manifest("wp", namespace, dovecot_pair.source, dovecot_pair.destination, org.addresses),
    )
    stored = d.migration(kube, namespace, "wp")["spec"]["worker"]
    assert "image" not in stored and "serviceAccountName" not in stored, stored
    operator = d.OperatorProcess(kube, [namespace], tmp_path, extra_env=env).start()
    try:
        jobs = d.wait_for(lambda: d.worker_jobs(kube, namespace, "wp"), 120, "a worker Job")
    finally:
        operator.stop()
    pod = jobs[0]["spec"]["template"]
    spec = pod["spec"]
    assert spec["containers"][0]["image"] == f"registry.example.com/mirror/mailferry@{DIGEST}"
    assert spec["serviceAccountName"] == "mailferry-worker"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["nodeSelector"] == {"pool": "batch"}
    assert spec["tolerations"] == WORKER_VALUES["worker"]["tolerations"]
    assert spec["affinity"] == WORKER_VALUES["worker"]["affinity"]
    assert spec["priorityClassName"] == "batch-low"
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    labels = pod["metadata"]["labels"]
    assert labels["team"] == "mail"
    # The operator's own labels win: it finds its Jobs' pods by them.
    assert labels["app.kubernetes.io/name"] == "mailferry-worker"
    assert labels["mailferry.io/migration"] == "wp"
    # Restricted pod security is untouched by the overrides.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert json.dumps(spec).count("privileged") == 0
