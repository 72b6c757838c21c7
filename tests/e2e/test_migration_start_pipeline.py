"""A migration's start as a pipeline (mailmigration/pipeline.py), on the real API server and Dovecots:
Jobs start batch by batch while MailboxSyncs are still created and tested, and still never name a
MailboxSync before it exists, nor a mailbox refused by validation before the whole test ended.

No job runner: the Jobs are created, not run (maxConcurrentJobs lets every batch's Job be made)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import demolib as d

from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI

pytestmark = pytest.mark.timeout(300)
NAME = "pipe"
MAILBOXES = 60
BATCH = 5


def test_jobs_name_only_created_mailboxsyncs_and_a_refused_mailbox_waits_for_the_verdict(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    org = d.make_org(MAILBOXES, domain=f"{namespace}.test")
    bad = org.addresses[2]  # in the first batch: the batch that starts first must wait for the verdict
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org, wrong_destination=[bad])
    operator = d.OperatorProcess(kube, [namespace], tmp_path).start()
    try:
        d.apply(
            kube,
            *d.org_migration(
                NAME, namespace, dovecot_pair.source, dovecot_pair.destination, org,
                batchSize=BATCH, maxConcurrentJobs=MAILBOXES // BATCH,
            ),
        )  # fmt: skip

        def every_job() -> list[dict[str, Any]] | None:
            jobs = d.worker_jobs(kube, namespace, NAME)
            return jobs if len(jobs) == MAILBOXES // BATCH else None

        jobs = d.wait_for(every_job, 150, "a Job for every batch")
        validated = d.condition(d.migration(kube, namespace, NAME), "Validated") or {}
        syncs = {
            s["metadata"]["name"]: s for s in d.get(kube, "mailboxsyncs.mailferry.io", namespace)["items"]
        }
    finally:
        operator.stop()
        kube.kubectl(
            "delete", "jobs,mailboxsyncs.mailferry.io", "--all", "-n", namespace, "--wait=false", check=False
        )
    assert validated.get("reason") == "SomeMailboxesUnreachable", validated
    by_source = {s["spec"]["source"]["username"]: name for name, s in syncs.items()}
    for job in jobs:
        job_name, created = job["metadata"]["name"], job["metadata"]["creationTimestamp"]  # UTC: as text
        env = {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        members = env["MAILFERRY_MAILBOXSYNCS"].split(",")
        assert len(members) == BATCH
        for member in members:
            assert member in syncs, f"Job {job_name} names {member}, which does not exist"
            assert syncs[member]["metadata"]["creationTimestamp"] <= created, (member, job_name)
        if by_source[bad] in members:  # made only once the whole test said which mailboxes passed
            assert created >= validated["lastTransitionTime"], (created, validated)


def test_a_migration_changed_back_to_a_default_resets_every_mailboxsync(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    """MailboxSyncs are created without the fields equal to the model's defaults (the CRD applies none),
    but a changed MailMigration patches every field: set back to its default, a value is reset on every
    MailboxSync, not left as it was (a merge patch of the non-defaults only would leave 4 in place)."""
    name = "reset"
    org = d.make_org(3, domain=f"{namespace}.test")
    d.add_org_users(dovecot_pair.source, dovecot_pair.destination, org)
    operator = d.OperatorProcess(kube, [namespace], tmp_path).start()

    def stored_specs(want: int) -> list[dict[str, Any]] | None:
        items = d.get(kube, "mailboxsyncs.mailferry.io", namespace)["items"]
        specs = [s["spec"] for s in items]
        done = len(specs) == len(org.addresses) and all(s.get("connectionsPerMailbox") == want for s in specs)
        return specs if done else None

    try:
        d.apply(
            kube,
            *d.org_migration(
                name, namespace, dovecot_pair.source, dovecot_pair.destination, org, connectionsPerMailbox=4
            ),
        )
        created = d.wait_for(lambda: stored_specs(4), 120, "MailboxSyncs with connectionsPerMailbox 4")
        # created without what equals a default: no skipDuplicates (false), no deletions (mirror)
        assert all("skipDuplicates" not in s and "deletions" not in s for s in created), created
        kube.kubectl(
            "patch", "mailmigration", name, "-n", namespace, "--type=merge",
            "-p", '{"spec": {"connectionsPerMailbox": 2}}',
        )  # fmt: skip
        d.wait_for(lambda: stored_specs(2), 120, "every MailboxSync reset to connectionsPerMailbox 2")
    finally:
        operator.stop()
        kube.kubectl(
            "delete", "jobs,mailmigrations.mailferry.io,mailboxsyncs.mailferry.io", "--all", "-n", namespace,
            "--wait=false", check=False,
        )  # fmt: skip
