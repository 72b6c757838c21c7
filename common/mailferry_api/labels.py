"""Labels the operator puts on what a MailMigration owns (MailboxSyncs, worker Jobs); tools select by them."""

LABEL_MIGRATION = "mailferry.io/migration"
LABEL_APP = "app.kubernetes.io/name"
WORKER_APP = "mailferry-worker"
