"""Every example in deploy/examples/ is valid for the pydantic models too (operator and worker parse them)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from mailferry_api.dnscutover import DnsCutover
from mailferry_api.mailboxsync import MailboxSync
from mailferry_api.mailmigration import MailboxEntry, MailMigration
from mailferry_api.noticeplan import NoticePlan
from mailferry_api.sendingcutover import SendingCutover

EXAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples"
MODELS: dict[str, type[BaseModel]] = {
    "MailMigration": MailMigration,
    "MailboxSync": MailboxSync,
    "DnsCutover": DnsCutover,
    "NoticePlan": NoticePlan,
    "SendingCutover": SendingCutover,
}


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_examples_cover_every_kind() -> None:
    kinds = [d["kind"] for d in _documents()]
    assert set(MODELS) <= set(kinds)
    assert kinds.count("MailMigration") >= 2


@pytest.mark.parametrize(
    "doc",
    [d for d in _documents() if d["kind"] in MODELS],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_example_parses_with_model(doc: dict[str, Any]) -> None:
    parsed = MODELS[doc["kind"]].model_validate({"spec": doc["spec"]})
    # Everything the user wrote is understood (no key silently ignored by the model).
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)["spec"]

    def subset(mine: Any, theirs: Any, path: str) -> None:
        if isinstance(mine, dict):
            for key, value in mine.items():
                assert key in theirs, f"{path}.{key} is not a model field"
                subset(value, theirs[key], f"{path}.{key}")
        elif isinstance(mine, list):
            for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
                subset(a, b, f"{path}[{i}]")

    subset(doc["spec"], dumped, "spec")


def test_example_secrets_are_placeholders() -> None:
    secrets = [d for d in _documents() if d["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        assert "data" not in secret, "use stringData with visible placeholders"
        for key, value in secret["stringData"].items():
            assert value.startswith("PLACEHOLDER"), f"{secret['metadata']['name']}/{key}"


def test_inventory_configmap_rows_are_valid_entries() -> None:
    (cm,) = [d for d in _documents() if d["kind"] == "ConfigMap" and "mailboxes.csv" in d.get("data", {})]
    rows = [
        line for line in cm["data"]["mailboxes.csv"].splitlines() if line.strip() and not line.startswith("#")
    ]
    reader = csv.DictReader(io.StringIO("\n".join(rows)))
    entries = [MailboxEntry.model_validate({k: v for k, v in row.items() if v}) for row in reader]
    assert len(entries) >= 3
    from_json = [MailboxEntry.model_validate(e) for e in json.loads(cm["data"]["mailboxes.json"])]
    assert {e.source for e in from_json} <= {e.source for e in entries}
