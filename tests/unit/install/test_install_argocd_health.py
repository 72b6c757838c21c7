"""Argo CD health checks (deploy/argocd/argocd-cm-health.yaml) run in a real Lua interpreter (lupa).

The statuses are written as the operator and worker write them: each object is validated by the
mailferry_api models and rendered with `.to_api()` (camelCase, the wire form), so a renamed
status field or a new phase breaks this test instead of silently breaking Argo CD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import lupa.lua51
import pytest
import yaml

from mailferry_api.dnscutover import DnsCutover, DnsPhase
from mailferry_api.mailboxsync import MailboxPhase, MailboxSync
from mailferry_api.mailmigration import MailMigration, MigrationPhase

ROOT = Path(__file__).resolve().parents[3]
ARGOCD_CM = ROOT / "deploy" / "argocd" / "argocd-cm-health.yaml"
EXAMPLES = ROOT / "deploy" / "examples"
T0 = "2026-11-25T12:00:00Z"


def health_scripts() -> dict[str, str]:
    data = yaml.safe_load(ARGOCD_CM.read_text())["data"]
    prefix = "resource.customizations.health."
    return {k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix)}


def to_lua(lua: lupa.lua51.LuaRuntime, value: Any) -> Any:
    """JSON-like Python -> Lua tables, lists 1-indexed (as Argo CD's gopher-lua sees the object)."""
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def run_health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    # Lua 5.1, the language of Argo CD's interpreter (gopher-lua): a 5.2+ construct in a script fails here.
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)
    assert lua.lua_version == (5, 1)
    script = health_scripts()[f"mailferry.io_{kind}" if kind != "Application" else "argoproj.io_Application"]
    fn = lua.eval(
        "function(obj, script) local f = assert(loadstring(script, 'health')); "
        "setfenv(f, setmetatable({obj = obj}, {__index = _G})); return f() end"
    )
    hs = fn(to_lua(lua, obj), script)
    assert hs is not None, "the script returned nothing"
    status, message = hs["status"], hs["message"]
    assert status in {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
    return str(status), str(message or "")


def cond(type_: str, status: str = "True", reason: str = "Test", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": T0}


def example_spec(kind: str) -> dict[str, Any]:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                return dict(doc["spec"])
    pytest.fail(f"no {kind} in deploy/examples")


def recorded(kind: str, status: dict[str, Any], generation: int = 1, **spec: Any) -> dict[str, Any]:
    """An object as the API server returns it, its status validated by the models."""
    models: dict[str, type[MailMigration] | type[MailboxSync] | type[DnsCutover]] = {
        "MailMigration": MailMigration,
        "MailboxSync": MailboxSync,
        "DnsCutover": DnsCutover,
    }
    model = models[kind]
    merged_spec = {**example_spec(kind), **spec}
    validated = model.model_validate({"spec": merged_spec, "status": status})
    wire = validated.status.to_api()
    for key in status:  # everything we recorded survives validation (no typos in the fixtures)
        assert key in wire, f"{kind} status field {key!r} is not in the model"
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "example", "namespace": "mail", "generation": generation},
        "spec": validated.spec.to_api(),
        "status": wire,
    }


MM_TOTALS = {"expectedMessages": 1000, "copiedMessages": 400, "expectedBytes": 10, "copiedBytes": 4}

MIGRATION_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("Validating", {"phase": "Validating", "observedGeneration": 1}, "Progressing", "Validating"),
    (
        "AwaitingApproval",
        {
            "phase": "AwaitingApproval",
            "observedGeneration": 1,
            "conditions": [cond("Approved", "False", "ApprovalRequired")],
        },
        "Suspended",
        "approv",
    ),
    (
        "Syncing",
        {
            "phase": "Syncing",
            "observedGeneration": 1,
            "progress": "400/1000",
            "totals": MM_TOTALS,
            "conditions": [cond("Stalled", "False", "Progressing")],
        },
        "Progressing",
        "400/1000",
    ),
    (
        "InSync",
        {
            "phase": "InSync",
            "observedGeneration": 1,
            "lag": {"maxSeconds": 30, "pendingMessages": 0},
            "conditions": [cond("InSync"), cond("Ready")],
        },
        "Healthy",
        "InSync",
    ),
    ("Completing", {"phase": "Completing", "observedGeneration": 1}, "Progressing", "Completing"),
    ("Completed", {"phase": "Completed", "observedGeneration": 1, "completedAt": T0}, "Healthy", "Completed"),
    (
        "Failed",
        {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [cond("Ready", "False", "InventoryInvalid", "inventory ConfigMap missing")],
        },
        "Degraded",
        "inventory ConfigMap missing",
    ),
    ("Suspended", {"phase": "Suspended", "observedGeneration": 1}, "Suspended", "Suspended"),
]


def test_every_migration_phase_is_covered() -> None:
    assert {c[0] for c in MIGRATION_CASES} == set(get_args(MigrationPhase))


def test_mailmigration_stalled_and_unobserved() -> None:
    stalled = {
        "phase": "Syncing",
        "observedGeneration": 1,
        "conditions": [cond("Stalled", "True", "NoProgress", "3 mailboxes failing: ConnectionFailed")],
    }
    assert run_health("MailMigration", recorded("MailMigration", stalled)) == (
        "Degraded",
        "Stalled: 3 mailboxes failing: ConnectionFailed",
    )
    fresh = {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailMigration",
        "metadata": {"name": "x", "generation": 1},
        "spec": example_spec("MailMigration"),
    }
    assert run_health("MailMigration", fresh)[0] == "Progressing"
    # InSync, but the spec changed since: not Healthy until the operator observes it.
    behind = recorded("MailMigration", {"phase": "InSync", "observedGeneration": 1}, generation=2)
    assert run_health("MailMigration", behind)[0] == "Progressing"


MAILBOX_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("Pending", {"phase": "Pending"}, "Progressing", "Waiting"),
    ("Syncing", {"phase": "Syncing", "attempts": 1, "round": 0}, "Progressing", "Syncing"),
    (
        "Synced",
        {
            "phase": "Synced",
            "round": 3,
            "lastSyncTime": T0,
            "lag": {"seconds": 12, "pendingMessages": 0},
            "conditions": [cond("Synced"), cond("Ready")],
        },
        "Healthy",
        "Synced",
    ),
    (
        "Throttled",
        {
            "phase": "Throttled",
            "throttle": {"reason": "[THROTTLED] retry later", "count": 2},
            "conditions": [cond("Throttled")],
        },
        "Progressing",
        "[THROTTLED] retry later",
    ),
    (
        "Failed",
        {"phase": "Failed", "lastError": {"reason": "AuthenticationFailed", "message": "LOGIN rejected"}},
        "Degraded",
        "AuthenticationFailed LOGIN rejected",
    ),
]


HEALTH_CASES = [("MailMigration", *c) for c in MIGRATION_CASES] + [("MailboxSync", *c) for c in MAILBOX_CASES]


@pytest.mark.parametrize(
    ("kind", "phase", "status", "health", "text"), HEALTH_CASES, ids=[f"{c[0]}-{c[1]}" for c in HEALTH_CASES]
)
def test_health(kind: str, phase: str, status: dict[str, Any], health: str, text: str) -> None:
    """The recorded `kind` with `status` is `health`, and its message says `text`."""
    got, message = run_health(kind, recorded(kind, status))
    assert got == health, message
    assert text in message


def test_every_mailbox_phase_is_covered_and_stalled_is_degraded() -> None:
    assert {c[0] for c in MAILBOX_CASES} == set(get_args(MailboxPhase))
    stalled = recorded(
        "MailboxSync", {"phase": "Syncing", "conditions": [cond("Stalled", message="no progress")]}
    )
    assert run_health("MailboxSync", stalled) == ("Degraded", "Stalled: no progress")


DNS_PHASES = list(get_args(DnsPhase))


@pytest.mark.parametrize("phase", DNS_PHASES)
def test_dnscutover_at_target_is_healthy(phase: str) -> None:
    obj = recorded(
        "DnsCutover",
        {
            "phase": phase,
            "observedGeneration": 1,
            "phaseEnteredAt": T0,
            "conditions": [cond("Ready"), cond("GatesPassed")],
        },
        targetPhase=phase,
    )
    assert run_health("DnsCutover", obj) == ("Healthy", phase)


@pytest.mark.parametrize("phase", DNS_PHASES[:-1])
def test_dnscutover_below_target_is_progressing(phase: str) -> None:
    obj = recorded(
        "DnsCutover",
        {
            "phase": phase,
            "observedGeneration": 1,
            "gates": [{"phase": "Enforced", "name": "soak", "type": "minDuration", "result": "Pending"}],
        },
        targetPhase="Enforced",
    )
    assert run_health("DnsCutover", obj) == ("Progressing", f"{phase} -> Enforced")


def test_dnscutover_paused_stalled_rolled_back() -> None:
    paused = recorded(
        "DnsCutover",
        {
            "phase": "Staged",
            "observedGeneration": 1,
            "conditions": [cond("Paused", reason="GateInconclusive", message="prometheus gate: no data")],
            "gates": [
                {"phase": "Switched", "name": "bounce-rate", "type": "prometheus", "result": "Inconclusive"}
            ],
        },
        targetPhase="Switched",
    )
    assert run_health("DnsCutover", paused) == ("Suspended", "Paused in Staged: prometheus gate: no data")
    stalled = recorded(
        "DnsCutover",
        {
            "phase": "TTLLowered",
            "observedGeneration": 1,
            "conditions": [
                cond("Stalled", reason="GateFailed", message="syncLag: 4200s > 900s"),
                cond("Paused", "False", "NotPaused"),
            ],
            "gates": [{"phase": "Staged", "name": "in-sync", "type": "syncLag", "result": "Failed"}],
        },
        targetPhase="Switched",
    )
    assert run_health("DnsCutover", stalled) == ("Degraded", "Stalled in TTLLowered: syncLag: 4200s > 900s")
    rolled = recorded(
        "DnsCutover",
        {
            "phase": "Staged",
            "observedGeneration": 2,
            "conditions": [cond("RolledBack", reason="TargetLowered"), cond("Ready")],
            "history": [{"time": T0, "fromPhase": "Switched", "toPhase": "Staged", "reason": "RolledBack"}],
        },
        generation=2,
        targetPhase="Staged",
    )
    assert run_health("DnsCutover", rolled) == ("Healthy", "Staged (rolled back)")
    walking_back = recorded(
        "DnsCutover", {"phase": "Switched", "observedGeneration": 2}, generation=2, targetPhase="Staged"
    )
    assert run_health("DnsCutover", walking_back) == ("Progressing", "Switched -> Staged")
    unobserved = recorded(
        "DnsCutover", {"phase": "Staged", "observedGeneration": 1}, generation=2, targetPhase="Staged"
    )
    assert run_health("DnsCutover", unobserved)[0] == "Progressing"
    empty = {"kind": "DnsCutover", "metadata": {"generation": 1}, "spec": {"targetPhase": "Staged"}}
    assert run_health("DnsCutover", empty)[0] == "Progressing"


def test_application_health_passes_child_health_through() -> None:
    app = {
        "kind": "Application",
        "metadata": {},
        "status": {"health": {"status": "Degraded", "message": "x"}},
    }
    assert run_health("Application", app) == ("Degraded", "x")
    assert run_health("Application", {"kind": "Application", "metadata": {}})[0] == "Progressing"


def test_scripts_cover_every_kind() -> None:
    assert set(health_scripts()) == {
        "mailferry.io_MailMigration",
        "mailferry.io_MailboxSync",
        "mailferry.io_DnsCutover",
        "mailferry.io_NoticePlan",
        "mailferry.io_SendingCutover",
        "argoproj.io_Application",
    }


@pytest.mark.parametrize(
    ("status", "health", "text"),
    [
        (None, "Progressing", "render the drafts"),
        (
            {"phase": "AwaitingApproval", "pendingApprovals": 2, "observedGeneration": 1},
            "Suspended",
            "2 draft(",
        ),
        ({"phase": "Sending", "sent": 40, "observedGeneration": 1}, "Progressing", "40 sent"),
        ({"phase": "Scheduled", "observedGeneration": 1}, "Healthy", "Scheduled"),
        ({"phase": "Sent", "sent": 7, "bounced": 1, "observedGeneration": 1}, "Healthy", "7 sent, 1 bounced"),
        ({"phase": "Sent", "observedGeneration": 0}, "Progressing", "generation 1"),
        (
            dict(
                phase="Stalled", observedGeneration=1, conditions=[cond("Stalled", reason="HeaderInjection")]
            ),
            "Degraded",
            "HeaderInjection",
        ),
    ],
)
def test_noticeplan_health(status: dict[str, Any] | None, health: str, text: str) -> None:
    obj: dict[str, Any] = {"metadata": {"generation": 1}, "spec": {}}
    if status is not None:
        obj["status"] = status
    got, message = run_health("NoticePlan", obj)
    assert got == health and text in message, (got, message)


@pytest.mark.parametrize(
    ("spec", "status", "health", "text"),
    [
        ({}, None, "Progressing", "start the ramp"),
        (
            {},
            {
                "phase": "Ramping",
                "weight": 10,
                "observedGeneration": 1,
                "conditions": [cond("GatesPassed", "False", "TooFewEvents")],
            },
            "Progressing",
            "10 % toward 100 %",
        ),
        ({}, {"phase": "Complete", "weight": 100, "observedGeneration": 1}, "Healthy", "100 %"),
        (
            {"targetWeight": 0},
            {
                "phase": "RolledBack",
                "weight": 0,
                "observedGeneration": 1,
                "conditions": [cond("RolledBack", "True", "TargetLowered")],
            },
            "Healthy",
            "rolled back",
        ),
        (
            {},
            {
                "phase": "HardStopped",
                "weight": 0,
                "observedGeneration": 1,
                "conditions": [cond("Stalled", "True", "HardStop")],
            },
            "Degraded",
            "Stalled at 0 %",
        ),
        (
            {"paused": True},
            {"phase": "Holding", "weight": 25, "observedGeneration": 1},
            "Suspended",
            "Paused at 25",
        ),
        ({}, {"phase": "Complete", "weight": 100, "observedGeneration": 0}, "Progressing", "generation 1"),
    ],
)
def test_sendingcutover_health(
    spec: dict[str, Any], status: dict[str, Any] | None, health: str, text: str
) -> None:
    obj: dict[str, Any] = {"metadata": {"generation": 1}, "spec": spec}
    if status is not None:
        obj["status"] = status
    got, message = run_health("SendingCutover", obj)
    assert got == health and text in message, (got, message)
