"""Small async Kubernetes helpers (httpx) used by the handlers."""
