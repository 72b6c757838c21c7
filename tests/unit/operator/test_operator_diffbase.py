"""Kopf's last-handled-configuration as the operator stores it (activities.CompactDiffBaseStorage)."""

from __future__ import annotations

from typing import Any

import kopf

from mailferry_operator.activities import CompactDiffBaseStorage

STORAGE = CompactDiffBaseStorage(prefix="mailferry.io", key="last-handled-configuration")


def body(api_version: str, kind: str, annotations: dict[str, str]) -> kopf.Body:
    raw: Any = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "annotations": annotations},
    }
    return kopf.Body({**raw, "spec": {"a": 1}})


def test_only_our_short_annotations_are_kept() -> None:
    big = "x" * 2000
    found = body("mailferry.io/v1alpha1", "MailMigration", {"mailferry.io/approved": "true", "a/b": "c"})
    assert STORAGE.build(body=found) == {
        "spec": {"a": 1},
        "metadata": {"annotations": {"mailferry.io/approved": "true"}},
    }
    assert "metadata" not in STORAGE.build(
        body=body("mailferry.io/v1alpha1", "DnsCutover", {"mailferry.io/n": big})
    )


def test_kinds_the_operator_only_indexes_get_no_essence() -> None:
    # no change handler reads their diff: no deep copy per watch event (10,000 at a migration's start)
    assert (
        STORAGE.build(body=body("mailferry.io/v1alpha1", "MailboxSync", {"mailferry.io/spec-hash": "h"}))
        is None
    )
    assert STORAGE.build(body=body("batch/v1", "Job", {})) is None
