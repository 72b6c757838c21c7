"""The inventory review (pure): when the operator runs discovery again, and whether the inventory
ConfigMap's content is the one a person approved (spec.inventoryRef.approvedHash).

Nothing is validated or copied while the hash differs: the first discovery, a re-discovery that found
something else, and an edit of the ConfigMap all need a new approval. Discovery runs when the ConfigMap
is missing or was written for another discover block or another `mailferry.io/rediscover` value; a failed
run is tried again after RETRY_SECONDS (or at once when either changes), never in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailferry_api.discover.review import ANNOTATION_REDISCOVER, content_hash
from mailferry_api.mailmigration import InventoryRef
from mailferry_api.problems import Problem

CONDITION = "InventoryReviewed"
RETRY_SECONDS = 300.0
AWAITING = "AwaitingReview"
DISCOVERING = "AwaitingDiscovery"

Wanted = tuple[str, str]  # (discover spec hash, rediscover annotation value)


@dataclass(frozen=True)
class ConfigMapView:
    """What the review needs of the inventory ConfigMap (absent: exists False)."""

    exists: bool
    owned: bool = False  # an ownerReference to this MailMigration
    spec_hash: str = ""  # the discover block it was written for (annotation)
    rediscover: str = ""  # the rediscover value it was written for (annotation)
    content_hash: str = ""


@dataclass(frozen=True)
class LastRun:
    wanted: Wanted
    failed_at: float | None = None  # monotonic; None: it succeeded
    problem: Problem | None = None


def discovery_due(wanted: Wanted, cm: ConfigMapView, running: bool, last: LastRun | None, now: float) -> bool:
    """Run discovery now? Not while one runs, never over a ConfigMap someone else owns, not again for
    what just failed until RETRY_SECONDS passed."""
    if running or (cm.exists and not cm.owned):
        return False
    if cm.exists and (cm.spec_hash, cm.rediscover) == wanted:
        return False
    return not (
        last is not None
        and last.wanted == wanted
        and last.failed_at is not None
        and now < last.failed_at + RETRY_SECONDS
    )


def approve_hint(namespace: str, name: str, content_hash: str) -> str:
    patch = f'{{"spec":{{"inventoryRef":{{"approvedHash":"{content_hash}"}}}}}}'
    return (
        f"`kubectl mailferry approve inventory {name} -n {namespace}`, or "
        f"`kubectl patch mailmigration {name} -n {namespace} --type merge -p '{patch}'`"
    )


def review_problem(
    ref: InventoryRef,
    cm: ConfigMapView,
    namespace: str,
    name: str,
    discovery_problem: Problem | None = None,
    running: bool = False,
) -> Problem | None:
    """None when the inventory may be used; else why not (the InventoryReviewed condition's reason and
    message). Only for a ref with `discover` or `approvedHash`: a hand-written unreviewed inventory is
    used as it is."""
    if ref.discover is None and ref.approved_hash is None:
        return None
    where = f"ConfigMap {ref.name}"
    if discovery_problem is not None:
        return Problem(
            discovery_problem.reason,
            f"inventory discovery failed: {discovery_problem.message}; tried again in "
            f"{RETRY_SECONDS / 60:.0f} min, or at once when spec.inventoryRef.discover changes or the "
            f"{ANNOTATION_REDISCOVER} annotation gets a new value",
        )
    if ref.discover is not None and cm.exists and not cm.owned:
        return Problem(
            "InventoryConfigMapTaken",
            f"{where} (spec.inventoryRef.name) exists and is not owned by this MailMigration: discovery "
            "writes only a ConfigMap it owns; delete it or name another one",
        )
    if not cm.exists:
        if ref.discover is not None:
            state = "running" if running else "not run yet"
            return Problem(
                DISCOVERING, f"inventory discovery {state}: {where} is written first, then reviewed"
            )
        return None  # the inventory loader says InventoryNotFound
    if cm.content_hash == ref.approved_hash:
        return None
    changed = " (its content changed since the approved hash)" if ref.approved_hash else ""
    return Problem(
        AWAITING,
        f"review {where}{changed} (`kubectl get configmap {ref.name} -n {namespace} -o yaml`: the mailboxes "
        f"to copy, and recreate.json: aliases and groups to create before the MX swap), then approve "
        f"{cm.content_hash}: {approve_hint(namespace, name, cm.content_hash)}",
    )


def content_refused(ref: InventoryRef, data: dict[str, str], binary: dict[str, str]) -> Problem | None:
    """The inventory loader's own check, on the very text it parses: the ConfigMap it read is not the
    approved one (an edit between the review's read and the loader's)."""
    if ref.discover is None and ref.approved_hash is None:
        return None
    if content_hash({"data": data, "binaryData": binary}) == ref.approved_hash:
        return None
    return Problem(AWAITING, f"ConfigMap {ref.name} is not the approved content: review and approve it")
