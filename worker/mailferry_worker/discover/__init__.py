"""Inventory discovery: list a tenant's mailboxes, aliases and groups from Google Workspace (Admin SDK
Directory API) or Microsoft 365 (Graph), for a person to review before the migration starts."""
