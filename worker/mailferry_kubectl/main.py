"""`kubectl mailferry`: watch and steer mailferry migrations and DNS cutovers.

Every action is an ordinary merge patch of one spec field, printed as the equivalent `kubectl patch`.
Under Argo CD (self-heal) make the same change in Git instead; the next sync would revert a patch.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from mailferry_api.dnscutover import DNS_PHASES
from mailferry_api.labels import LABEL_MIGRATION
from mailferry_kube.client import KubeApi, KubeError

from . import actions, view
from .cluster import FIELD_MANAGER, Cluster, LogUnavailable, NotFound, default_namespace
from .verify import verify_mailboxes

GIT_NOTE = "An ordinary merge patch of {field}; under Argo CD make the same change in Git instead."


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    p.add_argument("-n", "--namespace", default=default, help="namespace (default: the kubeconfig context's)")
    p.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )


def _action(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str, field: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=f"{help_}. {GIT_NOTE.format(field=field)}")
    _common(p, top=False)
    p.add_argument("--dry-run", action="store_true", help="show the patch, change nothing")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubectl mailferry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("status", help="migrations and their DNS cutovers at a glance")
    _common(s, top=False)
    s.add_argument("migration", nargs="?", help="a MailMigration (default: all in the namespace)")
    s.add_argument("--mailboxes", action="store_true", help="also a table of the mailboxes")

    a = sub.add_parser("approve", help="approve a migration's scan, a cutover's manual gates, notice drafts")
    _common(a, top=False)
    asub = a.add_subparsers(dest="target", required=True)
    am = _action(asub, "migration", "approve the scan of a MailMigration", "spec.approval.approved")
    am.add_argument("name")
    ai = _action(
        asub,
        "inventory",
        "show a discovered inventory ConfigMap, then approve it",
        "spec.inventoryRef.approvedHash",
    )
    ai.add_argument("name")
    ac = _action(asub, "cutover", "pass the manualApproval gates of a DnsCutover", "spec.approvedPhase")
    ac.add_argument("name")
    ac.add_argument("--phase", choices=DNS_PHASES, help="approve up to this phase (default: the next one)")
    an = _action(asub, "notices", "approve a NoticePlan's drafts after showing them", "spec.approvedHashes")
    an.add_argument("name")
    an.add_argument("--notice", help="only drafts of this notice")
    an.add_argument("--cohort", help="only drafts for this cohort")

    for name, help_ in (
        ("advance", "raise a DnsCutover's targetPhase (default: one phase), with a preview of the plan"),
        (
            "rollback",
            "lower a DnsCutover's targetPhase (default: one below its phase); the operator walks back",
        ),
    ):
        c = _action(sub, name, help_, "spec.targetPhase")
        c.add_argument("name", help="a DnsCutover")
        c.add_argument("--to", choices=DNS_PHASES, help="the new targetPhase")

    r = _action(
        sub, "retry", "re-run failed mailboxes and re-test a failed validation now", "spec.retryFailed"
    )
    r.add_argument("name", help="a MailMigration")
    for name, help_ in (("suspend", "stop starting worker Jobs"), ("resume", "start worker Jobs again")):
        c = _action(sub, name, f"{help_} for a MailMigration", "spec.suspend")
        c.add_argument("name", help="a MailMigration")

    v = sub.add_parser("verify", help="compare every mailbox of a migration, source against destination")
    _common(v, top=False)
    v.add_argument("name", help="a MailMigration")
    v.add_argument("--mailbox", action="append", help="only this source address (repeatable)")

    lg = sub.add_parser("logs", help="the logs of the worker Jobs that copied one mailbox")
    _common(lg, top=False)
    lg.add_argument("name", help="a MailMigration")
    lg.add_argument("--mailbox", required=True, help="source address of the mailbox")
    lg.add_argument("--tail", type=int, help="lines per pod")
    return p


class Plugin:
    def __init__(self, cluster: Cluster, args: argparse.Namespace) -> None:
        self.cluster = cluster
        self.args = args
        self.style = view.Style(color=sys.stdout.isatty())

    async def syncs(self, migration: str) -> list[dict[str, Any]]:
        return await self.cluster.list_objects("mailboxsyncs", f"{LABEL_MIGRATION}={migration}")

    async def status(self) -> int:
        if self.args.migration:
            migrations = [await self.cluster.get("mailmigrations", self.args.migration)]
        else:
            migrations = await self.cluster.list_objects("mailmigrations")
        cutovers = await self.cluster.list_objects("dnscutovers")
        shown: set[str] = set()
        if not migrations and not cutovers:
            print(f"no MailMigration or DnsCutover in namespace {self.cluster.namespace}")
        for mm in migrations:
            name = mm["metadata"]["name"]
            syncs = await self.syncs(name) if self.args.mailboxes else []
            print("\n".join(view.migration_lines(mm, syncs, self.style, mailboxes=self.args.mailboxes)))
            for dc in cutovers:
                if ((dc.get("spec") or {}).get("migrationRef") or {}).get("name") == name:
                    shown.add(dc["metadata"]["name"])
                    print("\n".join(view.cutover_lines(dc, self.style)))
            print()
        if not self.args.migration:
            for dc in cutovers:
                if dc["metadata"]["name"] not in shown:
                    print("\n".join(view.cutover_lines(dc, self.style)) + "\n")
        return 0

    async def apply(self, change: actions.Change, preview: Sequence[str] = ()) -> int:
        for line in preview:
            print(line)
        command = change.kubectl(self.cluster.namespace)
        if self.args.dry_run:
            print(f"dry run, nothing changed. The change: {command}")
            return 0
        await self.cluster.patch_spec(change.plural, change.name, change.patch)
        print(f"{change.plural[:-1]} {change.name}: {change.summary}")
        print(f"  (the same as: {command}; under Argo CD make this change in Git)")
        return 0

    async def approve(self) -> int:
        if self.args.target == "migration":
            mm = await self.cluster.get("mailmigrations", self.args.name)
            change = actions.approve_migration(mm)
            return await self.apply(change, actions.scan_review(mm))
        if self.args.target == "inventory":
            mm = await self.cluster.get("mailmigrations", self.args.name)
            ref = (mm.get("spec") or {}).get("inventoryRef") or {}
            cm = await self.cluster.api.request(
                "GET", f"/api/v1/namespaces/{self.cluster.namespace}/configmaps/{ref.get('name', '-')}"
            )
            change = actions.approve_inventory(mm, cm)
            return await self.apply(change, actions.inventory_review(cm, str(ref.get("key") or "mailboxes")))
        if self.args.target == "notices":
            plan = await self.cluster.get("noticeplans", self.args.name)
            change = actions.approve_notices(plan, self.args.notice, self.args.cohort)
            return await self.apply(change, actions.draft_review(plan, self.args.notice, self.args.cohort))
        dc = await self.cluster.get("dnscutovers", self.args.name)
        return await self.apply(actions.approve_cutover(dc, self.args.phase))

    async def move(self) -> int:
        dc = await self.cluster.get("dnscutovers", self.args.name)
        decide = actions.advance if self.args.command == "advance" else actions.rollback
        change = decide(dc, self.args.to)
        return await self.apply(change, actions.walk_preview(dc, change))

    async def migration_action(self) -> int:
        mm = await self.cluster.get("mailmigrations", self.args.name)
        command = self.args.command
        if command == "retry":
            change = actions.retry(mm, str(int(time.time())))
        else:
            change = actions.set_suspend(mm, command == "suspend")
        return await self.apply(change)

    async def verify(self) -> int:
        await self.cluster.get("mailmigrations", self.args.name)
        syncs = await self.syncs(self.args.name)
        if self.args.mailbox:
            wanted = set(self.args.mailbox)
            syncs = [s for s in syncs if s["spec"]["source"]["username"] in wanted]
            missing = wanted - {s["spec"]["source"]["username"] for s in syncs}
            if missing:
                raise NotFound(f"MailMigration {self.args.name} has no mailbox {', '.join(sorted(missing))}")
        if not syncs:
            raise NotFound(f"MailMigration {self.args.name} has no MailboxSyncs yet (is it validated?)")
        result = await asyncio.to_thread(
            verify_mailboxes, syncs, self.cluster.namespace, self.args.kubeconfig
        )
        for address, diffs in sorted(result.per_mailbox.items()):
            print(f"{'OK  ' if diffs == 0 else 'DIFF'} {address}: {diffs} difference(s)")
        for error in result.errors:
            print(f"ERR  {error}")
        print(result.summary())
        return 0 if result.clean else (2 if result.errors else 1)

    async def logs(self) -> int:
        syncs = [
            s
            for s in await self.syncs(self.args.name)
            if s["spec"]["source"]["username"] == self.args.mailbox
        ]
        if not syncs:
            await self.cluster.get("mailmigrations", self.args.name)
            raise NotFound(f"MailMigration {self.args.name} has no mailbox {self.args.mailbox}")
        sync_name = syncs[0]["metadata"]["name"]
        jobs = [
            j
            for j in await self.cluster.jobs(f"{LABEL_MIGRATION}={self.args.name}")
            if sync_name in _job_mailboxes(j)
        ]
        if not jobs:
            print(f"no worker Job has run for {self.args.mailbox} yet (MailboxSync {sync_name})")
            return 1
        shown = 0
        for job in sorted(jobs, key=lambda j: j["metadata"]["creationTimestamp"]):
            jname = job["metadata"]["name"]
            pods = await self.cluster.pods(f"job-name={jname}")
            if not pods:
                print(f"== Job {jname}: no pods (not started yet, or removed with the Job's history)")
                continue
            for pod in pods:
                print(f"== Job {jname}, pod {pod['metadata']['name']}")
                try:
                    text = (await self.cluster.pod_log(pod["metadata"]["name"], self.args.tail)).rstrip()
                except LogUnavailable as exc:
                    print(f"   log unavailable: {exc}")
                    continue
                phase = (pod.get("status") or {}).get("phase", "Unknown")
                print(text or f"   (no log lines yet; pod phase {phase})")
                shown += 1 if text else 0
        return 0 if shown else 1


def _job_mailboxes(job: dict[str, Any]) -> set[str]:
    """The MailboxSyncs a worker Job copies: its MAILFERRY_MAILBOXSYNCS (docs/job-contract.md)."""
    pod = job["spec"]["template"]["spec"]
    for container in pod.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "MAILFERRY_MAILBOXSYNCS":
                return set(str(env.get("value", "")).split(","))
    return set()


async def run(args: argparse.Namespace) -> int:
    namespace = args.namespace or default_namespace(args.kubeconfig)
    api = KubeApi.from_env(args.kubeconfig, field_manager=FIELD_MANAGER)
    plugin = Plugin(Cluster(api, namespace), args)
    handlers = {
        "status": plugin.status,
        "approve": plugin.approve,
        "advance": plugin.move,
        "rollback": plugin.move,
        "retry": plugin.migration_action,
        "suspend": plugin.migration_action,
        "resume": plugin.migration_action,
        "verify": plugin.verify,
        "logs": plugin.logs,
    }
    try:
        return await handlers[args.command]()
    finally:
        await api.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except actions.Refusal as exc:
        print(f"refused: {exc}", file=sys.stderr)
    except NotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KubeError as exc:
        print(f"error: {exc.reason or 'API error'}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
