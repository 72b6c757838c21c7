"""`mailferry verify` with a Gmail source compares per message: one relabelled since its copy is
"missing" in its new home and an extra copy where it was placed - one message, no difference."""

from __future__ import annotations

from mailferry_worker.gmail.regroup import identity, regroup
from mailferry_worker.verify import FolderReport

A = "uid=4 size=120 message-id=<a@x>"
B = "uid=9 size=300 message-id=<b@x>"


def _report(name: str, missing: list[str] = [], extra: list[str] = []) -> FolderReport:  # noqa: B006
    r = FolderReport(name, name, missing=list(missing), extra=list(extra))
    r.extra_copies = sum(e.startswith("copy ") for e in extra)
    return r


def test_relabelled_message_is_no_difference() -> None:
    inbox = _report("INBOX", missing=[A])
    work = _report("Work", extra=["copy uid=2 size=120 message-id=<a@x>"])
    assert regroup([inbox, work]) == 1
    assert inbox.differences == 0 and work.differences == 0
    assert inbox.placed_elsewhere == [f"{A} in 'Work'"] and work.extra_copies == 0


def test_a_missing_message_stays_missing() -> None:
    inbox = _report("INBOX", missing=[A, B])
    work = _report("Work", extra=["copy uid=2 size=121 message-id=<a@x>"])  # another size: another message
    assert regroup([inbox, work]) == 0
    assert inbox.missing == [A, B] and work.differences == 1


def test_one_extra_copy_pairs_with_one_missing_message() -> None:
    inbox = _report("INBOX", missing=[A])
    travel = _report("Travel", missing=[A.replace("uid=4", "uid=5")])
    work = _report("Work", extra=["copy uid=2 size=120 message-id=<a@x>"])
    assert regroup([inbox, travel, work]) == 1
    assert inbox.differences + travel.differences + work.differences == 1


def test_no_message_id_cannot_be_told_apart() -> None:
    assert identity("uid=1 size=5 message-id=-") is None
    inbox = _report("INBOX", missing=["uid=1 size=5 message-id=-"])
    work = _report("Work", extra=["uid=3 size=5 message-id=-"])
    assert regroup([inbox, work]) == 0
    assert inbox.differences == 1 and work.differences == 1
