"""The operator's Kopf activities: login, settings, cleanup (registered when imported, by `main`)."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

ANNOTATION_PREFIX = "mailferry.io"

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


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
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
