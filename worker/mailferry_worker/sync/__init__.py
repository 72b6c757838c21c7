"""The sync engine: one folder (folder.py), one mailbox and its status (engine.py), a batch (batch.py)."""
