"""make bench-delta's API request count: apiserver_request_total summed by verb and resource."""

# ruff: noqa: E501  (metric lines as kube-apiserver prints them)
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from types import SimpleNamespace

from tests.bench.delta_round import (
    changed_users,
    count_requests,
    diff,
    doveadm_script,
    extra_rounds,
    mbsync_script,
    peer_sample,
)

METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="GET",version="v1"} 40
apiserver_request_total{code="404",component="apiserver",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="GET",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",group="mailferry.io",resource="mailboxsyncs",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7
apiserver_request_total{code="200",component="apiserver",group="",resource="",scope="",subresource="/api",verb="GET",version=""} 3
apiserver_request_duration_seconds_count{resource="leases",verb="GET"} 99
"""


def test_requests_are_summed_per_verb_and_resource_over_codes() -> None:
    assert count_requests(METRICS) == {
        "GET leases": 42,
        "PATCH mailboxsyncs/status": 7,
        "GET /api": 3,
    }


def test_a_window_keeps_only_what_grew() -> None:
    before = {"GET leases": 40, "PATCH mailboxsyncs/status": 7}
    after = {"GET leases": 45, "PATCH mailboxsyncs/status": 7, "LIST jobs": 2}
    assert diff(after, before) == {"GET leases": 5, "LIST jobs": 2}


def test_one_percent_is_every_hundredth_mailbox_and_never_none() -> None:
    users = [f"u{i}" for i in range(250)]
    assert changed_users(users, 0) == ["u0", "u100", "u200"]
    assert changed_users(users[:5], 0) == ["u0"]
    assert changed_users(users[:5], 7) == ["u0"]


def test_the_peer_sample_is_spread_over_all_mailboxes_and_has_the_size_asked() -> None:
    users = [f"u{i}" for i in range(10_000)]
    sample = peer_sample(users, 1000)
    assert len(sample) == 1000 and len(set(sample)) == 1000
    assert sample[:2] == ["u0", "u10"] and sample[-1] == "u9990"
    assert peer_sample(users[:7], 3) == ["u0", "u2", "u4"]
    assert peer_sample(users[:7], 0) == users[:7] == peer_sample(users[:7], 99)


def test_the_peer_loops_name_each_mailbox_once_against_both_servers(tmp_path: Path) -> None:
    """The loops the bench runs (not run here): one command per mailbox, the source's address and port."""
    src = SimpleNamespace(host="127.0.0.1", port=1143, users={"a@x.test": "pw-a", "b@x.test": "pw-b"})
    dst = SimpleNamespace(host="127.0.0.1", port=2143, conf=tmp_path / "dovecot.conf")
    users = ["a@x.test", "b@x.test"]
    mbsync = mbsync_script(src, dst, users, tmp_path)  # type: ignore[arg-type]
    assert mbsync.count(" -a") == 2
    config = (tmp_path / "mbsync" / "a@x.test.mbsyncrc").read_text()
    assert "Port 1143" in config and "Port 2143" in config and "Pass pw-a" in config
    doveadm = doveadm_script(src, dst, users)  # type: ignore[arg-type]
    assert (
        doveadm.count("backup") == 2 and "'imapc_port=1143'" in doveadm and "'imapc_password=pw-b'" in doveadm
    )


def test_the_extra_rounds_add_their_settings_up() -> None:
    """Each pair of extra rounds keeps the settings of the pair before it, so rounds 6-7 differ from 4-5 by
    deltaBatchSize alone."""
    both = SimpleNamespace(noop_status_interval="1h", delta_batch_size=200)
    assert extra_rounds(both) == [
        ("quiet", "noopStatusInterval 1h", {"noopStatusInterval": "1h"}),
        (
            "large_jobs",
            "noopStatusInterval 1h, deltaBatchSize 200",
            {"noopStatusInterval": "1h", "deltaBatchSize": 200},
        ),
    ]
    only_jobs = SimpleNamespace(noop_status_interval=None, delta_batch_size=100)
    assert extra_rounds(only_jobs) == [("large_jobs", "deltaBatchSize 100", {"deltaBatchSize": 100})]
    assert extra_rounds(SimpleNamespace(noop_status_interval=None, delta_batch_size=None)) == []
