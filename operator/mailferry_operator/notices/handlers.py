"""Kopf wiring for NoticePlans: one timer per plan (Kopf never runs two of an object's timer at once)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from typing import Any

import kopf
from pydantic import ValidationError

from mailferry_api.common import API_GROUP, API_VERSION
from mailferry_api.conditions import set_condition, with_ready
from mailferry_api.noticeplan import NoticePlanStatus
from mailferry_kube.client import KubeError

from .. import settings
from .apply import Books, merged_books, send, settle_in_doubt, write_status
from .decide import decide
from .observe import observe
from .replies import read as read_replies


def _event(body: kopf.Body, type_: str, reason: str, message: str) -> None:
    with contextlib.suppress(Exception):
        kopf.event(body, type=type_, reason=reason, message=message[:1024])


@kopf.timer(API_GROUP, API_VERSION, "noticeplans", interval=settings.current().notice_interval)
async def notice_plan_timer(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    ns = namespace or ""
    generation = int(body.get("metadata", {}).get("generation") or 0)
    try:
        obs = await observe(ns, name, uid, generation, body.get("spec") or {}, body.get("status") or {})
    except ValidationError as exc:
        logger.error("invalid NoticePlan spec: %s", exc.errors(include_input=False)[:3])
        status = NoticePlanStatus.model_validate(dict(body.get("status") or {}))
        status.conditions = set_condition(
            status.conditions, "Stalled", "True", "InvalidSpec", "spec is invalid", generation
        )
        status.conditions = with_ready(status.conditions, [], generation=generation)
        await write_status(ns, name, status)
        return
    except KubeError as exc:  # API server busy or restarting: the next tick tries again (not Kopf's 60 s)
        logger.warning("NoticePlan run skipped: %s", exc)
        return
    books = Books(ns, name, uid, merged_books(obs.snapshot.ledgers), dict(obs.ledger_versions))
    try:
        await settle_in_doubt(obs, books)
        # only with the ledgers observed: a plan stalled before reading them would match nothing and move
        # the checkpoint past bounces and replies it never counted
        replies = None if obs.snapshot.problem else await read_replies(obs, books)
        snap = replace(obs.snapshot, ledgers=books.books, replies=replies)
        problem = None if snap.problem else await send(obs, books, decide(snap).sends)
    except KubeError as exc:
        # 409: another writer changed the ledger (a second operator?): stop; the intents written so far
        # are settled by the next run. Anything else: the same, after the API server answers again.
        logger.warning("NoticePlan run stopped: %s", exc)
        return
    final = decide(replace(snap, ledgers=books.books, delivery_problem=problem))
    await write_status(ns, name, final.status)
    for event in final.events:
        _event(body, event.type, event.reason, event.message)
