"""Operator faults during a DnsCutover on real PowerDNS: kill -9 (or a kube-apiserver restart) at random
moments of every phase, forward to Enforced and back to Planned.

PowerDNS's REST API sits behind `HttpFaultProxy` (tests/integration/dns/dns_faults.py), which applies
each PATCH at once and answers it only after `response_delay`, so a fault often lands while a phase's
records are being written. Every gated step needs a manual approval (`spec.approvedPhase`), Switched and
Enforced (each DMARC stage) also a `minDuration`. A `Watcher` records every version of the object.

Figures:
- DNS writes: every PATCH that reached PowerDNS; duplicate = a write that changed nothing (the RRset
  already held exactly that content: the same write as the previous one for that name/type, or the
  zone's starting content);
- skipped gates: a version whose phase is beyond the approved one; a forward phase step without a
  recorded evaluation of that step's gates (status.gates of that phase) in an earlier version; two
  steps (phases or DMARC stages) closer than the minDuration (status.history times, 1 s resolution);
  a forward step taken twice. (A DMARC stage whose gates pass at the first evaluation leaves no
  status.gates version behind - the operator persists gate results only while they block - so for
  stages the minDuration spacing is the check.)
- time to converge after the last fault of each phase (until the phase is in place and the next step
  waits for its gates, or Ready at the target).

`dns_builtin_faults` runs the same faults with no spec gate at all: only the built-in gates pace the
cutover (minDwell per phase, recordsServed on the real nameserver, oldTtl and the SOA negative TTL,
dkimVerified), with short demo timings, and the switch drains (status.drainUntil) while Switched's dwell
holds. Kills land while each built-in gate holds and during the drain. Beyond the figures above:
- each forward step checked against the gates' conditions from status timestamps (history times,
  ttlLoweredAt, switchedAt): the dwell of the phase left, the old TTL since the lowering was served, the
  negative TTL since Staged created names, every server serving the lowered TTL before Staged and the
  new MX before Enforced (recordsServed); no step taken twice;
- the drain: a status naming the MTA-STS policy without the old MX is never seen before its drainUntil,
  and once drained that policy is what the zone's `_mta-sts` announces.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
for _p in (TESTS, TESTS / "integration" / "dns"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from dns_faults import HttpFaultProxy  # noqa: E402
from dnscutover_harness import FAST_ENV, cutover_manifest, pdns_secret, powerdns_provider  # noqa: E402

from chaos.opslib import Operator, Version, Watcher, condition, epoch, say  # noqa: E402
from fixtures.kubeapi import KubeAPI  # noqa: E402
from fixtures.powerdns import PowerDNS  # noqa: E402

PHASES = ["Planned", "TTLLowered", "Staged", "Switched", "Enforced"]
PATH = "/apis/mailferry.io/v1alpha1/namespaces/{ns}/dnscutovers"
SOAK_SECONDS = 2
START = [
    ("@", "MX", 120, ["10 mx1.old.test.", "20 mx2.old.test."]),
    ("@", "TXT", 120, ["v=spf1 include:spf.old.test ~all"]),
    ("_dmarc", "TXT", 120, ["v=DMARC1; p=none"]),
    ("www", "A", 3600, ["192.0.2.10"]),
]
Key = tuple[str, str]
# dns_builtin_faults: demo timings, each gate holding for seconds (production: hours)
OLD_TTL = (
    20  # MX, apex TXT, DMARC before the cutover: oldTtl holds Switched 20 s after the lowering was served
)
NEGATIVE_TTL = 4  # the zone's SOA minimum: names Staged creates are not asked for before
DWELL = {"ttlLowered": 3, "staged": 8, "switched": 10, "enforced": 4}  # seconds, per phase left
DRAIN_MINIMUM = 3  # drainUntil = switchedAt + max(2 x the MX TTL at the switch (20 s), 3 s) = + 40 s
NEW_MX = ["mx1.dest.test", "mx2.dest.test"]
BUILTIN = {"minDwell", "recordsServed", "oldTtl", "dkimVerified"}


def _idx(p: str | None) -> int:
    return PHASES.index(p) if p in PHASES else 0  # no approvedPhase/targetPhase = Planned


class DnsRig:
    def __init__(
        self,
        kube: KubeAPI,
        ns: str,
        pdns: PowerDNS,
        work: Path,
        zone: str,
        response_delay: float = 0.3,
        name: str = "cut",
        builtin: bool = False,
    ) -> None:
        self.kube, self.ns, self.pdns, self.work, self.zone, self.name = kube, ns, pdns, work, zone, name
        self.builtin = builtin
        work.mkdir(parents=True, exist_ok=True)
        if builtin:  # short TTLs and negative TTL: the built-in gates hold for seconds, not hours
            soa = f"ns1.{zone} hostmaster.{zone} 1 3600 600 86400 {NEGATIVE_TTL}"
            pdns.create_zone(zone, [(n, t, OLD_TTL, v) for n, t, _, v in START[:3]] + START[3:], soa=soa)
        else:
            pdns.create_zone(zone, START)
        self.start_zone = zone_state(pdns, zone)
        self.proxy = HttpFaultProxy(f"http://127.0.0.1:{pdns.webserver_port}", response_delay=response_delay)
        self.op = Operator(kube, [ns], work / "operator.log", env={**FAST_ENV, "MAILFERRY_DNS_TIMEOUT": "5"})
        self.watch = Watcher(kube, PATH.format(ns=ns), name)
        self.approved_at: dict[str, float] = {}

    def start(self, operator: bool = True) -> DnsRig:
        pdns_secret(self.kube, self.ns, "dns-creds", {"api-key": self.pdns.api_key})
        approve = {"name": "approve", "type": "manualApproval"}
        soak = {"name": "soak", "type": "minDuration", "duration": f"{SOAK_SECONDS}s"}
        gates: dict[str, Any] = {
            "ttlLowered": [approve],
            "staged": [approve],
            "switched": [approve, soak],
            "enforced": [approve, soak],
        }
        extra: dict[str, Any] = {}
        if self.builtin:  # no spec gate: the built-in ones only, every one on
            gates = {}
            extra["safety"] = {
                "minDwell": {p: f"{s}s" for p, s in DWELL.items()},
                "drainMinimum": f"{DRAIN_MINIMUM}s",
                "nameservers": [f"{self.pdns.host}:{self.pdns.port}"],
            }
        records = {
            "mx": [{"host": "mx1.dest.test", "priority": 10}, {"host": "mx2.dest.test", "priority": 20}],
            "spf": {"include": ["spf.dest.test"], "removeInclude": ["spf.old.test"]},
            "dkim": {"selectors": [{"name": "mf1"}]},
            "dmarc": {"rua": ["mailto:d@reports.dest.test"]},
            "mtaSts": {},
            "tlsRpt": {"rua": ["mailto:t@reports.dest.test"]},
        }
        self.watch.start()
        if operator:
            self.op.start()
        self.kube.apply(
            cutover_manifest(
                self.name,
                self.zone,
                powerdns_provider(self.proxy.url + "/api/v1"),
                "Enforced",
                records,
                ttl={"lowered": 30},
                gates=gates,
                **extra,
            ),
            self.ns,
        )
        return self

    def close(self) -> None:
        for step in (self.op.stop, self.watch.stop, self.proxy.close):
            with contextlib.suppress(Exception):
                step()

    def patch(self, spec: dict[str, Any]) -> float:
        self.kube.kubectl(
            "patch", "dnscutover", self.name, "-n", self.ns, "--type=merge", "-p", json.dumps({"spec": spec})
        )
        return time.time()

    def approve(self, phase: str) -> None:
        self.approved_at[phase] = self.patch({"approvedPhase": phase})

    def latest(self) -> Version | None:
        return self.watch.latest()

    def wait(self, check: Callable[[Version], object], what: str, timeout: float = 120) -> Version:
        try:
            return self.watch.wait(check, timeout, what)
        except AssertionError as exc:
            v = self.latest()
            st = v.status if v else {}
            brief = {k: st.get(k) for k in ("phase", "dmarcStage", "gates", "conditions", "lastError")}
            raise AssertionError(f"{exc}\nstatus: {brief}\nlog:\n{self.op.log_text()[-3000:]}") from None

    def waiting_for(self, phase: str) -> Callable[[Version], bool]:
        """The operator evaluated `phase`'s gates and waits for them (status.gates recorded)."""
        return lambda v: (
            any(g.get("phase") == phase for g in v.status.get("gates") or [])
            and condition(v.obj, "Paused").get("reason") == "WaitingForGates"
        )

    def at_target(self, v: Version) -> bool:
        return condition(v.obj, "Ready").get("status") == "True" and v.status.get("phase") == v.spec.get(
            "targetPhase"
        )

    def applied(self) -> list[tuple[str, str, bytes, int]]:
        return [e for e in self.proxy.log if e[0] == "PATCH-applied"]


def zone_state(pdns: PowerDNS, zone: str) -> dict[Key, tuple[int, tuple[str, ...]]]:
    out = {}
    for rr in pdns.rrsets(zone):
        if rr["type"] != "SOA":
            out[(rr["name"], rr["type"])] = (rr["ttl"], tuple(sorted(r["content"] for r in rr["records"])))
    return out


def duplicate_writes(
    start: dict[Key, tuple[int, tuple[str, ...]]], applied: list[tuple[str, str, bytes, int]]
) -> list[str]:
    """Writes that changed nothing: the RRset already held that content (tracked from the start zone)."""
    state: dict[Key, tuple[int, tuple[str, ...]] | None] = dict(start)
    dupes = []
    for _kind, _path, body, _code in applied:
        for rr in json.loads(body)["rrsets"]:
            key = (rr["name"], rr["type"])
            new = (
                None
                if rr["changetype"] == "DELETE"
                else (rr["ttl"], tuple(sorted(r["content"] for r in rr["records"])))
            )
            if state.get(key) == new:
                dupes.append(f"{key[0]} {key[1]} -> {new}")
            state[key] = new
    return dupes


def skipped_gates(versions: list[Version]) -> list[str]:
    problems: list[str] = []
    evaluated: set[str] = set()
    prev_phase = "Planned"
    for v in versions:
        st, spec = v.status, v.spec
        phase = st.get("phase") or "Planned"
        rolling_back = _idx(spec.get("targetPhase")) < _idx(phase)
        for g in st.get("gates") or []:
            evaluated.add(f"{g.get('phase')}")
        approved = spec.get("approvedPhase")
        if _idx(phase) > _idx(approved) and not rolling_back:
            problems.append(
                f"phase {phase} with approvedPhase {approved} (rv {v.obj['metadata']['resourceVersion']})"
            )
        if _idx(phase) > _idx(prev_phase):
            if phase not in evaluated:
                problems.append(f"entered {phase} without a recorded evaluation of its gates")
            evaluated.discard(phase)
        prev_phase = phase
    final = versions[-1].status if versions else {}
    forward = [
        (h["fromPhase"], h["toPhase"], epoch(h["time"]) or 0.0)
        for h in final.get("history") or []
        if h.get("reason") in ("Advanced", "DmarcStage")
    ]
    steps = [(a, b) for a, b, _ in forward if a != b]
    for step in set(steps):
        if steps.count(step) > 1:
            problems.append(f"step {step} taken {steps.count(step)} times")
    for (a, b, t), (_a0, _b0, t0) in zip(forward[1:], forward, strict=False):
        if b in ("Switched", "Enforced") and t - t0 < SOAK_SECONDS - 1:
            problems.append(f"{a}->{b} {t - t0:.0f}s after the previous step (minDuration {SOAK_SECONDS}s)")
    return problems


def dns_faults(
    kube: KubeAPI,
    ns: str,
    pdns: PowerDNS,
    work: Path,
    fault: str = "kill",
    faults: int = 20,
    seed: int = 7,
    rollback_share: float = 0.3,
    response_delay: float = 0.3,
    zone: str | None = None,
) -> tuple[bool, dict[str, Any]]:
    """`fault` = "kill" (kill -9 + restart of the operator) or "apiserver" (kube-apiserver restarted on
    the same port and etcd; the operator process stays). `faults` spread over the four forward steps
    (half while the step waits for approval, half right after approving it) and the rollback."""
    rng = random.Random(seed)
    zone = zone or f"dk{rng.randrange(16**6):06x}.test."
    rig = DnsRig(kube, ns, pdns, work, zone, response_delay)
    back = round(faults * rollback_share)
    fwd = faults - back
    per = [fwd // 4 + (1 if i < fwd % 4 else 0) for i in range(4)]
    records: list[dict[str, Any]] = []
    converge: dict[str, float] = {}
    last_fault = [0.0]

    def hit(planned: str) -> None:
        v = rig.latest()
        at = (v.status.get("phase"), v.status.get("dmarcStage")) if v else (None, None)
        log = list(rig.proxy.log)
        in_flight = sum(1 for e in log if e[0] == "PATCH-applied") - sum(1 for e in log if e[0] == "PATCH")
        t = time.monotonic()
        last_fault[0] = t  # convergence is measured from the fault itself (restart time included)
        if fault == "kill":
            rig.op.kill()
            time.sleep(rng.uniform(0.0, 0.5))
            rig.op.start()
        else:
            kube.restart_apiserver(rng.uniform(1.0, 3.0))
        records.append(
            {
                "planned": planned,
                "phase_at_fault": at[0],
                "dmarc_stage": at[1],
                "write_in_flight": in_flight > 0,
                "writes_so_far": len(rig.applied()),
                "seconds": round(last_fault[0] - t, 1),
            }
        )

    try:
        rig.start()
        pid = rig.op.pid
        t0 = time.monotonic()
        for step, phase in enumerate(PHASES[1:]):
            rig.wait(rig.waiting_for(phase), f"gates of {phase} evaluated")
            n = per[step]
            for _ in range(n // 2):  # while the step waits for approval: the gate must hold
                time.sleep(rng.uniform(0.2, 1.5))
                hit(phase)
            rig.approve(phase)
            for i in range(n - n // 2):  # right after approving: mid gate evaluation / mid-write
                time.sleep(rng.uniform(0.0, 1.2 if i == 0 else 2.0))
                hit(phase)
            done = rig.at_target if phase == "Enforced" else rig.waiting_for(PHASES[step + 2])
            rig.wait(done, f"{phase} converged", timeout=180)
            converge[phase] = round(time.monotonic() - max(last_fault[0], t0), 1)
            say(f"  {phase}: {n} fault(s), converged {converge[phase]} s after the last")
        forward_writes = len(rig.applied())
        final_fwd = rig.latest()
        records_ok = sorted(pdns.answer(zone, "MX")) == [
            "10 mx1.dest.test.",
            "20 mx2.dest.test.",
        ] and pdns.answer("_dmarc." + zone, "TXT")[0].startswith("v=DMARC1; p=reject")
        # rollback under faults
        rig.patch({"targetPhase": "Planned"})
        for _ in range(back):
            time.sleep(rng.uniform(0.2, 2.0))
            hit("rollback")
        rig.wait(rig.at_target, "rolled back to Planned", timeout=180)
        converge["rollback"] = round(time.monotonic() - last_fault[0], 1)
        time.sleep(1.0)
        after = zone_state(pdns, zone)
        # _mta-sts stays on purpose, announcing the mode none policy (senders may cache enforce: RFC 8461 8.3)
        kept_mta_sts = after.pop(("_mta-sts." + zone, "TXT"), None)
        restored = after == rig.start_zone and kept_mta_sts is not None
        versions = rig.watch.snapshot()
        applied = rig.applied()
        dupes = duplicate_writes(rig.start_zone, applied)
        skipped = (
            skipped_gates([v for v in versions if _idx(v.spec.get("targetPhase")) > 0]) if versions else []
        )
        hist = [
            (h["fromPhase"], h["toPhase"]) for h in (final_fwd.status.get("history") if final_fwd else [])
        ]
        res: dict[str, Any] = {
            "fault": "operator kill -9" if fault == "kill" else "kube-apiserver restart",
            "faults": len(records),
            "faults_per_phase": {p: sum(1 for r in records if r["phase_at_fault"] == p) for p in PHASES},
            "faults_during_rollback": sum(1 for r in records if r["planned"] == "rollback"),
            "faults_with_a_dns_write_in_flight": sum(1 for r in records if r["write_in_flight"]),
            "faults_detail": records,
            "dns_writes": len(applied),
            "dns_writes_forward": forward_writes,
            "dns_writes_rollback": len(applied) - forward_writes,
            "duplicate_dns_writes": len(dupes),
            "duplicate_dns_write_details": dupes[:10],
            "skipped_gates": len(skipped),
            "skipped_gate_details": skipped[:10],
            "forward_history": hist,
            "records_at_enforced_ok": records_ok,
            "zone_restored_after_rollback": restored,
            "seconds_to_converge_after_last_fault": converge,
            "seconds_total": round(time.monotonic() - t0, 1),
            "operator_restarts": rig.op.starts - 1,
        }
        if fault != "kill":
            res["operator_pid_unchanged"] = rig.op.running() and rig.op.pid == pid
        ok = (
            not dupes
            and not skipped
            and restored
            and records_ok
            and res.get("operator_pid_unchanged", True) is True
        )
        return ok, res
    finally:
        rig.close()


# ------------------------------------------------------------------------ built-in gates and the drain
def _dwell(phase: str) -> int:
    key = {"TTLLowered": "ttlLowered", "Staged": "staged", "Switched": "switched", "Enforced": "enforced"}
    return DWELL.get(key.get(phase, ""), 0)


def _reached(phase: str) -> Callable[[Version], bool]:
    return lambda v: _idx(v.status.get("phase")) >= _idx(phase)


def drained_policy_ids() -> set[str]:
    """The MTA-STS policies without the old MX (what may be served only after drainUntil)."""
    from mailferry_operator.mtasts import policy as mtasts

    return {
        mtasts.policy_id(mtasts.render(mode, NEW_MX, age))  # type: ignore[arg-type]
        for mode, age in (("testing", 86400), ("enforce", 86400), ("enforce", 604800))
    }


def builtin_gate_checks(versions: list[Version], final: dict[str, Any]) -> list[str]:
    """Every forward step against the built-in gates' conditions, from status timestamps (1 s resolution):
    the dwell of the phase left; the old TTL since ttlLoweredAt and the negative TTL since Staged before
    Switched; recordsServed: ttlLoweredAt (stamped when every server served the lowered TTL) before Staged,
    switchedAt (every server served the new MX) before Enforced. No step taken twice; no status naming an
    MTA-STS policy without the old MX seen before its drainUntil. (Gates that pass at their first
    evaluation leave no status.gates version behind, so the timestamps are the evidence.)"""
    problems: list[str] = []
    forward = [
        (h["fromPhase"], h["toPhase"], epoch(h["time"]) or 0.0)
        for h in final.get("history") or []
        if h.get("reason") in ("Advanced", "DmarcStage")
    ]
    steps = [(a, b) for a, b, _ in forward if a != b]
    problems += [f"step {x} taken {steps.count(x)} times" for x in set(steps) if steps.count(x) > 1]
    for (_a, b, t), (_a0, b0, t0) in zip(forward[1:], forward, strict=False):
        if t - t0 < _dwell(b0) - 1:  # the dwell of the phase (DMARC stage) left
            problems.append(f"{b0} -> {b} {t - t0:.0f}s after entering {b0} (minDwell {_dwell(b0)}s)")
    at = {b: t for a, b, t in forward if a != b}
    lowered, switched, drain = (epoch(final.get(k)) for k in ("ttlLoweredAt", "switchedAt", "drainUntil"))
    if "Staged" in at and (lowered is None or lowered > at["Staged"] + 1):
        problems.append(f"Staged at {at['Staged']:.0f} before the lowering was served ({lowered})")
    if "Enforced" in at and (switched is None or switched > at["Enforced"] + 1):
        problems.append(f"Enforced at {at['Enforced']:.0f} before the new MX was served ({switched})")
    if "Switched" in at:
        if lowered is None or lowered < at.get("TTLLowered", 0) - 1 or at["Switched"] - lowered < OLD_TTL - 1:
            problems.append(
                f"Switched {at['Switched'] - (lowered or 0):.0f}s after ttlLoweredAt (old TTL {OLD_TTL}s)"
            )
        if at["Switched"] - at.get("Staged", 0) < NEGATIVE_TTL - 1:
            problems.append(
                f"Switched sooner than the negative TTL ({NEGATIVE_TTL}s) after Staged created names"
            )
        if (
            switched is None
            or drain is None
            or switched < at["Switched"] - 1
            or drain - switched < 2 * OLD_TTL - 1
        ):
            problems.append(
                f"switchedAt {switched} / drainUntil {drain}: not the drain of a {OLD_TTL}s MX TTL"
            )
    drained = drained_policy_ids()
    for v in versions:
        mta_id = (v.status.get("mtaSts") or {}).get("id")
        if mta_id in drained:
            until = epoch(v.status.get("drainUntil"))
            if until is None or v.wall < until:
                problems.append(
                    f"policy {mta_id} without the old MX seen {v.wall - (until or 0):.1f}s vs drainUntil"
                )
                break
    return problems


def dns_builtin_faults(
    kube: KubeAPI,
    ns: str,
    pdns: PowerDNS,
    work: Path,
    faults: int = 20,
    seed: int = 7,
    response_delay: float = 0.3,
    zone: str | None = None,
) -> tuple[bool, dict[str, Any]]:
    """kill -9 of the operator `faults` times while the built-in gates hold each forward step (no spec
    gate), during the drain after the switch and its MTA-STS republish, and during the rollback."""
    from mailferry_operator.mtasts import policy as mtasts

    rng = random.Random(seed)
    zone = zone or f"db{rng.randrange(16**6):06x}.test."
    rig = DnsRig(kube, ns, pdns, work, zone, response_delay, builtin=True)
    back = round(faults * 0.2)
    draining = round(faults * 0.2)
    fwd = faults - back - draining
    # none in TTLLowered (the approval-paced run has them): a restart there (~10 s on a busy machine) would
    # outlast the old TTL, and Staged is where minDwell and then oldTtl hold the switch
    weights = {"TTLLowered": 0, "Staged": 4, "Switched": 2, "Enforced": 2}
    quota = {p: fwd * w // sum(weights.values()) for p, w in weights.items()}
    quota["Staged"] += fwd - sum(quota.values())
    records: list[dict[str, Any]] = []
    drained = drained_policy_ids()

    def hit(planned: str) -> None:
        v = rig.latest()
        st = v.status if v else {}
        holding = sorted(
            g["name"]
            for g in st.get("gates") or []
            if g.get("builtin") and g.get("result") in ("Pending", "Inconclusive")
        )
        until = epoch(st.get("drainUntil"))
        if until is not None and time.time() < until:
            holding.append("drain")
        log = list(rig.proxy.log)
        in_flight = sum(1 for e in log if e[0] == "PATCH-applied") - sum(1 for e in log if e[0] == "PATCH")
        rig.op.kill()
        time.sleep(rng.uniform(0.0, 0.5))
        rig.op.start()
        records.append(
            {
                "planned": planned,
                "phase_at_fault": st.get("phase"),
                "dmarc_stage": st.get("dmarcStage"),
                "holding": holding,
                "write_in_flight": in_flight > 0,
            }
        )

    def phase_now() -> str:
        v = rig.latest()
        return str((v.status.get("phase") if v else None) or "Planned")

    try:
        rig.start()
        t0 = time.monotonic()
        left = 0
        for phase, n in quota.items():
            rig.wait(_reached(phase), f"{phase} entered", 180)
            left += n
            while left and phase_now() == phase:  # the gates passed: the rest go to the next phase
                time.sleep(rng.uniform(0.3, 1.5))
                hit(phase)
                left -= 1
        draining += left
        # the drain: kills before drainUntil, and around the republish of the policy without the old MX
        v = rig.wait(lambda v: bool(v.status.get("drainUntil")), "drainUntil set", 180)
        until = epoch(v.status["drainUntil"]) or 0.0
        for i in range(draining):
            if i < max(1, draining // 2) and time.time() < until:
                time.sleep(max(0.0, min(rng.uniform(0.5, 3.0), until - time.time())))
            else:
                time.sleep(rng.uniform(0.0, 1.0))
            hit("drain")
        final_fwd = rig.wait(
            lambda v: rig.at_target(v) and (v.status.get("mtaSts") or {}).get("id") in drained,
            "Enforced with the drained MTA-STS policy",
            240,
        )
        # Enforced can be reached at a DMARC stage before the last, whose step republishes the policy
        # (another drained one): the zone and the status must come to name the same drained policy.
        drained_ok, deadline = False, time.monotonic() + 60
        while not drained_ok and time.monotonic() < deadline:
            latest = rig.latest() or final_fwd
            mta_id = (latest.status.get("mtaSts") or {}).get("id")
            served = pdns.answer("_mta-sts." + zone, "TXT")
            drained_ok = mta_id in drained and served == [mtasts.txt_of(str(mta_id))]
            if not drained_ok:
                time.sleep(0.5)
        forward_writes = len(rig.applied())
        records_ok = sorted(pdns.answer(zone, "MX")) == [f"10 {NEW_MX[0]}.", f"20 {NEW_MX[1]}."]
        rig.patch({"targetPhase": "Planned"})
        for _ in range(back):
            time.sleep(rng.uniform(0.2, 2.0))
            hit("rollback")
        rig.wait(rig.at_target, "rolled back to Planned", timeout=180)
        time.sleep(1.0)
        after = zone_state(pdns, zone)
        kept_mta_sts = after.pop(("_mta-sts." + zone, "TXT"), None)  # a sender may cache a policy for a week
        restored = after == rig.start_zone and kept_mta_sts is not None
        versions = rig.watch.snapshot()
        applied = rig.applied()
        dupes = duplicate_writes(rig.start_zone, applied)
        skipped = builtin_gate_checks(versions, final_fwd.status)
        holding: dict[str, int] = {}
        for r in records:
            for g in r["holding"]:
                holding[g] = holding.get(g, 0) + 1
        res: dict[str, Any] = {
            "fault": "operator kill -9, built-in gates only",
            "faults": len(records),
            "faults_per_phase": {p: sum(1 for r in records if r["phase_at_fault"] == p) for p in PHASES},
            "faults_while_gate_holds": holding,
            "faults_during_drain": sum(1 for r in records if "drain" in r["holding"]),
            "faults_during_rollback": sum(1 for r in records if r["planned"] == "rollback"),
            "faults_with_a_dns_write_in_flight": sum(1 for r in records if r["write_in_flight"]),
            "faults_detail": records,
            "dns_writes": len(applied),
            "dns_writes_forward": forward_writes,
            "duplicate_dns_writes": len(dupes),
            "duplicate_dns_write_details": dupes[:10],
            "skipped_gates": len(skipped),
            "skipped_gate_details": skipped[:10],
            "forward_history": [
                (h["fromPhase"], h["toPhase"], h.get("message", "")[-60:])
                for h in final_fwd.status.get("history") or []
            ],
            "drained_policy_announced": drained_ok,
            "records_at_enforced_ok": records_ok,
            "zone_restored_after_rollback": restored,
            "seconds_total": round(time.monotonic() - t0, 1),
            "operator_restarts": rig.op.starts - 1,
        }
        ok = not dupes and not skipped and restored and records_ok and drained_ok
        return ok, res
    finally:
        rig.close()
