"""What `kubectl mailferry status` prints (and `make demo` redraws): pure functions of API objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mailferry_api.dnscutover import DNS_PHASES

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Style:
    """ANSI colours, or none (a pipe, a test)."""

    color: bool = False

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def warn(self, text: str) -> str:
        return self._wrap("33", text)

    def bad(self, text: str) -> str:
        return self._wrap("31", text)

    def phase(self, phase: str) -> str:
        if phase in ("Synced", "InSync", "Completed", "Enforced"):
            return self.good(phase)
        if phase in ("Failed",):
            return self.bad(phase)
        if phase in ("Throttled", "Suspended", "AwaitingApproval"):
            return self.warn(phase)
        return phase


def bar(done: float, total: float, style: Style, width: int = 30) -> str:
    """`[████░░░░]  42.0%`; an empty total is 0 %."""
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
    full = int(frac * width)
    return f"[{style.good('█' * full)}{style.dim('░' * (width - full))}] {frac * 100:5.1f}%"


def conditions(obj: Obj) -> dict[str, Mapping[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def ready_text(ready: Mapping[str, Any]) -> str:
    """`Ready=True`, or `Ready=False (Reason: message)`."""
    text = f"Ready={ready.get('status', 'Unknown')}"
    if ready and ready.get("status") != "True":
        text += f" ({ready.get('reason')}: {ready.get('message')})"
    return text


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def eta_text(status: Mapping[str, Any]) -> str | None:
    """The operator's estimate, when its status carries one (`eta` as a time or `etaSeconds`)."""
    if status.get("etaSeconds") is not None:
        return f"~{human_seconds(float(status['etaSeconds']))}"
    if status.get("eta"):
        return str(status["eta"])
    return None


def migration_lines(
    mm: Obj, syncs: Sequence[Obj] = (), style: Style = Style(), mailboxes: bool = False
) -> list[str]:
    """A migration at a glance: phase, Ready, a bar per stage, counts, what it waits for."""
    meta, st = mm.get("metadata") or {}, mm.get("status") or {}
    cond = conditions(mm)
    ready = cond.get("Ready", {})
    rnd = st.get("round") or {}
    title = style.bold(f"MailMigration {meta.get('name')}")
    lines = [f"{title}  phase {style.phase(str(st.get('phase', '-')))}  {ready_text(ready)}"]
    scan = st.get("scan") or {}
    validated = cond.get("Validated", {}).get("status") == "True"
    lines.append(
        f"  Validate   {bar(scan.get('reachable', 0) if validated else 0, scan.get('mailboxes') or 1, style)}"
        f"  {scan.get('mailboxes', 0)} mailboxes, {scan.get('folders', 0)} folders, "
        f"{scan.get('messages', 0)} messages"
    )
    totals = st.get("totals") or {}
    expected = int(totals.get("expectedMessages", 0))
    copied = int(totals.get("copiedMessages", 0)) + int(totals.get("skippedMessages", 0))
    bulk_done = cond.get("BulkCopied", {}).get("status") == "True"
    lines.append(
        f"  Bulk copy  {bar(expected if bulk_done else copied, expected or 1, style)}  "
        f"{copied}/{expected} messages, "
        f"{human_bytes(totals.get('copiedBytes', 0))} of {human_bytes(totals.get('expectedBytes', 0))}"
        + (f", {totals['failedMessages']} failed" if totals.get("failedMessages") else "")
    )
    counts = st.get("mailboxes") or {}
    lag = st.get("lag") or {}
    lines.append(
        f"  In sync    {bar(counts.get('synced', 0), counts.get('total') or 1, style)}  "
        f"{counts.get('synced', 0)}/{counts.get('total', 0)} mailboxes; round {rnd.get('number', 0)} "
        f"({rnd.get('kind', '-')}); lag {human_seconds(lag.get('maxSeconds', 0))}, "
        f"{lag.get('pendingMessages', 0)} pending"
    )
    completed = st.get("phase") == "Completed"
    final = rnd.get("kind") == "final"
    lines.append(
        f"  Complete   {bar(1 if completed else (0.5 if final else 0), 1, style)}  "
        + ("done" if completed else "final round running" if final else "waiting for spec.complete")
    )
    jobs = st.get("jobs") or {}
    eta = eta_text(st)
    lines.append(
        f"  Jobs       active {jobs.get('active', 0)}, succeeded {jobs.get('succeeded', 0)}, "
        f"failed {jobs.get('failed', 0)}; mailboxes failed {counts.get('failed', 0)}"
        + (f"; ETA {eta}" if eta else "")
    )
    lines += [f"  {style.warn('next:')} {hint}" for hint in migration_hints(mm)]
    if mailboxes and syncs:
        lines.append("")
        lines += mailbox_table(syncs, style)
    return lines


def migration_hints(mm: Obj) -> list[str]:
    """What the migration waits for that a person can give, as the plugin command that gives it."""
    name = (mm.get("metadata") or {}).get("name")
    spec, st = mm.get("spec") or {}, mm.get("status") or {}
    cond = conditions(mm)
    hints = []
    approval = spec.get("approval") or {}
    if approval.get("required") and not approval.get("approved"):
        hints.append(f"review the scan and approve: kubectl mailferry approve migration {name}")
    if spec.get("suspend"):
        hints.append(f"suspended: kubectl mailferry resume {name}")
    failed = (st.get("mailboxes") or {}).get("failed", 0)
    if failed or cond.get("Validated", {}).get("status") == "False":
        hints.append(f"after fixing the cause: kubectl mailferry retry {name}")
    return hints


def mailbox_table(syncs: Sequence[Obj], style: Style) -> list[str]:
    lines = [
        style.bold(f"  {'mailbox':<30}{'phase':<11}{'copied':>8}{'msgs':>7}{'round':>6}{'lag':>7}  note")
    ]
    for s in sorted(syncs, key=lambda x: str(x["spec"]["source"]["username"])):
        st = s.get("status") or {}
        t = st.get("totals") or {}
        phase = str(st.get("phase") or "Pending")
        lag = (st.get("lag") or {}).get("seconds", "")
        note = (st.get("lastError") or {}).get("reason", "")
        lines.append(
            f"  {s['spec']['source']['username']:<30}{style.phase(phase)}{' ' * max(1, 11 - len(phase))}"
            f"{t.get('copied', 0):>8}{t.get('messages', 0):>7}{st.get('round', 0):>6}{lag!s:>7}  {note}"
        )
    return lines


def cutover_lines(dc: Obj, style: Style = Style()) -> list[str]:
    """A DnsCutover: the phase ladder, the gates in front of the next phase, the planned changes."""
    meta, spec, st = dc.get("metadata") or {}, dc.get("spec") or {}, dc.get("status") or {}
    phase = str(st.get("phase") or "Planned")
    target = str(spec.get("targetPhase") or "Planned")
    cond = conditions(dc)
    ready = cond.get("Ready", {})
    title = style.bold(f"DnsCutover {meta.get('name')}")
    lines = [
        f"{title}  {spec.get('domain')}  phase {style.phase(phase)} → target {target}  {ready_text(ready)}"
    ]
    here = DNS_PHASES.index(phase)
    ladder = []
    for i, p in enumerate(DNS_PHASES):
        mark = "✓" if i < here else ("●" if i == here else ("→" if i <= DNS_PHASES.index(target) else "·"))
        ladder.append(f"{mark} {p}")
    lines.append(f"  Phases     {bar(here, len(DNS_PHASES) - 1, style, width=12)}  " + "  ".join(ladder))
    for gate in st.get("gates") or []:
        result = str(gate.get("result", "Pending"))
        shown = (
            style.good(result) if result == "Passed" else style.bad(result) if result == "Failed" else result
        )
        lines.append(
            f"  gate       {gate.get('phase')}/{gate.get('name')} ({gate.get('type')}): {shown}"
            + (f" — {gate['message']}" if gate.get("message") else "")
        )
    plan = st.get("plan") or {}
    if plan.get("changes"):
        lines.append(
            f"  plan       {plan.get('fromPhase')} → {plan.get('toPhase')}: {len(plan['changes'])} change(s)"
        )
        lines += [f"    {line}" for line in change_lines(plan["changes"])]
    if any(g.get("type") == "manualApproval" and g.get("result") != "Passed" for g in st.get("gates") or []):
        lines.append(f"  {style.warn('next:')} kubectl mailferry approve cutover {meta.get('name')}")
    return lines


def change_lines(changes: Sequence[Mapping[str, Any]]) -> list[str]:
    """`replace MX example.com.: 10 old.example. → 10 new.example.`, one per record change."""
    out = []
    for c in changes:
        before = ", ".join((c.get("before") or {}).get("records") or []) or "(none)"
        after = ", ".join((c.get("after") or {}).get("records") or []) or "(none)"
        out.append(f"{c.get('action')} {c.get('type')} {c.get('name')}: {before} → {after}")
    return out
