"""`mailferry inventory`: a thin CLI over mailferry_api.discover (shared with the operator's
spec.inventoryRef.discover)."""
