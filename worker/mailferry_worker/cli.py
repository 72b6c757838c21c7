"""`mailferry`: user-facing tools. `mailferry verify` compares a source mailbox with its destination.

From a MailboxSync (endpoints, options and Secrets read through the API):
    mailferry verify --mailboxsync NAME --namespace NS [--kubeconfig FILE]
From flags (passwords from environment variables, never on the command line):
    mailferry verify --source-host H --source-port P --source-security none|tls|starttls \\
        --source-user U --source-password-env VAR \\
        --dest-host H --dest-port P --dest-security ... --dest-user U --dest-password-env VAR \\
        [--master-user-env VAR (login as user*master)] [--ca-file PEM] [--json] [--ignore-extra]

A MailboxSync whose `content` names contacts/calendars has its collections compared too
(groupware/verify.py): every source item by UID with the same content, none twice. With --status-dir,
its spec comes from DIR/NAME.json and the groupware credentials from --secrets-dir (laid out like the
Job's Secret volumes).

Exit 0 only when no folder and no collection has a difference; 1 on differences; 2 on errors
(cannot connect, bad input).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mailferry_api.common import SecretRef
from mailferry_api.imap import ImapAuth, ImapEndpoint, SyncOptions, default_secret_key
from mailferry_api.mailboxsync import FolderCheckpoint, MailboxSide, MailboxSyncSpec, MailboxSyncStatus
from mailferry_api.providers import with_presets
from mailferry_imap.credentials import (
    ApiSecrets,
    Connector,
    DirSecrets,
    SecretSource,
    StaticSecrets,
    connectors,
)
from mailferry_imap.errors import ImapError
from mailferry_kube.client import KubeApi, KubeError

from . import settings
from .discover import command as discover_command
from .groupware.dav import DavError
from .groupware.verify import CollectionReport, print_collection_reports, verify_mailboxsync_collections
from .verify import FolderReport, verify_mailbox

MAX_LINES = 20


def _side_args(p: argparse.ArgumentParser, side: str) -> None:
    p.add_argument(f"--{side}-host")
    p.add_argument(f"--{side}-port", type=int)
    p.add_argument(f"--{side}-security", choices=["tls", "starttls", "none"], default="tls")
    p.add_argument(f"--{side}-user")
    p.add_argument(f"--{side}-password-env", help="name of the env var holding the password")
    p.add_argument(f"--{side}-master-user-env", help="env var with a master user name: log in as user*master")
    p.add_argument(f"--{side}-no-tls-verify", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mailferry", description="mailferry tools")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="compare source and destination mailboxes")
    v.add_argument("--mailboxsync")
    v.add_argument("--namespace", default=settings.current().namespace or "default")
    v.add_argument("--kubeconfig")
    _side_args(v, "source")
    _side_args(v, "dest")
    v.add_argument("--ca-file", default=settings.current().ca_file or None)
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument(
        "--ignore-extra", action="store_true", help="messages only on the destination are no difference"
    )
    v.add_argument("--secrets-dir", default=settings.current().secrets_dir, help="with --status-dir")
    v.add_argument(
        "--status-dir",
        help="development file store: with --mailboxsync NAME, read its checkpoints from DIR/NAME.json "
        "(endpoints from the flags) to tell extra messages apart by kind",
    )
    discover_command.add_parser(sub)
    return p


def _flag_connector(args: argparse.Namespace, side: str, role: str) -> Connector:
    host = getattr(args, f"{side}_host")
    user = getattr(args, f"{side}_user")
    if not host or not user:
        raise SystemExit(f"--{side}-host and --{side}-user are required without --mailboxsync")
    security = getattr(args, f"{side}_security")
    port = getattr(args, f"{side}_port") or (993 if security == "tls" else 143)
    pw_env = getattr(args, f"{side}_password_env")
    master_env = getattr(args, f"{side}_master_user_env")
    password = os.environ.get(pw_env, "") if pw_env else ""
    values: dict[str, str] = {}
    if master_env:
        method = "master-user"
        values = {"master-username": os.environ.get(master_env, ""), "master-password": password}
    else:
        method = "password"
        values = {default_secret_key(user): password}
    endpoint = ImapEndpoint(
        host=host,
        port=port,
        security=security,
        tls_verify=not getattr(args, f"{side}_no_tls_verify"),
        auth=ImapAuth(method=method, secret_ref=SecretRef(name="flags")),
    )
    return Connector(role, endpoint, user, StaticSecrets({role: values}), None, None, args.ca_file)  # type: ignore[arg-type]


def print_report(reports: Sequence[FolderReport]) -> int:
    total = 0
    for r in reports:
        total += r.differences
        status = "OK" if r.differences == 0 else "DIFF"
        print(
            f"{status:4} {r.source!r} -> {r.destination!r}: "
            f"source={r.source_count} destination={r.dest_count} "
            f"skipped={r.skipped} missing={len(r.missing)} extra={len(r.extra)} flags={len(r.flags)} "
            f"dates={len(r.dates)} extra-by-kind: copies={r.extra_copies} "
            f"direct={len(r.extra_direct)} unknown={len(r.extra) - r.extra_copies}"
        )
        if r.error:
            print(f"     error: {r.error}")
        for kind, items in (
            ("missing", r.missing),
            ("extra", r.extra),
            ("arrived directly (no difference)", r.extra_direct),
            ("in its earlier home (Gmail labels changed since; no difference)", r.placed_elsewhere),
            ("flags", r.flags),
            ("date", r.dates),
        ):
            for line in items[:MAX_LINES]:
                print(f"     {kind}: {line}")
            if len(items) > MAX_LINES:
                print(f"     ... {len(items) - MAX_LINES} more {kind}")
    src = sum(r.source_count for r in reports)
    dst = sum(r.dest_count for r in reports)
    print(f"summary: folders={len(reports)} source={src} destination={dst} differences={total}")
    return total


async def _verify(args: argparse.Namespace) -> int:
    api: KubeApi | None = None
    options = SyncOptions()
    checkpoints: list[FolderCheckpoint] = []
    reports: list[FolderReport] = []
    collections: list[CollectionReport] = []
    gw_spec: MailboxSyncSpec | None = None
    gw_secrets: SecretSource | None = None
    src_c = dst_c = None
    try:
        if args.status_dir:
            # Development file store: spec and status of the MailboxSync from its JSON file.
            doc = json.loads((Path(args.status_dir) / f"{args.mailboxsync}.json").read_text())
            checkpoints = MailboxSyncStatus.model_validate(doc.get("status") or {}).folders
            gw_spec = MailboxSyncSpec.model_validate(doc["spec"])
            gw_secrets = DirSecrets(Path(args.secrets_dir))
            if "mail" in gw_spec.content:
                src_c = _flag_connector(args, "source", "source")
                dst_c = _flag_connector(args, "dest", "destination")
        elif args.mailboxsync:
            api = KubeApi.from_env(args.kubeconfig)
            obj = await api.get_mailboxsync(args.namespace, args.mailboxsync)
            spec = MailboxSyncSpec.model_validate(obj["spec"])
            checkpoints = MailboxSyncStatus.model_validate(obj.get("status") or {}).folders
            options = with_presets(spec, spec.source.endpoint, spec.destination.endpoint)
            gw_spec, gw_secrets = spec, ApiSecrets(api, args.namespace)
            src_c, dst_c = connectors(
                spec.source, spec.destination, ApiSecrets(api, args.namespace), spec.secret_key
            )
            src_c.ca_file = dst_c.ca_file = args.ca_file
        else:
            src_c = _flag_connector(args, "source", "source")
            dst_c = _flag_connector(args, "dest", "destination")
        if src_c is not None and dst_c is not None and (gw_spec is None or "mail" in gw_spec.content):
            reports = await verify_mailbox(src_c, dst_c, options, args.ignore_extra, checkpoints)
        if gw_spec is not None and gw_secrets is not None:
            collections = await verify_mailboxsync_collections(
                gw_spec, gw_secrets, args.ca_file, args.ignore_extra
            )
    except (ImapError, KubeError, DavError) as exc:
        print(f"error: {getattr(exc, 'reason', type(exc).__name__)}: {exc}", file=sys.stderr)
        return 2
    finally:
        if api is not None:
            await api.close()
    if args.json:
        total = sum(r.differences for r in reports) + sum(c.differences for c in collections)
        body = {"differences": total, "folders": [r.to_dict() for r in reports]}
        body["collections"] = [c.to_dict() for c in collections]
        print(json.dumps(body, indent=1))
    else:
        total = (print_report(reports) if reports or not collections else 0) + (
            print_collection_reports(collections) if collections else 0
        )
    return 0 if total == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "verify":
        return asyncio.run(_verify(args))
    if args.command == "inventory":
        return asyncio.run(discover_command.run(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())

_ = MailboxSide  # re-exported type for callers building specs
