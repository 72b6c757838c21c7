"""Disk full on the destination: Dovecot's quota plugin with a 1 MB quota stands in for a full disk.

Wanted: a clear reason in the MailboxSync status while the destination is full, and nothing lost once the
quota is raised and the worker reruns.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from chaos.mailrun import WorkerRun, compare, corpus, endpoint, events
from fixtures.dovecot import DovecotFactory, DovecotPair

QUOTA = """
mail_plugins = quota
plugin {{
  quota = maildir:User quota
  quota_rule = *:storage={limit}
}}
"""


def test_destination_quota_full_then_raised_loses_nothing(
    dovecot_pair: DovecotPair, dovecot_factory: DovecotFactory, tmp_path: Path
) -> None:
    src = dovecot_pair.source
    dst = dovecot_factory(name="full", extra_config=QUOTA.format(limit="1M"))
    user = f"full-{secrets.token_hex(3)}@example.test"
    src.add_user(user, "pw-src")
    dst.add_user(user, "pw-dst")
    total = corpus(src, user, {"INBOX": 300, "Archive": 100}, size=5000)  # ~2 MB: twice the quota
    run = WorkerRun(
        tmp_path,
        "full",
        user,
        endpoint("127.0.0.1", src.port),
        endpoint("127.0.0.1", dst.port),
        "pw-src",
        "pw-dst",
    )
    cp = run.run()
    st = run.status()
    rejected = sum(1 for e in events(cp.stderr) if e.get("event") == "append_rejected")
    full = compare(src, dst, user)
    print(
        f"quota 1M: exit={cp.returncode} phase={st.get('phase')} lastError={st.get('lastError')} "
        f"append_rejected={rejected} {full}"
    )
    print(json.dumps({k: st.get(k) for k in ("totals", "skipReasons")}))

    dst.extra_config = QUOTA.format(limit="100M")
    dst._write_conf()
    dst.restart()
    runs, secs, codes = run.run_until_done(MAILFERRY_ROUND="2")
    after = compare(src, dst, user)
    print(f"quota raised: runs={runs} exit codes={codes} seconds={secs:.1f} {after}")

    # While full: not "Synced", a reason that says so, and a retryable exit code.
    assert st.get("phase") != "Synced", st
    assert (st.get("lastError") or {}).get("reason") in {"DestinationFull", "QuotaExceeded", "OverQuota"}, st
    assert cp.returncode == 1
    # After the quota is raised: everything there, nothing twice.
    assert after.source == total
    assert (after.lost, after.duplicated) == (0, 0), after.detail
