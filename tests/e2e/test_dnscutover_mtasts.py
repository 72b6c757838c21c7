"""MTA-STS across the switch and the rollback (RFC 8461; issue 12), against a real API server, real
PowerDNS and the real policy server (`python -m mailferry_operator.mtasts.server`, fed from the
ConfigMap as the chart's Deployment is):

- at Switched the served policy lists the old and the new MX; once status.drainUntil has passed, and not
  before, it is served without the old MX under a new id, and the `_mta-sts` TXT announces that id;
- rolled back to Planned, the TXT stays and announces the `mode: none` policy then served, until
  status.mtaSts.enforceCachedUntil (the last non-none policy served + the longest max_age); from that
  instant on, and not before, `_mta-sts` is deleted and the zone is exactly as it was.

The schema floors max_age at one hour, so the last part moves the recorded instant closer (the operator
stopped, status patched, started) instead of waiting an hour: that instant is what the operator obeys.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fixtures._proc import wait_until
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS
from mailferry_operator.mtasts import policy as mtasts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import (
    FAST_SAFETY,
    Operator,
    PolicyMirror,
    cutover_manifest,
    get_dc,
    in_phase,
    patch_spec,
    pdns_secret,
    powerdns_provider,
    wait_dc,
    zone_rrsets,
)

MX_TTL = 10  # the old MX TTL, kept at the switch: drain = max(2 x 10 s, drainMinimum 5 s) = 20 s
START = [
    ("@", "MX", MX_TTL, ["10 mx.old.test."]),
    ("@", "TXT", 300, ["v=spf1 include:spf.old.test ~all"]),
]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _sts_txt(pdns: PowerDNS, zone: str) -> list[str]:
    return pdns.answer("_mta-sts." + zone, "TXT")  # [] once deleted (NXDOMAIN)


def _served(mirror: PolicyMirror, what: str, check: Callable[[str], bool]) -> str:
    """The policy the server serves, once `check` holds for it."""

    def probe() -> str | None:
        policy = mirror.fetch()
        return policy if check(policy) else None

    return str(wait_until(probe, timeout=60, what=what))


def test_old_mx_leave_after_the_drain_and_mta_sts_goes_only_once_no_policy_can_be_cached(
    kube: KubeAPI, namespace: str, powerdns: PowerDNS, tmp_path: Path
) -> None:
    zone = f"sts{namespace[-6:]}.test."
    powerdns.create_zone(zone, START)
    before = zone_rrsets(powerdns, zone)
    pdns_secret(kube, namespace, "dns-creds", {"api-key": powerdns.api_key})
    mirror = PolicyMirror(kube, namespace, "cut-mta-sts", tmp_path)
    records: dict[str, Any] = {
        "mx": [{"host": "mx1.dest.test", "priority": 10}],
        "spf": {"include": ["spf.dest.test"]},
        "mtaSts": {"maxAgeSeconds": 3600, "policyUrl": mirror.url},
    }
    safety = {**FAST_SAFETY, "drainMinimum": "5s"}
    body = cutover_manifest(
        "cut",
        zone,
        powerdns_provider(powerdns.api_url),
        "Switched",
        records,
        ttl={"lowered": 30},
        safety=safety,
    )
    op = Operator(kube, namespace, tmp_path).start()
    try:
        kube.apply(body, namespace)
        obj = wait_dc(
            kube, namespace, "cut", lambda o: "drainUntil" in o.get("status", {}), "switched", 90, operator=op
        )
        drain_until = _time(obj["status"]["drainUntil"])
        first = obj["status"]["mtaSts"]["id"]

        # Until drainUntil: the policy served lists both MX, under the id the TXT announces.
        seen_before = 0
        while datetime.now(UTC) < drain_until - timedelta(seconds=2):
            policy = mirror.fetch()
            assert "mode: testing" in policy and "mx: mx.old.test" in policy and "mx: mx1.dest.test" in policy
            assert _sts_txt(powerdns, zone) == [mtasts.txt_value(policy)] == [f"v=STSv1; id={first}"]
            seen_before += 1
            time.sleep(1)
        assert seen_before >= 3

        policy = _served(mirror, "the policy without the old MX", lambda p: "mx.old.test" not in p)
        assert datetime.now(UTC) >= drain_until  # not before
        assert "mode: testing" in policy and "mx: mx1.dest.test" in policy
        second = mtasts.policy_id(policy)
        assert second != first
        wait_until(
            lambda: _sts_txt(powerdns, zone) == [f"v=STSv1; id={second}"], timeout=30, what="the TXT's new id"
        )
        st = get_dc(kube, namespace, "cut")["status"]
        assert st["mtaSts"]["id"] == second and not st.get("drifted")  # the clock's change is no drift
        print(f"\nold MX left the policy after drainUntil {drain_until.isoformat()}: id {first} -> {second}")

        # Rolled back to Planned: the TXT stays, announcing the mode none policy served.
        rolled = datetime.now(UTC)
        patch_spec(kube, namespace, "cut", '{"spec": {"targetPhase": "Planned"}}')
        obj = wait_dc(kube, namespace, "cut", in_phase("Planned"), "rolled back", 60, operator=op)
        mta = obj["status"]["mtaSts"]
        none = _served(mirror, "the mode none policy", lambda p: "mode: none" in p)
        assert mta["mode"] == "none" and mta["id"] == mtasts.policy_id(none) not in (first, second)
        assert _sts_txt(powerdns, zone) == [mtasts.txt_value(none)]
        cached = _time(mta["enforceCachedUntil"])
        assert cached >= rolled + timedelta(seconds=3600) - timedelta(seconds=1)  # served until the rollback

        # The operator obeys status.mtaSts.enforceCachedUntil: bring it to a few seconds from now.
        op.stop()
        soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30)  # a restart can take 10 s+
        patch = {"status": {"mtaSts": {**mta, "enforceCachedUntil": soon.isoformat().replace("+00:00", "Z")}}}
        kube.kubectl(
            "patch", "dnscutover", "cut", "-n", namespace, "--subresource=status", "--type=merge",
            "-p", json.dumps(patch),
        )  # fmt: skip
        op.start()
        kept = 0
        while datetime.now(UTC) < soon - timedelta(seconds=1):  # still served while a policy may be cached
            assert _sts_txt(powerdns, zone) == [mtasts.txt_value(none)]
            assert get_dc(kube, namespace, "cut")["status"].get("mtaSts") is not None
            kept += 1
            time.sleep(0.5)
        assert kept >= 3
        wait_until(lambda: _sts_txt(powerdns, zone) == [], timeout=30, what="_mta-sts deleted")
        assert datetime.now(UTC) >= soon
        assert zone_rrsets(powerdns, zone) == before  # exactly as before the cutover
        obj = wait_dc(
            kube,
            namespace,
            "cut",
            lambda o: "mtaSts" not in o["status"],
            "status.mtaSts gone",
            30,
            operator=op,
        )
        assert obj["status"]["phase"] == "Planned" and not obj["status"].get("drifted")
        assert "Traceback" not in op.log_text()
    finally:
        op.stop()
        mirror.close()
