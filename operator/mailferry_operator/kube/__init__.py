"""Small async Kubernetes helpers (kubernetes_asyncio) used by the handlers."""
