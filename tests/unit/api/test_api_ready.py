"""Ready is derived from Stalled / Reconciling / the resource's own conditions by one helper."""

from __future__ import annotations

from mailferry_api.common import Condition
from mailferry_api.conditions import get_condition, set_condition, with_ready


def _ready(conditions: list[Condition], required: tuple[str, ...] = ("Validated", "InSync")) -> Condition:
    found = get_condition(with_ready(conditions, required, "InSync", "all copied"), "Ready")
    assert found is not None
    return found


def test_stalled_wins_over_everything() -> None:
    c = set_condition([], "Stalled", "True", "AuthenticationFailed", "source login refused")
    c = set_condition(c, "Reconciling", "True", "Progressing", "copying")
    c = set_condition(c, "Validated", "True", "Valid")
    r = _ready(c)
    assert (r.status, r.reason, r.message) == ("False", "AuthenticationFailed", "source login refused")


def test_reconciling_is_unknown() -> None:
    c = set_condition([], "Reconciling", "True", "Progressing", "copying 3 of 10")
    c = set_condition(c, "Stalled", "False", "NotStalled")
    r = _ready(c)
    assert (r.status, r.reason) == ("Unknown", "Progressing")


def test_first_required_not_true_decides() -> None:
    c = set_condition([], "Validated", "True", "Valid")
    c = set_condition(c, "InSync", "False", "Lagging", "3 messages behind")
    r = _ready(c)
    assert (r.status, r.reason, r.message) == ("False", "Lagging", "3 messages behind")
    missing = _ready(set_condition([], "Validated", "True", "Valid"))
    assert (missing.status, missing.reason) == ("Unknown", "InSyncUnknown")


def test_all_required_true_is_ready() -> None:
    c = set_condition([], "Validated", "True", "Valid")
    c = set_condition(c, "InSync", "True", "InSync")
    r = _ready(c)
    assert (r.status, r.reason, r.message) == ("True", "InSync", "all copied")
