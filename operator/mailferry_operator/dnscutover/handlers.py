"""Kopf wiring for DnsCutover: every event (create/update/resume) and a timer (MAILFERRY_DNS_GATE_INTERVAL
seconds) run the same reconcile, serialized per object: observe -> decide.step -> apply, one step at a
time until a step says stop, then the conditions, metrics, status and Events.

Registered on import (main.py imports this module; `kopf run -m mailferry_operator.dnscutover.handlers`
runs DnsCutover alone). Deleting a DnsCutover never changes DNS.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from pydantic import ValidationError

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.conditions import now, set_condition
from mailferry_api.dnscutover import DnsCutoverSpec, DnsCutoverStatus
from mailferry_api.problems import ProblemError

from .. import logctx, metrics, settings
from ..kube import client as kube
from . import apply, draft, frame, observe
from .decide import step
from .observe import dnscutovers_by_domain  # noqa: F401 - importing registers the index

log = logging.getLogger("mailferry.dnscutover")

PLURAL = "dnscutovers"

GATE_INTERVAL = settings.current().dns_gate_interval
RECONCILE_TIMEOUT = settings.current().dns_reconcile_timeout
MAX_STEPS = 12

_locks: dict[str, asyncio.Lock] = {}


async def reconcile(namespace: str, name: str, body: Any) -> None:
    obj = await observe.read_object(namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return  # deleting a DnsCutover never changes DNS
    meta = obj["metadata"]
    generation = int(meta.get("generation") or 0)
    try:
        status = DnsCutoverStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = DnsCutoverStatus()
    try:
        spec = DnsCutoverSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        stalled = set_condition(
            status.conditions, "Stalled", "True", "InvalidSpec", str(exc)[:1000], generation
        )
        conditions = [c.to_api() for c in stalled]
        await apply.patch_status_raw(
            namespace, name, {"observedGeneration": generation, "conditions": conditions}
        )
        return
    status = frame.begin(status, generation)
    annotations = dict(meta.get("annotations") or {})
    events: list[draft.Event] = []
    problem = False
    try:
        await observe.check_domain_owner(namespace, name, meta, spec.domain)
        frame.validate(spec)
        live = observe.Live(namespace, name, meta["uid"], await observe.provider(namespace, spec))
        try:
            await live.provider.check_zone()
            for _ in range(MAX_STEPS):
                snap = await observe.observe(live, spec, status, generation, annotations)
                decision = step(snap)
                events += decision.events

                def stored(st: DnsCutoverStatus) -> None:
                    # A write that fails after this ends the reconcile from what the API server holds: the
                    # status from before the step would undo a phase already saved (and the next retry
                    # would take the step, its snapshot and its Event again).
                    nonlocal status
                    status = st

                events += await apply.run(live, spec, decision, stored)
                status = decision.status
                if not decision.again:
                    break
        finally:
            await live.provider.aclose()
        status = frame.settled(status, generation)
    except ProblemError as exc:  # spec problems and provider errors
        problem = True
        message = exc.message + (" (retried)" if exc.transient else "")
        log.warning("%s/%s: %s: %s", namespace, name, exc.reason, message)
        status, found = frame.problem(status, exc.reason, message, generation, now())
        events += found
    except kube.KubeError as exc:
        problem = True
        metrics.reconcile_errors.labels("kubernetes").inc()
        answer = f"HTTP {exc.status} {exc.reason}" if exc.status else f"unreachable ({exc.reason})"
        log.warning("%s/%s: KubernetesApiError: %s", namespace, name, answer)
        status, found = frame.problem(
            status, "KubernetesApiError", f"Kubernetes API: {answer}", generation, now()
        )
        events += found
    status = frame.finish(status, spec, generation, problem)
    apply.status_metrics(namespace, name, spec, status)
    await apply.save_status(namespace, name, status)
    apply.emit(body, events)


async def _locked(namespace: str, name: str, uid: str, body: Any) -> None:
    logctx.bind(namespace, "DnsCutover", name)
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # being deleted: nothing to do (deleting a DnsCutover never changes DNS)
    lock = _locks.setdefault(uid, asyncio.Lock())
    async with lock:
        try:
            # bounded, so a stuck call can never keep Kopf from releasing the object (e.g. on deletion)
            await asyncio.wait_for(reconcile(namespace, name, body), timeout=RECONCILE_TIMEOUT)
        except TimeoutError as exc:
            metrics.reconcile_errors.labels("timeout").inc()
            raise kopf.TemporaryError(f"reconcile took over {RECONCILE_TIMEOUT:.0f}s", delay=5) from exc
        except (kube.KubeError, OSError) as exc:
            metrics.reconcile_errors.labels("dnscutover").inc()
            raise kopf.TemporaryError(f"reconcile failed: {type(exc).__name__}", delay=5) from exc


@kopf.on.startup()
def dnscutover_settings(settings: kopf.OperatorSettings, **_: Any) -> None:
    # A DnsCutover being deleted waits for its gate timer to stop; Kopf re-checks a timer that was
    # running at that moment only every `cancellation_polling` seconds (default 60).
    settings.background.cancellation_polling = min(settings.background.cancellation_polling, 5.0)


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL)
async def dnscutover_changed(namespace: str | None, name: str, uid: str, body: Any, **kwargs: Any) -> None:
    observe.remember_index(kwargs)
    await _locked(namespace or "default", name, uid, body)


@kopf.timer(API_GROUP, API_VERSION, PLURAL, interval=GATE_INTERVAL, initial_delay=min(GATE_INTERVAL, 5.0))
async def dnscutover_gates(namespace: str | None, name: str, uid: str, body: Any, **kwargs: Any) -> None:
    observe.remember_index(kwargs)
    await _locked(namespace or "default", name, uid, body)
