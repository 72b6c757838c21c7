"""The local job runner (tests/tools/jobrunner.py) against a real API server: it runs a Job's command
with the pod env and Secret volumes, and writes the Job status as the Job controller would."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import demolib as d
from jobrunner import JobRunner

from fixtures.kubeapi import KubeAPI
from mailferry_api.mailmigration import MailMigrationSpec
from mailferry_operator.mailmigration.plan import JobPlan
from mailferry_operator.mailmigration.resources import SECRETS_DIR, job_body

PROBE = textwrap.dedent(
    """
    import json, os, stat, sys
    d = os.environ["MAILFERRY_SECRETS_DIR"]
    files = {}
    for side in ("source", "destination"):
        for key in sorted(os.listdir(os.path.join(d, side))):
            p = os.path.join(d, side, key)
            files[side + "/" + key] = [open(p).read(), oct(stat.S_IMODE(os.stat(p).st_mode))]
    env = {k: v for k, v in os.environ.items() if k.startswith("MAILFERRY_") or k == "KUBECONFIG"}
    print(json.dumps({"files": files, "env": env, "mode": oct(stat.S_IMODE(os.stat(d).st_mode))}))
    sys.exit(int(os.environ.get("EXIT_CODE", "0")))
    """
)


def _job(namespace: str, name: str, exit_code: int, backoff: int = 0) -> dict[str, Any]:
    ep = {"host": "127.0.0.1", "port": 143, "security": "none", "auth": {"secretRef": {"name": "src"}}}
    dst = dict(ep, auth={"secretRef": {"name": "dst"}})
    spec = MailMigrationSpec.model_validate(
        {"source": ep, "destination": dst, "mailboxes": [], "worker": {"backoffLimit": backoff}}
    )
    body = job_body(
        "acme",
        "00000000-0000-0000-0000-000000000001",
        namespace,
        spec,
        JobPlan(name, 1, 0, 0, ("mb-a", "mb-b")),
    )
    body["metadata"].pop("ownerReferences")  # the owner does not exist in this test
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [sys.executable, "-c", PROBE]
    container["env"].append({"name": "EXIT_CODE", "value": str(exit_code)})
    return body


def _wait_job(kube: KubeAPI, namespace: str, name: str, condition: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = json.loads(kube.kubectl("get", "job", name, "-n", namespace, "-o", "json").stdout)
        conds = {c["type"] for c in job.get("status", {}).get("conditions", []) if c["status"] == "True"}
        return job if condition in conds else None

    return dict(d.wait_for(done, 60, f"Job {name} {condition}"))


def test_runner_runs_job_with_pod_env_and_secret_volumes(
    kube: KubeAPI, namespace: str, tmp_path: Path
) -> None:
    d.apply(
        kube,
        d.secret_manifest("src", namespace, {"alice_x.test": "s3cret-src"}),
        d.secret_manifest("dst", namespace, {"alice_x.test": "s3cret-dst"}),
    )
    d.apply(kube, _job(namespace, "acme-r1-b0", 0), _job(namespace, "acme-r1-b1", 3, backoff=1))
    runner = JobRunner(kube.kubeconfig, [namespace], tmp_path / "logs").start()
    try:
        ok = _wait_job(kube, namespace, "acme-r1-b0", "Complete")
        assert ok["status"]["succeeded"] == 1 and ok["status"]["startTime"] and ok["status"]["completionTime"]
        out = json.loads((tmp_path / "logs" / f"{namespace}_acme-r1-b0.log").read_text().splitlines()[-1])
        assert out["files"] == {
            "source/alice_x.test": ["s3cret-src", "0o400"],
            "destination/alice_x.test": ["s3cret-dst", "0o400"],
        }
        assert out["env"]["MAILFERRY_SECRETS_DIR"] != SECRETS_DIR  # rewritten to the private dir
        assert out["env"]["MAILFERRY_MAILBOXSYNCS"] == "mb-a,mb-b" and out["env"]["MAILFERRY_ROUND"] == "1"
        assert out["env"]["KUBECONFIG"] == str(kube.kubeconfig)
        bad = _wait_job(kube, namespace, "acme-r1-b1", "Failed")
        assert bad["status"]["failed"] == 2  # backoffLimit 1: the pod ran twice
        assert runner.started_count == 3
        # the Secret values never reach the Job object
        assert "s3cret" not in kube.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout
    finally:
        runner.stop()
    leftovers = list(Path("/tmp").glob("mf-pod-acme-r1-b*"))
    assert not [p for p in leftovers if p.exists() and any(p.rglob("alice_x.test"))]
