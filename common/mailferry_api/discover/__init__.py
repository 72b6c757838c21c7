"""Inventory discovery: list a tenant's mailboxes, aliases and groups from Google Workspace (Admin SDK
Directory API) or Microsoft 365 (Graph), for a person to review before the migration starts.

Shared by the `mailferry inventory` CLI (worker) and `spec.inventoryRef.discover` (operator): the HTTP
clients (google, graph, paging), the rows (directory) and the review hash (review)."""
