"""Pure decision logic for MailMigrations: inventory parsing, naming, batching, status aggregation.

Nothing in here talks to Kubernetes or IMAP except `probe` (the connection/scan test), so the rest is
unit-tested without servers.
"""
