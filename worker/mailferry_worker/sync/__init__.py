"""The sync engine, one idea per module.

A batch (batch.py) runs mailboxes. A mailbox (engine.py) takes its lease and runs its folders over
several connection pairs: run.py (its settings and result), connections.py (connectors, logins,
listings), unchanged.py (what STATUS proves unchanged), status.py (what it reports and the writing of
it), mirror.py (deletions and moves), pacing.py (the pace its budgets allow), budget.py (daily
budgets across Jobs, the ETA), readiness.py (its conditions).
A folder (folder.py) matches and copies: folderstate.py (its state and checkpoint rules), meta.py
(metadata and content hashes), flags.py (flags and keywords), latecopies.py (a lost connection's
late APPENDs), bulkcopy.py (the copy loop).
"""
