"""The bodies of the objects a MailMigration owns: MailboxSyncs and worker Jobs (pure builders)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from mailferry_api.common import GROUP_VERSION, SECRET_KEY_PATTERN, LocalObjectRef
from mailferry_api.mailboxsync import MailboxSide, MailboxSyncSpec
from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec

from .. import settings
from .durations import parse_duration
from .inventory import default_secret_key
from .naming import mailbox_sync_name
from .plan import JobPlan
from .views import (
    ANNOTATION_SPEC_HASH,
    ENV_BUDGET,
    ENV_NOOP_STATUS,
    LABEL_APP,
    LABEL_ATTEMPT,
    LABEL_BATCH,
    LABEL_MIGRATION,
    LABEL_ROUND,
    WORKER_APP,
)

SECRETS_DIR = "/var/run/mailferry/secrets"
FIELD_MANAGER = "mailferry-operator"
FOLLOW_METRICS_PORT = 9102
# A follower holds its Leases for days: renewed every 20 s instead of 5 s (1,000 mailboxes: 50 writes/s);
# a follower that died without giving them back delays its successor by at most this long.
FOLLOW_ENV = {"MAILFERRY_LEASE_SECONDS": "120", "MAILFERRY_METRICS_PORT": str(FOLLOW_METRICS_PORT)}


def owner_reference(kind: str, name: str, uid: str, api_version: str = GROUP_VERSION) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_hash(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def mailbox_sync_spec(
    migration: str, spec: MailMigrationSpec, entry: MailboxEntry, *, defaults: bool = True
) -> dict[str, Any]:
    """One mailbox's MailboxSync spec; `defaults=False`: without the fields equal to the model's defaults
    (the MailboxSync CRD applies none: readers take them from the model)."""
    destination = entry.destination or entry.source
    body = MailboxSyncSpec(
        source=MailboxSide(endpoint=spec.source, username=entry.source),
        destination=MailboxSide(endpoint=spec.destination, username=destination),
        secret_key=entry.secret_key or default_secret_key(entry.source),
        migration_ref=LocalObjectRef(name=migration),
        folders=spec.folders,
        import_since=spec.import_since,
        skip_duplicates=spec.skip_duplicates,
        max_message_bytes=spec.max_message_bytes,
        connections_per_mailbox=spec.connections_per_mailbox,
        deletions=spec.deletions,
        deletion_safety=spec.deletion_safety,
        content=spec.content,
        groupware=spec.groupware,
    )
    return body.to_api(defaults=defaults)


class SyncTemplate(NamedTuple):
    """The MailboxSync spec every mailbox of a migration shares, with placeholders where `for_mailbox`
    puts a mailbox's own usernames and secretKey (validated once by the model)."""

    full: dict[str, Any]
    """Every field: what the spec-hash annotation covers and a patch writes (it resets changed fields)."""
    written: dict[str, Any]
    """Without the model's defaults: what a create writes. A third less for the API server, etcd and
    every watcher to handle per MailboxSync, 10,000 times at a migration's start."""


def mailbox_sync_template(migration: str, spec: MailMigrationSpec) -> SyncTemplate:
    placeholder = MailboxEntry(source="placeholder@invalid", secret_key="placeholder")
    return SyncTemplate(
        full=mailbox_sync_spec(migration, spec, placeholder),
        written=mailbox_sync_spec(migration, spec, placeholder, defaults=False),
    )


def for_mailbox(template: Mapping[str, Any], entry: MailboxEntry) -> dict[str, Any]:
    """A template's spec (`SyncTemplate.full` or `.written`) for one mailbox."""
    sync_spec = dict(template)
    sync_spec["source"] = {**template["source"], "username": entry.source}
    sync_spec["destination"] = {**template["destination"], "username": entry.destination or entry.source}
    sync_spec["secretKey"] = entry.secret_key or default_secret_key(entry.source)
    return sync_spec


def mailbox_sync_body(
    migration: str,
    uid: str,
    namespace: str,
    spec: MailMigrationSpec,
    entry: MailboxEntry,
    template: SyncTemplate | None = None,
) -> dict[str, Any]:
    """The MailboxSync to create for one mailbox. With `template` (from `mailbox_sync_template`) no model
    is validated per mailbox: 5,000 of them are built in milliseconds; the result is the same."""
    if template is None:
        full = mailbox_sync_spec(migration, spec, entry)
        written = mailbox_sync_spec(migration, spec, entry, defaults=False)
    else:
        full, written = for_mailbox(template.full, entry), for_mailbox(template.written, entry)
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "MailboxSync",
        "metadata": {
            "name": mailbox_sync_name(migration, entry.source),
            "namespace": namespace,
            "labels": {LABEL_MIGRATION: migration, "app.kubernetes.io/managed-by": "mailferry"},
            "annotations": {ANNOTATION_SPEC_HASH: spec_hash(full)},
            "ownerReferences": [owner_reference("MailMigration", migration, uid)],
        },
        "spec": written,
    }


SECRET_KEY = re.compile(SECRET_KEY_PATTERN)  # what a Secret's data key may be
MAX_LISTED_KEYS = 400  # more (a follower Job serving thousands of mailboxes): the whole Secret is mounted


def secret_keys(spec: MailMigrationSpec, side: str, entries: Sequence[MailboxEntry]) -> list[str] | None:
    """The keys of a side's Secret that the worker of a batch (`entries`) may read; None: all of them.

    With password auth a mailbox reads its secretKey, else the key named after its source login (the
    IMAP fallback) or after this side's login (the contacts/calendars fallback). Other methods read a
    few fixed keys (master user, OAuth2 settings): their whole Secret is mounted, as before."""
    mail = spec.source if side == "source" else spec.destination
    groupware = None
    if spec.groupware is not None:
        groupware = spec.groupware.source if side == "source" else spec.groupware.destination
    methods = {mail.auth.method, *([groupware.auth.method] if groupware and groupware.auth else [])}
    if methods != {"password"}:
        return None
    keys: dict[str, None] = {}  # in order, once each
    for entry in entries:
        login = entry.source if side == "source" else entry.destination or entry.source
        for key in (entry.secret_key, default_secret_key(entry.source), default_secret_key(login)):
            # A name no Secret can hold (a login with '+', say) is left out: listed, it would make the
            # API refuse the whole Job, and its mailbox reports MissingSecret either way.
            if key and len(key) <= 253 and SECRET_KEY.match(key) and key not in (".", ".."):
                keys[key] = None
    # a follower's batch of thousands: the Job would grow by 60 bytes a key, past etcd's limit
    return None if len(keys) > MAX_LISTED_KEYS else list(keys)


def secret_volume(name: str, secret: str, keys: list[str] | None) -> dict[str, Any]:
    """A Secret volume; with `keys`, only those (a batch's pod sees its own mailboxes' passwords, not the
    10,000 others', and the kubelet writes 100 files, not 10,000). A listed key the Secret lacks (a
    fallback nobody set) is skipped: `optional`; a missing Secret then shows as MissingSecret per mailbox."""
    source: dict[str, Any] = {"secretName": secret, "defaultMode": 0o400}
    if keys is not None:
        source["items"] = [{"key": key, "path": key} for key in keys]
        source["optional"] = True
    return {"name": name, "secret": source}


def job_body(
    migration: str,
    uid: str,
    namespace: str,
    spec: MailMigrationSpec,
    job: JobPlan,
    install: settings.OperatorSettings | None = None,
    entries: Sequence[MailboxEntry] | None = None,
) -> dict[str, Any]:
    """A batch/v1 Job per docs/job-contract.md: restricted pod security, Secret volumes, no secrets inline.

    `install` (default: this operator's settings) supplies what the installation decides: the image and
    ServiceAccount when the spec names none, and MAILFERRY_WORKER_POD (pull secrets, scheduling, labels).
    `entries`: the batch's inventory rows; given, each Secret volume holds only their keys (secret_keys)."""
    worker = spec.worker
    install = install or settings.current()
    pod = install.worker_pod_overrides
    labels = {
        LABEL_APP: WORKER_APP,
        "app.kubernetes.io/managed-by": "mailferry",
        LABEL_MIGRATION: migration,
        LABEL_ROUND: str(job.round),
        LABEL_BATCH: str(job.batch),
        LABEL_ATTEMPT: str(job.attempt),
    }
    env = {
        "MAILFERRY_NAMESPACE": namespace,
        "MAILFERRY_MAILBOXSYNCS": ",".join(job.mailboxes),
        "MAILFERRY_ROUND": str(job.round),
        "MAILFERRY_JOB_NAME": job.name,
        "MAILFERRY_MAILBOX_CONCURRENCY": str(
            job.share.concurrency if job.share else worker.mailbox_concurrency
        ),
        "MAILFERRY_SECRETS_DIR": SECRETS_DIR,
        "MAILFERRY_LOG_FORMAT": "json",
    }
    if job.share is not None:  # read back by the next passes (JobView.share): what running Jobs hold
        env[ENV_BUDGET] = job.share.to_json()
    if install.egress_allow:  # the token URLs the installer allows reach the worker too
        env["MAILFERRY_EGRESS_ALLOW"] = ",".join(install.egress_allow)
    if job.noop_status_seconds > 0:  # its success proves what it did not write (proofs.py)
        env[ENV_NOOP_STATUS] = str(job.noop_status_seconds)
    if job.follow:  # a follower (docs/follow.md): polls where the source has neither NOTIFY nor IDLE
        env.update(FOLLOW_ENV)
        env["MAILFERRY_FOLLOW_POLL_SECONDS"] = str(parse_duration(spec.delta_interval))
    container: dict[str, Any] = {
        "name": "worker",
        "image": worker.image or install.worker_image,
        "imagePullPolicy": worker.image_pull_policy,
        "command": ["mailferry-worker", "follow" if job.follow else "sync"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "volumeMounts": [
            {"name": "source-secret", "mountPath": f"{SECRETS_DIR}/source", "readOnly": True},
            {"name": "destination-secret", "mountPath": f"{SECRETS_DIR}/destination", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if worker.resources:
        container["resources"] = worker.resources.to_api()
    if job.follow:
        container["ports"] = [{"name": "metrics", "containerPort": FOLLOW_METRICS_PORT}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job.name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference("MailMigration", migration, uid)],
        },
        "spec": {
            "backoffLimit": worker.backoff_limit,
            # a follower runs until stopped: no deadline
            "activeDeadlineSeconds": None if job.follow else worker.active_deadline_seconds,
            # One writer per mailbox (the worker's Lease is the guarantee; this keeps Kubernetes from
            # adding twins): no replacement pod while a failed or evicted one is still terminating, and
            # a disruption (drain, preemption, eviction) is no failure of the worker. Exit 3 (another
            # worker holds a mailbox) counts like any failure: the pod back-off waits the holder out.
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            "template": {
                "metadata": _pod_metadata(labels, pod),
                "spec": {
                    **{k: v for k, v in pod.items() if k not in ("labels", "annotations")},
                    "restartPolicy": "Never",
                    "serviceAccountName": worker.service_account_name or install.worker_service_account,
                    "automountServiceAccountToken": True,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "fsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        secret_volume(
                            "source-secret",
                            spec.source.auth.secret_ref.name,
                            None if entries is None else secret_keys(spec, "source", entries),
                        ),
                        secret_volume(
                            "destination-secret",
                            spec.destination.auth.secret_ref.name,
                            None if entries is None else secret_keys(spec, "destination", entries),
                        ),
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _pod_metadata(labels: Mapping[str, str], pod: Mapping[str, Any]) -> dict[str, Any]:
    """The installation's pod labels and annotations; the operator's own labels win (it selects by them)."""
    meta: dict[str, Any] = {"labels": {**pod.get("labels", {}), **labels}}
    if pod.get("annotations"):
        meta["annotations"] = dict(pod["annotations"])
    return meta
