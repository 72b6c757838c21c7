"""Failover under load: two peered operators, a 1,500-row inventory + 5 small MailMigrations created at
once, kill -9 of the active replica while it creates the MailboxSyncs. The standby takes over once the
dead peer's Kopf peering lifetime (60 s) has run out, and every MailboxSync exists exactly once.
Short version of `make chaos CHAOS_ARGS="--scenario failover"` (10,000 rows + 50 migrations)."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.load import failover_under_load


def test_standby_takes_over_when_the_active_replica_is_killed(tmp_path: Path) -> None:
    ok, res = failover_under_load(tmp_path, rows=1500, migrations=5, kill_fraction=0.3, timeout=300)
    print(json.dumps(res))
    assert res["mailboxsyncs_at_kill"] < 1500 + 15, "the kill came after everything was created"
    assert res["seconds_until_standby_acted"] is not None, "the standby never acted"
    assert res["mailboxsyncs"] == res["mailboxsyncs_expected"] == 1515
    assert res["sources_with_more_than_one"] == 0
    assert res["migrations_with_status"] == 6
    assert ok, res
