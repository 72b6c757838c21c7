"""Cutover safety by default (DESIGN.md "Cutover safety", issue 12), against a real API server and a
zone served by TWO authoritative PowerDNS servers (ns1 127.0.0.1, ns2 127.0.0.2, one database), found
from the zone's NS RRset. A DnsCutover with no `gates` and no skip: the built-in gates hold the MX swap
until the old TTL and the zone's negative-caching time have passed since every server served the
change; switchedAt/drainUntil appear once both servers serve the new MX. A foreign apex TXT added
mid-cutover, an existing DMARC p=reject and an SPF redirect= survive forward to Enforced and the
rollback to Planned; everything else is restored exactly.

The minimum dwell is lowered on purpose (production default: 24 h in Staged) so the test takes
seconds; every other built-in gate runs with its real rule."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import SharedZones

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "dns"))
from dnscutover_harness import (
    Operator,
    cutover_manifest,
    in_phase,
    patch_spec,
    pdns_secret,
    phase_is,
    powerdns_provider,
    wait_dc,
    zone_rrsets,
)

OLD_TTL = 20
NEGATIVE_TTL = 15
SHORT_DWELL = {"ttlLowered": "0s", "staged": "3s", "switched": "1s", "enforced": "0s"}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _txt(pdns: SharedZones, zone: str, name: str) -> list[str]:
    got = pdns.secondary.query(f"{name}{zone}" if name else zone, "TXT").answer
    return sorted(b"".join(s).decode() for rr in got for r in rr for s in [r.strings])


def test_no_gates_the_builtins_hold_the_switch_and_what_others_wrote_survives(
    kube: KubeAPI, namespace: str, powerdns_shared: SharedZones, tmp_path: Path
) -> None:
    pd = powerdns_shared.primary
    zone = f"safe{namespace[-6:]}.test."
    spf = f"v=spf1 include:spf.old.test redirect=_spf.{zone}"
    dmarc = f"v=DMARC1; p=reject; rua=mailto:dmarc@{zone.rstrip('.')}"
    pd.create_zone(
        zone,
        [
            *powerdns_shared.glue(),
            ("@", "MX", OLD_TTL, ["10 mx.old.test."]),
            ("@", "TXT", OLD_TTL, [spf]),
            ("_dmarc", "TXT", OLD_TTL, [dmarc]),
            ("_spf", "TXT", 3600, ["v=spf1 ip4:192.0.2.0/24 -all"]),
        ],
        soa=f"ns1.{zone} hostmaster.{zone} 1 3600 600 86400 {NEGATIVE_TTL}",
    )
    before = zone_rrsets(pd, zone)
    pdns_secret(kube, namespace, "dns-creds", {"api-key": pd.api_key})
    records: dict[str, Any] = {
        "mx": [{"host": "mx1.dest.test", "priority": 10}],
        "spf": {"include": ["spf.dest.test"], "removeInclude": ["spf.old.test"], "all": "-all"},
        "dkim": {"selectors": [{"name": "dest1", "source": "cname", "cnameTarget": "dest1.dkim.dest.test"}]},
    }
    safety = {"minDwell": SHORT_DWELL, "drainMinimum": "10s", "nameserverPort": powerdns_shared.port}
    body = cutover_manifest(
        "cut", zone, powerdns_provider(pd.api_url), "Switched", records, ttl={"lowered": 30}, safety=safety
    )
    op = Operator(kube, namespace, tmp_path, only_dnscutover=True).start()
    try:
        kube.apply(body, namespace)
        wait_dc(kube, namespace, "cut", phase_is("Staged"), "Staged", 90, operator=op)
        # someone adds a verification string at the apex mid-cutover (the whole RRset, as a UI does),
        # once the staged SPF is served: the Staged status is saved before the records are written, and a
        # write within milliseconds of the operator's own is PowerDNS's to order (no conditional write)
        deadline = time.monotonic() + 30
        while _txt(powerdns_shared, zone, "") == [spf] and time.monotonic() < deadline:
            time.sleep(0.2)
        current = [v for v in _txt(powerdns_shared, zone, "")]
        assert current != [spf], "the staged SPF was never served"
        pd.set_rrset(zone, "@", "TXT", OLD_TTL, [*current, "MS=ms12345"])  # same TTL: only a value added
        obj = wait_dc(kube, namespace, "cut", in_phase("Switched"), "Switched", 180, operator=op)
        st = obj["status"]
        held = next(h for h in st["history"] if h["toPhase"] == "Switched")["message"]
        print(f"\nSwitched: {held}; ttlLoweredAt {st['ttlLoweredAt']}, switchedAt {st['switchedAt']}")
        assert "oldTtl" in held  # the built-in gate held the switch, and status says how long
        staged_at = _time(next(h for h in st["history"] if h["toPhase"] == "Staged")["time"])
        switched = _time(next(h for h in st["history"] if h["toPhase"] == "Switched")["time"])
        assert (switched - _time(st["ttlLoweredAt"])).total_seconds() >= OLD_TTL
        assert (switched - staged_at).total_seconds() >= NEGATIVE_TTL  # DKIM names did not exist before
        # switchedAt once BOTH servers serve the new MX; drain = max(2 x 20 s MX TTL at the switch, 10 s)
        assert (_time(st["drainUntil"]) - _time(st["switchedAt"])).total_seconds() == 2 * OLD_TTL
        for server in powerdns_shared.primary, powerdns_shared.secondary:
            assert server.answer(zone, "MX") == ["10 mx1.dest.test."]
        patch_spec(kube, namespace, "cut", '{"spec":{"targetPhase":"Enforced"}}')
        wait_dc(kube, namespace, "cut", in_phase("Enforced"), "Enforced", 120, operator=op)
        apex = _txt(powerdns_shared, zone, "")
        assert "MS=ms12345" in apex
        assert f"v=spf1 include:spf.dest.test redirect=_spf.{zone}" in apex  # redirect kept, no -all added
        assert _txt(powerdns_shared, zone, "_dmarc.")[0].startswith("v=DMARC1; p=reject")  # never weaker
        patch_spec(kube, namespace, "cut", '{"spec":{"targetPhase":"Planned"}}')
        back = wait_dc(
            kube, namespace, "cut", in_phase("Planned"), "rolled back to Planned", 120, operator=op
        )
        # the MailMigration's final sync reads these two: below Switched they are gone from the object
        assert "switchedAt" not in back["status"] and "drainUntil" not in back["status"]
        after = zone_rrsets(pd, zone)
        apex_after = after.pop((zone, "TXT"))
        assert apex_after == (OLD_TTL, tuple(sorted(['"MS=ms12345"', f'"{spf}"'])))
        assert after == {k: v for k, v in before.items() if k != (zone, "TXT")}  # the rest exactly
    finally:
        op.stop()
