"""`mailferry inventory`: discover a tenant's mailboxes, aliases and groups and print an inventory
ConfigMap (or CSV / JSON) for a person to review and apply. Credentials come from files or environment
variables, never from the command line.

    mailferry inventory --provider google --service-account-file sa.json --admin admin@old.example \\
        [--domain old.example] [--destination-domain new.example] [--format configmap|csv|json]
    mailferry inventory --provider microsoft365 --tenant-id T --client-id C --client-secret-env VAR ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx
import yaml

from mailferry_api.discover import run as discovery
from mailferry_api.discover.directory import Directory, configmap, inventory_csv, recreate_report
from mailferry_api.discover.paging import DiscoveryError
from mailferry_imap.auth import TokenSource
from mailferry_imap.errors import ImapError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "inventory", help="list a tenant's mailboxes, aliases and groups (Google, Microsoft 365)"
    )
    p.add_argument("--provider", choices=["google", "microsoft365"], required=True)
    p.add_argument("--service-account-file", help="google: the service account JSON (domain-wide delegation)")
    p.add_argument("--admin", help="google: an administrator to act as")
    p.add_argument("--customer", default="my_customer", help="google: the customer ID")
    p.add_argument("--domain", help="google: only this domain of the customer")
    p.add_argument("--tenant-id", help="microsoft365: the Entra tenant")
    p.add_argument("--client-id", help="microsoft365: the app registration")
    p.add_argument("--client-secret-env", help="microsoft365: env var holding the client secret")
    p.add_argument("--destination-domain", help="rewrite addresses to this domain in the inventory")
    p.add_argument("--include-suspended", action="store_true", help="also migrate suspended accounts")
    p.add_argument("--format", choices=["configmap", "csv", "json"], default="configmap")
    p.add_argument("--name", default="mailferry-inventory", help="configmap: its name")
    p.add_argument("--namespace", default="default", help="configmap: its namespace")


def _token_source(args: argparse.Namespace) -> TokenSource:
    if args.provider == "google":
        if not (args.service_account_file and args.admin):
            raise SystemExit("google needs --service-account-file and --admin")
        return TokenSource(
            "google",
            args.admin,
            service_account_json=Path(args.service_account_file).read_text(),
            scope=discovery.SCOPES["google"],
        )
    if not (args.tenant_id and args.client_id and args.client_secret_env):
        raise SystemExit("microsoft365 needs --tenant-id, --client-id and --client-secret-env")
    return TokenSource(
        "microsoft",
        args.client_id,
        client_id=args.client_id,
        client_secret=os.environ.get(args.client_secret_env, ""),
        tenant_id=args.tenant_id,
        scope=discovery.SCOPES["microsoft365"],
    )


async def discover(args: argparse.Namespace, http: httpx.AsyncClient) -> Directory:
    token = await _token_source(args).token(http)
    return await discovery.discover(http, args.provider, token, args.customer, args.domain)


async def run(args: argparse.Namespace) -> int:
    try:
        async with httpx.AsyncClient(timeout=30.0) as http:
            found = await discover(args, http)
    except (DiscoveryError, ImapError) as exc:
        print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
        return 2
    if args.format == "csv":
        print(inventory_csv(found, args.destination_domain, args.include_suspended), end="")
    elif args.format == "json":
        print(json.dumps(recreate_report(found, args.destination_domain), indent=2))
    else:
        cm = configmap(found, args.name, args.namespace, args.destination_domain, args.include_suspended)
        print(yaml.safe_dump(cm, sort_keys=False), end="")
    kept = len([a for a in found.accounts if args.include_suspended or not a.suspended])
    aliases = sum(len(a.aliases) for a in found.accounts)
    print(
        f"# {kept} mailboxes, {aliases} aliases, {len(found.groups)} groups to recreate before the MX swap,"
        f" {len(found.skipped)} skipped",
        file=sys.stderr,
    )
    return 0
