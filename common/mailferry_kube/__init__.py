"""The project's one Kubernetes API client (shared kernel: the operator and the worker both use it)."""

from .client import JSON, MERGE_PATCH, KubeApi, KubeError

__all__ = ["JSON", "MERGE_PATCH", "KubeApi", "KubeError"]
