"""Bounded fan-out (issue 14): the bytes etcd holds for the MailboxSyncs of one migration whose folder
selection is as large as the schema allows (MAX_FOLDER_SELECTION_CHARS), measured on a real etcd.

Every MailboxSync carries a copy of its migration's `folders`; before the bound a 0.9 MB `include` was
copied into each (18 MB for 20 mailboxes, ~9 GB at 10,000). Now the API server refuses more than 8,192
characters in include + exclude + mappings. The script creates N worst-case MailboxSyncs, sums the sizes
of their etcd values (the JSON gateway's range over /registry/mailferry.io/mailboxsyncs/<ns>/) and prints
the figure for 10,000.

    .venv/bin/python tests/bench/etcd_fanout.py [N] [typical]   # default N = 1000, worst case
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.kubeapi import find_bin_dir, start_envtest
from mailferry_api.imap import MAX_FOLDER_SELECTION_CHARS

NS = "fanout"


def worst_case_folders() -> dict[str, Any]:
    """include + exclude + mappings at the bound: 6 KiB of include patterns and 2 KiB of mappings."""
    include = [f"Projects/{i:02d}/" + "x" * 1012 for i in range(6)]
    mappings = [{"from": "^Archive/" + "a" * 503, "to": "Old/" + "b" * 508}] * 2
    total = sum(map(len, include)) + sum(len(m["from"]) + len(m["to"]) for m in mappings)
    assert total <= MAX_FOLDER_SELECTION_CHARS, total
    return {"include": include, "mappings": mappings}


def mailbox_sync(i: int, folders: dict[str, Any]) -> dict[str, Any]:
    def side(host: str) -> dict[str, Any]:
        return {
            "username": f"user{i:05d}@example.com",
            "endpoint": {"host": host, "auth": {"method": "password", "secretRef": {"name": "creds"}}},
        }

    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailboxSync",
        "metadata": {
            "name": f"user{i:05d}-example-com-0123abcd",
            "labels": {"mailferry.io/migration": "fanout", "app.kubernetes.io/managed-by": "mailferry"},
        },
        "spec": {
            "source": side("imap.old.example.net"),
            "destination": side("imap.new.example.org"),
            "secretKey": f"user{i:05d}_example.com",
            "migrationRef": {"name": "fanout"},
            "folders": folders,
        },
    }


def etcd_bytes(etcd_url: str) -> tuple[int, int]:
    """(objects, bytes of their values) under the namespace's MailboxSync prefix."""
    prefix = f"/registry/mailferry.io/mailboxsyncs/{NS}/".encode()
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    r = httpx.post(
        f"{etcd_url}/v3/kv/range",
        json={"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()},
        timeout=120,
    )
    r.raise_for_status()
    kvs = r.json().get("kvs", [])
    return len(kvs), sum(len(base64.b64decode(kv["value"])) for kv in kvs)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    typical = sys.argv[2:] == ["typical"]
    folders: dict[str, Any] = {"exclude": ["Junk", "Trash"]} if typical else worst_case_folders()
    with tempfile.TemporaryDirectory() as root:
        api = start_envtest(Path(root), find_bin_dir())
        try:
            api.install_crds()
            api.kubectl("create", "namespace", NS)
            started = time.monotonic()
            for first in range(0, count, 250):
                items = [mailbox_sync(i, folders) for i in range(first, min(count, first + 250))]
                api.kubectl(
                    "create",
                    "-n",
                    NS,
                    "-f",
                    "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                    timeout=600,
                )
            assert api.etcd_url is not None
            objects, stored = etcd_bytes(api.etcd_url)
            per = stored / max(objects, 1)
            print(f"folder selection: {len(json.dumps(folders))} bytes of JSON (bound: 8192 characters)")
            print(f"{objects} MailboxSyncs created in {time.monotonic() - started:.1f} s")
            print(f"etcd values: {stored} bytes, {per:.0f} bytes per MailboxSync")
            what = "a typical folder selection" if typical else "worst case the schema allows"
            print(f"at 10,000 mailboxes: {per * 10_000 / 1e6:.0f} MB ({what})")
            unbounded = 900_000 * 10_000
            print(f"before the bound, a 0.9 MB include at 10,000 mailboxes: {unbounded / 1e9:.0f} GB")
        finally:
            api.stop()


if __name__ == "__main__":
    main()
