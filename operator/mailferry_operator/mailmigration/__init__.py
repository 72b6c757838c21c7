"""MailMigration: MailboxSyncs -> worker Jobs, in rounds, with validation, approval and status.

handlers.py (Kopf wiring) -> observe.py (reads -> Snapshot) -> decide.py (pure -> Plan) -> apply.py
(writes). Beside them pure helpers (plan, rounds, finalsync, scan, aggregate, batching, naming, inventory,
spec_checks, durations, resources, views) and the two modules that talk to IMAP (probe, validation).
"""
