"""A real 410 Gone from kube-apiserver: the operator's connection (through a TCP proxy) is cut mid-copy
and refused while its MailMigration, MailboxSyncs and Jobs change and etcd is compacted, on an API server
without a watch cache (so a watch resuming from a compacted resourceVersion is answered 410). The
operator's debug log shows Kopf restarting each watch-stream after the 410 (it re-lists), and the
migration still converges with no duplicate Job. Short version of `make chaos --scenario watch-410`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from chaos.operator_faults import WATCH_410_APISERVER_ARGS, audit_args, mm_watch_gone
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI


def test_watch_410_gone_relists_and_converges(
    kube_factory: Callable[..., KubeAPI], dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    kube = kube_factory(apiserver_args=[*WATCH_410_APISERVER_ARGS, *audit_args(tmp_path / "audit")])
    kube.kubectl("create", "namespace", "gone")
    ok, res = mm_watch_gone(
        kube,
        "gone",
        dovecot_pair.source,
        dovecot_pair.destination,
        tmp_path,
        touches=10,
        mailboxes=6,
        audit_log=tmp_path / "audit" / "audit.log",
    )
    print(json.dumps(res))
    assert {"mailmigrations", "mailboxsyncs", "jobs"} <= {
        s.split(".")[0] for s in res["watch_streams_restarted_after_410"]
    }, res
    # kube-apiserver's audit log: Kopf watched from compacted resourceVersions, then listed again
    assert res["audit_watches_from_compacted_rv"] >= 3, res
    assert {"mailmigrations", "mailboxsyncs", "jobs"} <= set(res["audit_relisted_after"]), res
    assert res["duplicate_jobs"] == 0
    assert (res["lost"], res["duplicated"]) == (0, 0)
    assert ok, res
