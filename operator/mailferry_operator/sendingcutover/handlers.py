"""Kopf wiring for SendingCutover: on change and on a timer, observe → decide → transition → apply.

One reconcile at a time per object (a lock), bounded in time. Spec problems the schema cannot catch
(a ramp that does not rise, a missing key Secret, an application Secret someone else holds) become
Stalled with a reason and an Event; the ramp's safety decisions (step back, hard stop, roll back) are
still made and recorded when the Secret cannot be written, and the Secret follows once it can.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.conditions import now
from mailferry_api.problems import ProblemError
from mailferry_api.sendingcutover import SendingCutoverSpec, SendingCutoverStatus

from .. import metrics, settings
from ..kube import client as kube
from . import apply, observe
from .contract import app_secret_data
from .decide import Observation, Outcome, State, decide, ramp_problem
from .transition import Transition, next_status

log = logging.getLogger("mailferry.sendingcutover")
PLURAL = "sendingcutovers"
INTERVAL = settings.current().sending_interval
RECONCILE_TIMEOUT = 120.0
K8S_TIMEOUT = 30
_locks: dict[str, asyncio.Lock] = {}


def _metrics(namespace: str, name: str, spec: SendingCutoverSpec, t: Transition) -> None:
    labels = (namespace, name, spec.domain, spec.stream)
    status = t.status
    metrics.sendingcutover_weight.labels(*labels).set(status.weight)
    metrics.sendingcutover_step.labels(*labels).set(status.step)
    metrics.sendingcutover_hard_stopped.labels(*labels).set(1 if status.hard_stopped_ack is not None else 0)
    m = status.last_measurement
    for kind, value in (("bounce", m and m.bounce_rate), ("complaint", m and m.complaint_rate)):
        metrics.sendingcutover_rate.labels(*labels, kind).set(value or 0.0)
    w = spec.warmup
    for kind, value in (
        ("bounce_max", w.bounce_rate_max),
        ("bounce_hard_stop", w.bounce_rate_hard_stop),
        ("complaint_max", w.complaint_rate_max),
        ("complaint_hard_stop", w.complaint_rate_hard_stop),
    ):
        metrics.sendingcutover_threshold.labels(*labels, kind).set(value)
    for _type, decision, _message in t.events:
        if decision in ("Advance", "StepBack", "HardStop", "RollBack"):
            metrics.sendingcutover_decisions.labels(*labels, decision).inc()


async def reconcile(namespace: str, name: str, body: Any) -> None:
    spec = SendingCutoverSpec.model_validate(dict(body.get("spec") or {}))
    status = SendingCutoverStatus.model_validate(dict(body.get("status") or {}))
    generation = (body.get("metadata") or {}).get("generation")
    at = now()
    problem = ramp_problem(spec)
    keys: observe.Keys | None = None
    conflict: apply.SecretConflict | None = None
    if problem is not None:
        obs, checked = Observation(None, metrics_error=problem), status.records
        outcome = Outcome("Hold", status.step, "SpecInvalid", problem)
        t = next_status(name, spec, status, outcome, obs, checked, at, generation, ("SpecInvalid", problem))
    else:
        obs, checked = await observe.observe(namespace, spec)
        if status.step > 0 and status.baseline is None and obs.counts is not None:
            status.baseline = obs.counts  # the step began while Prometheus was away: count from now
        state = State(status.step, status.step_started_at, status.baseline, status.hard_stopped_ack)
        outcome = decide(spec, state, obs, at)
        keys = await observe.provider_keys(namespace, spec)
        conflict = await apply.app_secret_conflict(namespace, name, spec.app_secret_name)
        blocker = None
        if conflict is not None:
            blocker = (conflict.reason, conflict.message)
        elif keys.problem:
            blocker = ("KeySecretMissing", keys.problem)
        if blocker is not None and outcome.decision == "Advance":
            # no step forward the application's Secret cannot follow (safety moves still go to status)
            outcome = Outcome("Hold", status.step, blocker[0], blocker[1], outcome.rates)
        t = next_status(name, spec, status, outcome, obs, checked, at, generation, blocker)
    await apply.write_status(namespace, name, t.status)
    if conflict is None and keys is not None and keys.new is not None and keys.old is not None:
        data = app_secret_data(name, spec, t.status, keys.new, keys.old)
        try:
            if await apply.write_app_secret(namespace, name, spec.app_secret_name, data):
                t.status.app_secret_revision += 1
                await apply.write_status(namespace, name, t.status)
        except apply.SecretConflict as exc:
            late = next_status(
                name,
                spec,
                t.status,
                Outcome("Hold", t.status.step, outcome.reason, outcome.message),
                obs,
                checked,
                at,
                generation,
                (exc.reason, exc.message),
            )
            t.events += late.events
            t.status = late.status
            await apply.write_status(namespace, name, t.status)
    _metrics(namespace, name, spec, t)
    for type_, reason, message in t.events:
        kopf.event(body, type=type_, reason=reason, message=message[:1000])
    if outcome.moves:
        log.info("%s/%s: %s to %d %%: %s", namespace, name, outcome.decision, t.status.weight, outcome.reason)


async def _locked(namespace: str, name: str, uid: str, body: Any) -> None:
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # deleting a SendingCutover leaves the application's Secret as it is
    async with _locks.setdefault(uid, asyncio.Lock()):
        try:
            # Kopf's body can predate this process's own last status write (a timer and a spec change
            # back to back): decide from the object as it is now, or a step would be taken twice
            fresh = await kube.get_or_none(
                f"/apis/mailferry.io/v1alpha1/namespaces/{namespace}/sendingcutovers/{name}", K8S_TIMEOUT
            )
            if fresh is None or (fresh.get("metadata") or {}).get("uid") != uid:
                return
            await asyncio.wait_for(reconcile(namespace, name, fresh), timeout=RECONCILE_TIMEOUT)
        except TimeoutError as exc:
            metrics.reconcile_errors.labels("timeout").inc()
            raise kopf.TemporaryError(f"reconcile took over {RECONCILE_TIMEOUT:.0f}s", delay=5) from exc
        except (kube.KubeError, OSError, ProblemError) as exc:
            metrics.reconcile_errors.labels("sendingcutover").inc()
            raise kopf.TemporaryError(f"reconcile failed: {type(exc).__name__}", delay=5) from exc


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
async def sendingcutover_changed(namespace: str | None, name: str, uid: str, body: Any, **_: Any) -> None:
    await _locked(namespace or "default", name, uid, body)


@kopf.timer(API_GROUP, API_VERSION, PLURAL, interval=INTERVAL, initial_delay=min(INTERVAL, 5.0))
async def sendingcutover_tick(namespace: str | None, name: str, uid: str, body: Any, **_: Any) -> None:
    await _locked(namespace or "default", name, uid, body)
