from __future__ import annotations

import json

from mailferry_operator.mailmigration.inventory import (
    MAX_ROWS,
    from_entries,
    parse_csv,
    parse_json,
    parse_text,
)


def test_csv_with_header_comments_and_optional_columns() -> None:
    text = "# exported 2026\nsource,destination,secretKey\nalice@a.test,alice@b.test,alice-pw\n\nbob@a.test\n"
    inv = parse_csv(text)
    assert [e.source for e in inv.entries] == ["alice@a.test", "bob@a.test"]
    assert inv.entries[0].destination == "alice@b.test" and inv.entries[0].secret_key == "alice-pw"
    assert inv.entries[1].destination is None and inv.entries[1].secret_key is None
    assert inv.status().model_dump() == {"total": 2, "valid": 2, "invalid": 0, "errors": []}


def test_csv_row_errors_carry_line_numbers_and_valid_rows_go_on() -> None:
    text = (
        "alice@a.test,alice@b.test\nnot an address,x@b.test\ncarol@a.test,,bad key!\n"
        "alice@a.test\nd@a.test,d@b.test,k,extra\ne@a.test\n"
    )
    inv = parse_csv(text)
    assert [e.source for e in inv.entries] == ["alice@a.test", "e@a.test"]
    lines = {e.line: e.reason for e in inv.errors}
    assert set(lines) == {2, 3, 4, 5}
    assert "not a mailbox address" in lines[2]
    assert "secretKey" in lines[3]
    assert "duplicate source" in lines[4] and "line 1" in lines[4]
    assert "columns" in lines[5]
    st = inv.status()
    assert (st.total, st.valid, st.invalid) == (6, 2, 4)


def test_duplicate_destination_is_reported() -> None:
    inv = parse_csv("a@x.test,same@y.test\nb@x.test,same@y.test\n")
    assert len(inv.entries) == 1
    assert "duplicate destination" in inv.errors[0].reason


def test_errors_are_bounded_but_counts_complete() -> None:
    text = "\n".join(f"bad row {i}" for i in range(500))
    inv = parse_csv(text)
    st = inv.status()
    assert st.invalid == 500 and st.total == 500 and len(st.errors) == 100


def test_row_limit() -> None:
    text = "\n".join(f"user{i}@a.test" for i in range(MAX_ROWS + 5))
    inv = parse_csv(text)
    assert len(inv.entries) == MAX_ROWS
    assert inv.error_count == 5
    assert "more than" in inv.errors[0].reason


def test_json_list_and_wrapped_and_auto_detect() -> None:
    rows = [{"source": "a@x.test", "destination": "a@y.test", "secretKey": "ka"}, "b@x.test", 7]
    inv = parse_json(json.dumps(rows))
    assert [e.source for e in inv.entries] == ["a@x.test", "b@x.test"]
    assert inv.errors[0].line == 3
    wrapped = parse_text(json.dumps({"mailboxes": rows[:2]}))
    assert len(wrapped.entries) == 2
    broken = parse_text("[{", "auto")
    assert broken.entries == [] and broken.error_count == 1


def test_inline_entries_use_same_checks() -> None:
    inv = from_entries([{"source": "a@x.test"}, {"source": "A@x.test"}])
    assert len(inv.entries) == 1 and inv.errors[0].line == 2
