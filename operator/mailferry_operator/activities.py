"""The operator's Kopf activities: login, settings, cleanup (registered when imported, by `main`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import kopf

ANNOTATION_PREFIX = "mailferry.io"
# Annotations copied into Kopf's last-handled-configuration: ours (approvals, retry knobs) up to this size.
MAX_DIFFBASE_ANNOTATION = 1024
# Kinds the operator only indexes (no create/update/delete handler reads a diff of them): Kopf would still
# build a last-handled-configuration (a deep copy of spec and metadata) per watch event, 10,000 and more
# when a migration starts. A change handler added for one of these must take it out of this set.
INDEX_ONLY_KINDS = frozenset({("mailferry.io/v1alpha1", "MailboxSync"), ("batch/v1", "Job")})

# Set by main(): in namespaced mode the operator may not list namespaces or CRDs cluster-wide, and
# Kopf would retry those refused scans for about a minute before it reconciles anything.
clusterwide = False


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Kopf's own kubeconfig / service-account login: no Kubernetes client library is imported."""
    if os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return kopf.login_with_kubeconfig(**kwargs)
    return kopf.login_with_service_account(**kwargs)


@kopf.on.cleanup()
async def close_client(**_: Any) -> None:
    from .kube import client

    await client.close()


class CompactDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's last-handled-configuration without foreign or large annotations.

    Kopf copies the object's annotations into its own annotation: a DnsCutover carrying a 150 KB
    annotation then needed 300 KB of annotations, over the API server's 256 KB limit, so every patch of
    Kopf's failed with 422 and the finalizer was never removed (Terminating for minutes). Only
    mailferry.io/ annotations of up to MAX_DIFFBASE_ANNOTATION characters can trigger a handler anyway."""

    def build(self, *, body: Any, extra_fields: Iterable[Any] | None = None) -> Any:
        if (body.get("apiVersion"), body.get("kind")) in INDEX_ONLY_KINDS:
            return None  # no diff is ever asked of these (Kopf treats None as "nothing handled yet")
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations = essence.get("metadata", {}).get("annotations", {})
        for key in list(annotations):
            if not key.startswith(f"{ANNOTATION_PREFIX}/") or len(annotations[key]) > MAX_DIFFBASE_ANNOTATION:
                del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = CompactDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # One worker per object with events; a worker keeps its slot while it idles (Kopf's default 5 s):
    # 0.5 s lets new MailboxSyncs through quickly (10,000 created at ~150/s queued whole watch bodies and
    # the index lagged by minutes). No cap on workers (Kopf's default): at start, or when a standby
    # replica takes over, each listed object's worker indexes it and then waits until *every* object is
    # indexed; with a cap (it was 256) the 257th MailboxSync never got a worker, so an operator started
    # with more MailboxSyncs than the cap hung for ever (found by the failover chaos scenario).
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 0.5
    settings.scanning.disabled = not clusterwide
