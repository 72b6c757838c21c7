"""Live follow mode (issue 20, `spec.deltaMode: follow`): one long-running worker serves many mailboxes.

Per mailbox it holds the MailboxSync's Lease for as long as it serves it, waits for changes on the source
(watch.py: IMAP NOTIFY, RFC 5465, one connection for every folder; else IDLE, RFC 2177, on INBOX plus a
STATUS sweep of the other folders; else a periodic delta like rounds) and on a change runs that mailbox's
existing delta sync (sync/engine.py) under the held lease (store.py lends it). Pure parts: watchplan.py
(which way to wait, what a response means, when to run), lagwindow.py (lag samples, p95 over a window).
serve.py runs it all; metrics.py is the pod's /metrics.
"""
