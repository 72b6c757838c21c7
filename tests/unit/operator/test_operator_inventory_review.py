"""The inventory review as tables (review.py, pure): the content hash, when discovery runs again, and
whether the inventory may be used (spec.inventoryRef.approvedHash against the ConfigMap's content)."""

from __future__ import annotations

import pytest

from mailferry_api.discover.review import content_hash, spec_hash
from mailferry_api.mailmigration import InventoryRef
from mailferry_api.problems import Problem
from mailferry_operator.mailmigration import review
from mailferry_operator.mailmigration.review import ConfigMapView, LastRun

CM = {"data": {"mailboxes": "source,destination\nann@old.example,ann@new.example\n", "recreate.json": "{}"}}
H = content_hash(CM)
WANTED = ("spec1", "")
DISCOVER = {"provider": "google", "secretRef": {"name": "dir"}, "admin": "admin@old.example"}


def _ref(approved: str | None = None, discover: bool = True) -> InventoryRef:
    return InventoryRef.model_validate(
        {"name": "inv", **({"discover": DISCOVER} if discover else {}), "approvedHash": approved}
    )


def test_content_hash_covers_every_key_not_metadata() -> None:
    assert H.startswith("sha256:") and len(H) == 71
    assert content_hash({**CM, "metadata": {"annotations": {"x": "y"}}}) == H  # annotations don't count
    edited = {"data": {**CM["data"], "mailboxes": CM["data"]["mailboxes"] + "bob@old.example\n"}}
    assert content_hash(edited) != H
    assert content_hash({"data": {**CM["data"], "recreate.json": "[]"}}) != H  # the report counts too
    assert content_hash({"data": dict(reversed(list(CM["data"].items())))}) == H  # key order doesn't
    assert spec_hash({"a": 1, "b": 2}) == spec_hash({"b": 2, "a": 1}) != spec_hash({"a": 1, "b": 3})


OWNED = ConfigMapView(True, True, "spec1", "", H)


@pytest.mark.parametrize(
    ("cm", "running", "last", "now", "due"),
    [
        (ConfigMapView(False), False, None, 0.0, True),  # first run
        (ConfigMapView(False), True, None, 0.0, False),  # one at a time
        (OWNED, False, None, 0.0, False),  # written for this spec: not again (no hot loop)
        (ConfigMapView(True, True, "spec0", "", H), False, None, 0.0, True),  # the discover block changed
        (ConfigMapView(True, True, "spec1", "r1", H), False, None, 0.0, True),  # rediscover annotation
        (ConfigMapView(True, False, "", "", H), False, None, 0.0, False),  # someone else's: never written
        (ConfigMapView(False), False, LastRun(WANTED, 100.0, Problem("Forbidden", "x")), 200.0, False),
        (ConfigMapView(False), False, LastRun(WANTED, 100.0, Problem("Forbidden", "x")), 401.0, True),
        (ConfigMapView(False), False, LastRun(("spec0", ""), 100.0, Problem("F", "x")), 101.0, True),
    ],
)
def test_discovery_due(cm: ConfigMapView, running: bool, last: LastRun | None, now: float, due: bool) -> None:
    assert review.discovery_due(WANTED, cm, running, last, now) is due


def test_nothing_is_used_before_the_approval_and_an_edit_needs_a_new_one() -> None:
    waiting = review.review_problem(_ref(), OWNED, "mail", "acme")
    assert waiting is not None and waiting.reason == "AwaitingReview"
    assert H in waiting.message and "kubectl mailferry approve inventory acme -n mail" in waiting.message
    assert f'"approvedHash":"{H}"' in waiting.message  # the documented kubectl patch
    assert review.review_problem(_ref(H), OWNED, "mail", "acme") is None
    edited = ConfigMapView(True, True, "spec1", "", "sha256:" + "0" * 64)
    again = review.review_problem(_ref(H), edited, "mail", "acme")
    assert again is not None and again.reason == "AwaitingReview" and "changed" in again.message
    # a hand-written ConfigMap with an approvedHash is held to it as well
    assert review.review_problem(_ref(H, discover=False), edited, "mail", "acme") is not None
    assert review.review_problem(_ref(None, discover=False), edited, "mail", "acme") is None  # no review


def test_discovery_states_and_failures() -> None:
    pending = review.review_problem(_ref(), ConfigMapView(False), "mail", "acme", running=True)
    assert pending is not None and pending.reason == "AwaitingDiscovery" and "running" in pending.message
    taken = review.review_problem(_ref(), ConfigMapView(True, False, "", "", H), "mail", "acme")
    assert taken is not None and taken.reason == "InventoryConfigMapTaken"
    failed = review.review_problem(_ref(H), OWNED, "mail", "acme", Problem("Forbidden", "HTTP 403 (scope)"))
    assert failed is not None and failed.reason == "Forbidden"
    assert "tried again in 5 min" in failed.message and "mailferry.io/rediscover" in failed.message


def test_the_loader_reads_only_the_approved_content() -> None:
    assert review.content_refused(_ref(H), CM["data"], {}) is None
    refused = review.content_refused(_ref(H), {**CM["data"], "mailboxes": "x@y.z\n"}, {})
    assert refused is not None and refused.reason == "AwaitingReview"
    assert review.content_refused(_ref(None, discover=False), {"mailboxes": "x"}, {}) is None


def test_kubectl_plugin_approves_the_content_it_showed() -> None:
    from mailferry_kubectl import actions

    mm = {"metadata": {"name": "acme"}, "spec": {"inventoryRef": {"name": "inv"}}}
    cm = {"metadata": {"name": "inv"}, **CM}
    change = actions.approve_inventory(mm, cm)
    assert change.patch == {"spec": {"inventoryRef": {"approvedHash": H}}}
    assert f'"approvedHash":"{H}"' in change.kubectl("mail")  # the same as the documented kubectl patch
    shown = actions.inventory_review(cm, "mailboxes")
    assert "  ann@old.example,ann@new.example" in shown
    approved = {**mm, "spec": {"inventoryRef": {"name": "inv", "approvedHash": H}}}
    with pytest.raises(actions.Refusal, match="approved already"):
        actions.approve_inventory(approved, cm)
