"""What a MailMigration's author may pick (issue 14), the pure decisions: the worker image and
ServiceAccount, and folder mappings on RE2."""

from __future__ import annotations

from mailferry_api.imap import FolderMapping, FolderSelection
from mailferry_api.mailmigration import WorkerSpec
from mailferry_operator.mailmigration import inventory
from mailferry_operator.mailmigration import spec_checks as sc

IMAGE, ACCOUNT = "ghcr.io/mailferry/mailferry:0.1.0", "mailferry-worker"


def _problem(**worker: str) -> str | None:
    found = sc.worker_problem(
        WorkerSpec.model_validate(worker), IMAGE, ACCOUNT, {"registry.example/w:2"}, {"mailferry-imap"}
    )
    return None if found is None else f"{found.reason}: {found.message}"


def test_the_installation_and_its_allowlists_decide_the_worker() -> None:
    assert _problem() is None
    assert _problem(image=IMAGE, serviceAccountName=ACCOUNT) is None
    assert _problem(image="registry.example/w:2", serviceAccountName="mailferry-imap") is None
    image = _problem(image="registry.invalid/exfiltrate:latest")
    assert image is not None and image.startswith("WorkerNotAllowed: spec.worker.image registry.invalid")
    account = _problem(serviceAccountName="cluster-admin")
    assert account is not None and "spec.worker.serviceAccountName cluster-admin" in account


def test_folder_mappings_are_checked_on_the_engine_the_worker_runs() -> None:
    def problem(pattern: str, to: str = "X") -> str | None:
        found = sc.folder_mapping_problem(
            FolderSelection(mappings=[FolderMapping(**{"from": pattern, "to": to})])
        )
        return None if found is None else found.message

    assert problem(r"^(a+)+$") is None  # fine on RE2: linear whatever the name
    backref = problem(r"^(a)\1$")
    assert backref is not None and "not a valid RE2 regular expression" in backref
    assert problem(r"^Archive/(?P<y>\d+)$", r"Old/\g<y>") is None
    missing = problem(r"^Archive/(\d+)$", r"Old/\2")
    assert missing is not None and "has 1 group(s)" in missing


def test_inventory_rows_are_checked_by_the_model_that_reads_them() -> None:
    """A 2-character login passed the inventory check and then failed MailboxEntry on every pass (no
    status, no Event): now it is an inventory error with its line, and the other rows go on."""
    inv = inventory.parse_csv("ab\nbob@example.com\n")
    assert [e.source for e in inv.entries] == ["bob@example.com"]
    assert [(e.line, e.reason) for e in inv.errors] == [
        (1, "source: String should have at least 3 characters")
    ]


def test_cr_only_csv_reads_like_lf() -> None:
    """Old Mac line ends got Python's "universal-newline mode" hint as the reason."""
    inv = inventory.parse_csv("source,destination\ralice@example.com,alice@new.example\rbob@example.com,\r")
    assert inv.problem is None and [e.source for e in inv.entries] == ["alice@example.com", "bob@example.com"]
