"""Gate evaluation, pure: (gate spec, previous GateStatus, an observation, now) -> new GateStatus.

Probes (gates/probes.py) do the I/O and hand in observations; nothing here touches the network,
so every rule below is tested alone. Field names and semantics follow Argo Rollouts analysis:
a prometheus gate takes one measurement per `interval`; it fails once failures exceed
`failureLimit`, and passes after at least `count` measurements ending in
`consecutiveSuccessLimit` successes in a row. `onNoData` decides what an empty result is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from mailferry_api.dnscutover import DNS_PHASES, Gate, GateStatus, Measurement

Outcome = Literal["Passed", "Failed", "Waiting", "Inconclusive"]
MAX_MEASUREMENTS = 10

_DUR = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    total = 0.0
    pos = 0
    for m in _DUR.finditer(text):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {text!r}")
    return timedelta(seconds=total)


def fresh(gate: Gate, phase: str) -> GateStatus:
    return GateStatus(phase=phase, name=gate.name, type=gate.type, result="Pending")


def _measure(st: GateStatus, now: datetime, value: str) -> list[Measurement]:
    return [*st.measurements, Measurement(time=now, value=value[:512])][-MAX_MEASUREMENTS:]


def _set(
    st: GateStatus, now: datetime, result: str, message: str, value: str | None = None, **counts: int
) -> GateStatus:
    update: dict[str, object] = {"result": result, "message": message[:2048], "last_evaluated": now, **counts}
    if value is not None:
        update["measurements"] = _measure(st, now, value)
    return st.model_copy(update=update)


def passed(st: GateStatus, message: str, now: datetime) -> GateStatus:
    return _set(st, now, "Passed", message)


def failed(st: GateStatus, message: str, now: datetime) -> GateStatus:
    return _set(st, now, "Failed", message)


def pending(st: GateStatus, message: str, now: datetime) -> GateStatus:
    return _set(st, now, "Pending", message)


def inconclusive(st: GateStatus, message: str, now: datetime) -> GateStatus:
    return _set(st, now, "Inconclusive", message)


def skipped(st: GateStatus, message: str, now: datetime) -> GateStatus:
    """A built-in gate turned off in the spec: it counts as passed and says who turned it off."""
    return _set(st, now, "Skipped", message)


# ---------------------------------------------------------------------------------- syncLag
@dataclass
class LagObservation:
    found: bool
    max_seconds: int | None = None
    pending_messages: int | None = None
    error: str | None = None
    mode: str = "rounds"  # follow: the followers' measured lag (docs/follow.md), else time since a round


def sync_lag(gate: Gate, st: GateStatus, obs: LagObservation, now: datetime) -> GateStatus:
    cfg = gate.sync_lag
    max_s = cfg.max_seconds if cfg else 900
    max_p = cfg.max_pending_messages if cfg else 0
    if obs.error:
        return _set(st, now, "Inconclusive", obs.error)
    if not obs.found:
        return _set(st, now, "Failed", "the referenced MailMigration does not exist (spec.migrationRef)")
    if obs.max_seconds is None:
        return _set(st, now, "Inconclusive", "the MailMigration reports no lag yet (status.lag)")
    pending = obs.pending_messages or 0
    value = f"{'follow lag' if obs.mode == 'follow' else 'lag'} {obs.max_seconds}s, {pending} pending"
    if obs.max_seconds > max_s or pending > max_p:
        return _set(st, now, "Failed", f"{value}: over the limit ({max_s}s, {max_p} pending)", value)
    return _set(st, now, "Passed", f"{value}: within the limit ({max_s}s, {max_p} pending)", value)


# -------------------------------------------------------------------------------- dnsRecord
@dataclass
class DnsObservation:
    """Per nameserver: the problems found ([] = serves everything expected)."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    checked: int = 0


def dns_record(gate: Gate, st: GateStatus, obs: DnsObservation, now: datetime) -> GateStatus:
    if obs.error:
        return _set(st, now, "Inconclusive", obs.error)
    bad = {ns: p for ns, p in obs.problems.items() if p}
    if bad:
        detail = "; ".join(f"{ns}: {', '.join(p[:3])}" for ns, p in sorted(bad.items()))
        return _set(
            st,
            now,
            "Failed",
            f"not served by every authoritative nameserver: {detail}",
            f"{len(bad)}/{len(obs.problems) + len(obs.unreachable)} nameservers differ",
        )
    if obs.unreachable:
        detail = "; ".join(f"{ns}: {e}" for ns, e in sorted(obs.unreachable.items()))
        return _set(st, now, "Inconclusive", f"nameservers did not answer: {detail}")
    n = len(obs.problems)
    return _set(
        st,
        now,
        "Passed",
        f"{obs.checked} record set(s) served by all {n} nameservers",
        f"{n} nameservers agree",
    )


# ------------------------------------------------------------------------------- ttlElapsed
def ttl_elapsed(st: GateStatus, since: datetime | None, ttl_seconds: int, now: datetime) -> GateStatus:
    if since is None:
        return _set(st, now, "Pending", "the change the TTL applies to has not been made yet")
    due = since + timedelta(seconds=ttl_seconds)
    if now >= due:
        return _set(st, now, "Passed", f"{ttl_seconds}s have passed since {since.isoformat()}")
    left = int((due - now).total_seconds())
    return _set(st, now, "Pending", f"waiting {left}s more for the old TTL ({ttl_seconds}s) to pass")


# ------------------------------------------------------------------------------ minDuration
def min_duration(gate: Gate, st: GateStatus, since: datetime | None, now: datetime) -> GateStatus:
    need = parse_duration(gate.duration or "0s")
    start = since or now
    if now - start >= need:
        return _set(st, now, "Passed", f"{gate.duration} have passed in this phase")
    left = int((start + need - now).total_seconds())
    return _set(st, now, "Pending", f"waiting {left}s more ({gate.duration} minimum)")


# --------------------------------------------------------------------------- manualApproval
def manual_approval(st: GateStatus, target: str, approved: str | None, now: datetime) -> GateStatus:
    if approved in DNS_PHASES and DNS_PHASES.index(approved) >= DNS_PHASES.index(target):
        return _set(st, now, "Passed", f"approved up to {approved}")
    return _set(
        st,
        now,
        "Pending",
        f"waiting for approval: set spec.approvedPhase (or the annotation "
        f"mailferry.io/approved-phase) to {target}",
    )


# ------------------------------------------------------------------------------- prometheus
@dataclass
class PromObservation:
    values: list[float] | None = None  # None or [] = no data
    error: str | None = None
    invalid: bool = False  # Prometheus refused the query itself (bad_data): it never passes as written
    refused: str | None = None  # the installation does not allow the address (mailferry_api.egress)


def prometheus_due(gate: Gate, st: GateStatus, now: datetime) -> bool:
    if st.result in ("Passed", "Failed"):
        return False
    if not st.measurements:
        return True
    cfg = gate.prometheus
    interval = parse_duration(cfg.interval if cfg else "1m")
    return now - st.measurements[-1].time >= interval


def prometheus(gate: Gate, st: GateStatus, obs: PromObservation, now: datetime) -> GateStatus:
    cfg = gate.prometheus
    assert cfg is not None
    rng = cfg.threshold_range
    if obs.refused:
        return _set(st, now, "Failed", obs.refused, "error: EgressNotAllowed")
    if obs.invalid:
        return _set(
            st, now, "Failed", f"Prometheus rejected prometheus.query: {obs.error}", f"error: {obs.error}"
        )
    if obs.error:
        return _set(st, now, "Inconclusive", f"query failed: {obs.error}", f"error: {obs.error}")
    values = [v for v in (obs.values or []) if not math.isnan(v)]
    successes, failures, consecutive = st.successes, st.failures, st.consecutive_successes
    if not values:
        if cfg.on_no_data == "inconclusive":
            return _set(st, now, "Inconclusive", "the query returned no data", "no data")
        ok = cfg.on_no_data == "pass"
        shown = "no data"
    else:
        ok = all((rng.min is None or v >= rng.min) and (rng.max is None or v <= rng.max) for v in values)
        shown = ",".join(f"{v:.6g}" for v in values[:5])
        if len(values) > 1:  # every series must be within the range
            shown = f"{len(values)} series: {shown}{',...' if len(values) > 5 else ''}"
    if ok:
        successes, consecutive = successes + 1, consecutive + 1
    else:
        failures, consecutive = failures + 1, 0
    taken = successes + failures
    range_text = f"[{'-inf' if rng.min is None else rng.min}, {'+inf' if rng.max is None else rng.max}]"
    counts = {"successes": successes, "failures": failures, "consecutive_successes": consecutive}
    if failures > cfg.failure_limit:
        return _set(
            st,
            now,
            "Failed",
            f"{shown} outside {range_text}: {failures} failure(s) > failureLimit {cfg.failure_limit}",
            shown,
            **counts,
        )
    if taken >= cfg.count and consecutive >= cfg.consecutive_success_limit:
        return _set(
            st,
            now,
            "Passed",
            f"{shown} within {range_text} ({successes}/{taken} measurements passed)",
            shown,
            **counts,
        )
    verdict = "within" if ok else "outside"
    return _set(
        st,
        now,
        "Pending",
        f"{shown} {verdict} {range_text}; measurement {taken} of at least {cfg.count}",
        shown,
        **counts,
    )


# ------------------------------------------------------------------------------- summarize
def summarize(statuses: list[GateStatus]) -> tuple[Outcome, str]:
    failed = [s for s in statuses if s.result == "Failed"]
    if failed:
        return "Failed", "; ".join(f"{s.name}: {s.message}" for s in failed)[:1024]
    inconclusive = [s for s in statuses if s.result == "Inconclusive"]
    if inconclusive:
        return "Inconclusive", "; ".join(f"{s.name}: {s.message}" for s in inconclusive)[:1024]
    pending = [s for s in statuses if s.result not in ("Passed", "Skipped")]
    if pending:
        return "Waiting", "; ".join(f"{s.name}: {s.message}" for s in pending)[:1024]
    skipped = [s.name for s in statuses if s.result == "Skipped"]
    extra = f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""
    return "Passed", f"all {len(statuses)} gate(s) passed{extra}"
