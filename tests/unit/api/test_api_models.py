"""Model behaviour the operator and worker rely on (pure, no servers)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailferry_api.common import Condition
from mailferry_api.conditions import get_condition, is_true, set_condition
from mailferry_api.dnscutover import DnsCutoverSpec
from mailferry_api.imap import default_secret_key
from mailferry_api.mailmigration import MailMigrationSpec, MailMigrationStatus


def _endpoint(host: str) -> dict[str, object]:
    return {"host": host, "auth": {"secretRef": {"name": "creds"}}}


def test_default_secret_key() -> None:
    assert default_secret_key("alice@example.com") == "alice_example.com"
    assert default_secret_key("shared") == "shared"


def test_spec_defaults_and_camel_case() -> None:
    spec = MailMigrationSpec.model_validate(
        {
            "source": _endpoint("a.example"),
            "destination": _endpoint("b.example"),
            "mailboxes": [{"source": "a@b.c"}],
        }
    )
    assert spec.batch_size == 10 and spec.delta_interval == "15m"
    wire = spec.to_api()
    assert wire["source"]["auth"]["secretRef"] == {"name": "creds"}
    assert wire["source"]["port"] == 993 and "inventoryRef" not in wire
    assert MailMigrationSpec.model_validate(wire) == spec


def test_model_rejects_what_the_crd_rejects() -> None:
    with pytest.raises(ValidationError, match=r"batch_size|batchSize"):
        MailMigrationSpec.model_validate(
            {"source": _endpoint("a.example"), "destination": _endpoint("b.example"), "batchSize": 0}
        )
    with pytest.raises(ValidationError, match="domain"):
        DnsCutoverSpec.model_validate(
            {"domain": "Example..com", "provider": {"type": "rfc2136"}, "records": {"mx": []}}
        )


def test_status_to_api_omits_unset() -> None:
    assert MailMigrationStatus().to_api() == {"conditions": [], "failedMailboxes": [], "history": []}


def test_set_condition_moves_transition_time_only_on_change() -> None:
    conditions: list[Condition] = []
    conditions = set_condition(conditions, "Ready", "False", "Scanning")
    first = get_condition(conditions, "Ready")
    assert first is not None and first.last_transition_time is not None
    again = set_condition(conditions, "Ready", "False", "StillScanning", message="x")
    assert get_condition(again, "Ready").last_transition_time == first.last_transition_time  # type: ignore[union-attr]
    flipped = set_condition(again, "Ready", "True", "InSync")
    assert is_true(flipped, "Ready") and len(flipped) == 1
