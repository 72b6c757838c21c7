"""Secrets never leave their Secret: distinctive canary passwords/tokens are grepped for in every log line
(worker, operator, job runner), every Event, every status and every object the migration produced.

1. worker alone, against a hostile server that echoes the credentials back in its NO (password and
   XOAUTH2 static token); also every file it left in its TMPDIR/HOME and the status store;
2. the whole flow (operator + job runner + worker) on the Dovecot pair, one mailbox with a wrong
   destination password.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chaos.hostile_imap import HostileImap
from chaos.mailrun import WorkerRun, endpoint
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI
from support.canaries import canary, hits

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import demolib as d


def test_worker_never_reveals_credentials_even_when_the_server_echoes_them(tmp_path: Path) -> None:
    user = "canary@hostile.test"
    texts: list[tuple[str, str]] = []
    values: list[str] = []
    for method, on in (("password", "LOGIN"), ("xoauth2", "AUTHENTICATE")):
        src_pw, dst_pw = canary(f"src-{method}"), canary(f"dst-{method}")
        values += [src_pw, dst_pw]
        with HostileImap("echo_credentials", on=on) as srv:
            src = endpoint("127.0.0.1", srv.port, secret="src")
            dst = endpoint("127.0.0.1", srv.port, secret="dst")
            if method == "xoauth2":
                for e in (src, dst):
                    e["auth"].update(method="xoauth2", oauth2={"provider": "static", "tokenKey": "token"})
            run = WorkerRun(tmp_path / method, method, user, src, dst, src_pw, dst_pw)
            if method == "xoauth2":
                for side, tok in (("source", src_pw), ("destination", dst_pw)):
                    (run.secrets_dir / side / "token").write_text(tok)
            scratch = tmp_path / f"{method}-scratch"  # the worker's TMPDIR and HOME: what it writes to disk
            scratch.mkdir()
            cp = run.run(TMPDIR=str(scratch), HOME=str(scratch))
            st = run.status()
            for f in [*scratch.rglob("*"), *run.status_dir.rglob("*")]:
                if f.is_file():
                    texts.append((f"{method} file {f.name}", f.read_text(errors="replace")))
            print(f"{method}: exit={cp.returncode} phase={st.get('phase')} lastError={st.get('lastError')}")
            received = b"\n".join(srv.commands).decode("utf-8", "replace")
            texts.append((f"{method} worker output", cp.stdout + cp.stderr))
            texts.append((f"{method} status", json.dumps(st)))
        # The server did get (and echo) the credentials: the canary is detectable where it is expected.
        assert hits([("server side", received)], [src_pw]) or "AUTHENTICATE" in received, received[:500]
        assert st["phase"] == "Failed" and st["lastError"]["reason"] == "AuthenticationFailed", st
        assert cp.returncode == 0  # permanent failure, reason written
    leaks = hits(texts, values)
    searched = sum(len(t) for _, t in texts)
    print(f"canaries: {len(values)} values, {searched} characters searched, hits={len(leaks)}")
    assert leaks == []


def _all_texts(kube: KubeAPI, namespace: str, logs: Path) -> list[tuple[str, str]]:
    texts = [(str(p.relative_to(logs)), p.read_text(errors="replace")) for p in sorted(logs.rglob("*.log"))]
    for kind in ("events", "mailmigrations.mailferry.io", "mailboxsyncs.mailferry.io", "jobs", "configmaps"):
        texts.append((kind, kube.kubectl("get", kind, "-n", namespace, "-o", "json").stdout))
    return texts


def test_full_migration_with_canary_passwords_and_a_wrong_one_leaks_nothing(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    org = d.Org(f"{namespace}.test")
    for name in ("ada", "bea", "cyd"):
        org.users[f"{name}@{org.domain}"] = canary(name)
    bad = f"bea@{org.domain}"
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org, wrong_destination=[bad])
    d.seed_org(dovecot_pair.source, org, 6)
    runner = d.JobRunnerProcess(kube, [namespace], tmp_path).start()
    operator = d.OperatorProcess(kube, [namespace], tmp_path).start()
    st: dict[str, Any] = {}
    try:
        d.apply(
            kube,
            d.secret_manifest("acme-source", namespace, d.credentials(org)),
            d.secret_manifest("acme-destination", namespace, d.credentials(org)),
            d.migration_manifest(
                "acme", namespace, dovecot_pair.source, dovecot_pair.destination, org.addresses
            ),
        )

        def bulk_done() -> dict[str, Any] | None:
            s = dict(d.migration(kube, namespace, "acme").get("status") or {})
            return s if (d.condition({"status": s}, "BulkCopied") or {}).get("status") == "True" else None

        st = d.wait_for(bulk_done, 150, "bulk copy")
    finally:
        operator.stop()
        runner.stop()
        kube.kubectl("delete", "jobs", "--all", "-n", namespace, "--wait=false", check=False)
    assert [(e["mailbox"], e["reason"]) for e in st["failedMailboxes"]] == [(bad, "AuthenticationFailed")], st
    texts = _all_texts(kube, namespace, tmp_path)
    # the Dovecot destination password of `bad` differs from the canary: search that one too
    values = [*org.users.values(), org.users[bad] + "-but-different"]
    leaks = hits(texts, values)
    searched = sum(len(t) for _, t in texts)
    print(f"canaries: {len(values)} values in {len(texts)} sources ({searched} chars), hits={len(leaks)}")
    assert len(texts) >= 8 and searched > 10_000
    assert leaks == []
