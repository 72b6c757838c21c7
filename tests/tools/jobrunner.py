"""Local job runner: stands in for the kubelet + Job controller for mailferry worker Jobs (tests, demo).

No kubelet runs against the test API server, so this watches batch/v1 Jobs labelled
`app.kubernetes.io/name=mailferry-worker`, runs each one's container command as a local process with
the env the pod would get, and writes the Job status back as the Job controller would:

- Secret volumes are written into a private 0700 temp dir (one 0400 file per key), and every env value
  pointing under a Secret mount (MAILFERRY_SECRETS_DIR) is rewritten to point there;
- env `valueFrom.secretKeyRef`/`configMapKeyRef` are resolved; KUBECONFIG is added (the API access a
  ServiceAccount token would give); the venv's bin dir goes first on PATH so `mailferry-worker` resolves;
- status: startTime + active=1 when it starts; on exit 0 succeeded=1 + SuccessCriteriaMet/Complete +
  completionTime; otherwise the pod is re-run until `backoffLimit` failures, then FailureTarget/Failed;
- a Job deleted while running has its process killed, or, with ``orphan_deleted``, left running (a pod
  still terminating, or on a node that went NotReady, while a retry Job's pod starts: two pods of one
  MailboxSync at once); Jobs left active by an earlier runner are re-run (as a pod on a lost node would be).

Run it:  python tests/tools/jobrunner.py --kubeconfig K --namespace NS [--namespace NS2] [--log-dir D]
Import it:  JobRunner(kubeconfig, namespaces).start() ... .stop()
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("jobrunner")

SELECTOR = "app.kubernetes.io/name=mailferry-worker"
# A succeeded Job needs nothing more from a kubelet. Listing only the others keeps a pass's cost to the
# Jobs still running, not every Job a weeks-long migration left (the client's model decoding is ~1 ms a Job).
UNFINISHED = "status.successful=0"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Running:
    namespace: str
    name: str
    uid: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    failures: int = 0
    backoff_limit: int = 6
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class JobRunner:
    def __init__(
        self,
        kubeconfig: str | os.PathLike[str],
        namespaces: Sequence[str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.3,
        extra_env: dict[str, str] | None = None,
        orphan_deleted: bool = False,
    ) -> None:
        self.kubeconfig = str(kubeconfig)
        self.namespaces = list(namespaces or [])
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="mf-jobrunner-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.poll_interval = poll_interval
        self.extra_env = dict(extra_env or {})
        api_client = config.new_client_from_config(config_file=self.kubeconfig)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.running: dict[str, Running] = {}  # by Job uid
        self.finished: set[str] = set()  # Job uids we completed
        self.started_count = 0  # processes started (pod runs), for tests
        self.orphan_deleted = orphan_deleted
        self.orphans: list[Running] = []  # processes of deleted Jobs left running (orphan_deleted)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> JobRunner:
        self._thread = threading.Thread(target=self.run_forever, name="jobrunner", daemon=True)
        self._thread.start()
        return self

    def stop(self, kill_running: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if kill_running:
            for run in [*self.running.values(), *self.orphans]:
                self._kill(run)

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # keep going: the API server may restart under us
                log.exception("jobrunner tick failed")
            self._stop.wait(self.poll_interval)

    # ------------------------------------------------------------------ one pass
    def _list_jobs(self) -> list[Any]:
        if not self.namespaces:
            return list(
                self.batch.list_job_for_all_namespaces(
                    label_selector=SELECTOR, field_selector=UNFINISHED
                ).items
            )
        jobs: list[Any] = []
        for ns in self.namespaces:
            with contextlib.suppress(ApiException):
                jobs += self.batch.list_namespaced_job(
                    ns, label_selector=SELECTOR, field_selector=UNFINISHED
                ).items
        return jobs

    def tick(self) -> None:
        jobs = self._list_jobs()
        present = {j.metadata.uid for j in jobs}
        for uid, run in list(self.running.items()):
            if uid not in present:
                if self.orphan_deleted:
                    log.info("Job %s/%s deleted: its process keeps running", run.namespace, run.name)
                    self.orphans.append(self.running.pop(uid))
                    continue
                log.info("Job %s/%s deleted: killing its process", run.namespace, run.name)
                self._kill(run)
        for job in jobs:
            uid = job.metadata.uid
            if uid in self.running:
                self._poll(job, self.running[uid])
            elif (
                uid not in self.finished and not _is_finished(job) and job.metadata.deletion_timestamp is None
            ):
                self._launch(job)

    # ------------------------------------------------------------------ pods
    def _secret_files(
        self, namespace: str, secret_name: str, target: Path, items: list[Any] | None, optional: bool
    ) -> None:
        """A Secret volume as the kubelet writes it: one file per key (or per listed item); a listed key
        the Secret lacks is skipped, and an optional Secret that does not exist is an empty directory."""
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o700)
        try:
            secret = self.core.read_namespaced_secret(secret_name, namespace)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return
            raise
        data = secret.data or {}
        mapping = {i.key: i.path for i in items} if items else {k: k for k in data}
        for key, path in mapping.items():
            if key not in data:
                continue
            f = target / path
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(base64.b64decode(data[key]))
            f.chmod(0o400)

    def _pod_env(self, job: Any, workdir: Path) -> tuple[list[str], dict[str, str]]:
        ns = job.metadata.namespace
        pod = job.spec.template.spec
        container = pod.containers[0]
        volumes = {v.name: v for v in pod.volumes or []}
        mounts: dict[str, Path] = {}
        for m in container.volume_mounts or []:
            vol = volumes.get(m.name)
            local = workdir / "root" / m.mount_path.lstrip("/")
            mounts[m.mount_path.rstrip("/")] = local
            if vol is not None and vol.secret is not None:
                self._secret_files(
                    ns, vol.secret.secret_name, local, vol.secret.items, bool(vol.secret.optional)
                )
            else:
                local.mkdir(parents=True, exist_ok=True)
        env: dict[str, str] = {
            k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TZ")
        }
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        env["HOSTNAME"] = f"{job.metadata.name}-local"
        for e in container.env or []:
            value = e.value
            if value is None and e.value_from is not None:
                ref = e.value_from.secret_key_ref or e.value_from.config_map_key_ref
                if ref is not None:
                    if e.value_from.secret_key_ref is not None:
                        data = self.core.read_namespaced_secret(ref.name, ns).data or {}
                        value = base64.b64decode(data.get(ref.key, "")).decode()
                    else:
                        value = (self.core.read_namespaced_config_map(ref.name, ns).data or {}).get(
                            ref.key, ""
                        )
            if value is None:
                continue
            for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if value == mount_path or value.startswith(mount_path + "/"):
                    value = str(local) + value[len(mount_path) :]
                    break
                if mount_path.startswith(value.rstrip("/") + "/"):  # a parent of mounts: map the parent
                    value = str(local)[: len(str(local)) - len(mount_path) + len(value.rstrip("/"))]
                    break
            env[e.name] = value
        env["KUBECONFIG"] = self.kubeconfig
        env.update(self.extra_env)
        argv = list(container.command or []) + list(container.args or [])
        if argv and not os.path.isabs(argv[0]):
            found = shutil.which(argv[0], path=env["PATH"])
            if found:
                argv[0] = found
        return argv, env

    def _launch(self, job: Any, previous: Running | None = None) -> None:
        ns, name, uid = job.metadata.namespace, job.metadata.name, job.metadata.uid
        started = _now()  # like the Job controller: startTime before any pod runs (the operator relies on it)
        workdir = Path(tempfile.mkdtemp(prefix=f"mf-pod-{name[:40]}-"))
        workdir.chmod(0o700)
        try:
            argv, env = self._pod_env(job, workdir)
        except ApiException as exc:
            log.warning("Job %s/%s: cannot build the pod (%s); will retry", ns, name, exc.reason)
            shutil.rmtree(workdir, ignore_errors=True)
            return
        log_path = self.log_dir / f"{ns}_{name}.log"
        with open(log_path, "ab") as out:
            out.write(f"--- {_now()} run {(previous.failures if previous else 0) + 1}: {argv}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                start_new_session=True,
            )
        self.started_count += 1
        run = Running(
            ns,
            name,
            uid,
            proc,
            workdir,
            log_path,
            failures=previous.failures if previous else 0,
            backoff_limit=job.spec.backoff_limit if job.spec.backoff_limit is not None else 6,
            argv=argv,
        )
        self.running[uid] = run
        if previous is None:
            status: dict[str, Any] = {"active": 1, "ready": 1}
            if job.status is None or job.status.start_time is None:
                status["startTime"] = started
            self._patch_status(ns, name, status)
        log.info("Job %s/%s: started %s (pid %d)", ns, name, argv[:2], proc.pid)

    def _poll(self, job: Any, run: Running) -> None:
        code = run.proc.poll()
        if code is None:
            return
        shutil.rmtree(run.workdir, ignore_errors=True)
        del self.running[run.uid]
        now = _now()
        if code == 0:
            self.finished.add(run.uid)
            self._patch_status(
                run.namespace,
                run.name,
                {
                    "active": 0,
                    "ready": 0,
                    "succeeded": 1,
                    "failed": run.failures,
                    "completionTime": now,
                    "conditions": [
                        _cond(
                            "SuccessCriteriaMet",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                            now,
                        ),
                        _cond(
                            "Complete", "CompletionsReached", "Reached expected number of succeeded pods", now
                        ),
                    ],
                },
            )
            log.info("Job %s/%s: succeeded", run.namespace, run.name)
            return
        run.failures += 1
        log.info(
            "Job %s/%s: pod exited %d (failure %d of backoffLimit %d)",
            run.namespace,
            run.name,
            code,
            run.failures,
            run.backoff_limit,
        )
        if run.failures <= run.backoff_limit:
            self._patch_status(run.namespace, run.name, {"failed": run.failures})
            time.sleep(min(2.0, 0.5 * run.failures))  # the Job controller's pod backoff, shortened
            self._launch(job, previous=run)
            return
        self.finished.add(run.uid)
        self._patch_status(
            run.namespace,
            run.name,
            {
                "active": 0,
                "ready": 0,
                "failed": run.failures,
                "conditions": [
                    _cond(
                        "FailureTarget",
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        now,
                    ),
                    _cond(
                        "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now
                    ),
                ],
            },
        )

    def _patch_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.batch.patch_namespaced_job_status(name, ns, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                log.warning("Job %s/%s: status patch failed: %s %s", ns, name, exc.status, exc.body)

    def _kill(self, run: Running) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.proc.wait(5)
        shutil.rmtree(run.workdir, ignore_errors=True)
        self.running.pop(run.uid, None)


def _cond(type_: str, reason: str, message: str, now: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _is_finished(job: Any) -> bool:
    for c in (job.status.conditions if job.status else None) or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Run mailferry worker Jobs locally (a kubelet stand-in for tests)"
    )
    p.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), required=not os.environ.get("KUBECONFIG")
    )
    p.add_argument("--namespace", "-n", action="append", help="namespace to watch (default: all)")
    p.add_argument("--log-dir", help="where each Job's output goes (default: a temp dir)")
    p.add_argument("--poll-interval", type=float, default=0.3)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s jobrunner %(levelname)s %(message)s")
    runner = JobRunner(args.kubeconfig, args.namespace, args.log_dir, args.poll_interval)
    log.info(
        "watching worker Jobs in %s; logs in %s",
        ",".join(args.namespace or ["all namespaces"]),
        runner.log_dir,
    )

    def stop(*_: Any) -> None:
        runner._stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.run_forever()
    for run in list(runner.running.values()):
        runner._kill(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
