"""Notices to the people being migrated (NoticePlan): cohorts, templates, drafts approved by hash, sending.

handlers.py (Kopf wiring) -> observe.py (objects -> Snapshot) -> decide.py (pure: drafts, what is due,
whom to send to) -> apply.py (status, Events, the ledger, SMTP). templates.py, message.py and ledger.py
are pure too; smtp.py and lookup.py talk to the SMTP and IMAP servers.
"""
