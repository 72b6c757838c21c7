"""Failed validations are repeated with back-off: each one logs in to every mailbox on both sides."""

from __future__ import annotations

from mailferry_operator.mailmigration.durations import validation_retry_delay


def test_doubles_from_30_seconds_up_to_15_minutes() -> None:
    assert [validation_retry_delay(n) for n in range(7)] == [30, 60, 120, 240, 480, 900, 900]
    assert validation_retry_delay(10_000) == 900  # no overflow however long it keeps failing
