"""The operator's create path for many objects at once (`kube.client.create_custom`: serialised once,
the answer not parsed) on the real API server: many MailboxSyncs at once are created with the operator's
field manager, a second create of one says False (409), a refused one raises KubeError with the API's
status and reason and no body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures.kubeapi import KubeAPI
from mailferry_kube.client import KubeError
from mailferry_operator.kube import client


@pytest.fixture
def operator_client(kube: KubeAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setattr(client, "_api", None)
    yield


def mailbox_sync(name: str, username: str) -> dict[str, Any]:
    side = {
        "endpoint": {
            "host": "127.0.0.1",
            "port": 1143,
            "security": "none",
            "auth": {"method": "password", "secretRef": {"name": "creds"}},
        },
        "username": username,
    }
    return {
        "apiVersion": "mailferry.io/v1alpha1",
        "kind": "MailboxSync",
        "metadata": {"name": name, "labels": {"mailferry.io/migration": "bulk"}},
        "spec": {"source": side, "destination": side, "secretKey": "k"},
    }


def test_bulk_creates_then_409_then_a_refusal(kube: KubeAPI, namespace: str, operator_client: None) -> None:
    names = [f"m{i}" for i in range(40)]

    async def go() -> tuple[list[bool], bool, KubeError]:
        try:
            created = await asyncio.gather(
                *(
                    client.create_custom(namespace, "mailboxsyncs", mailbox_sync(n, f"{n}@example.test"))
                    for n in names
                )
            )
            other = mailbox_sync("m3", "x@example.test")
            again = await client.create_custom(namespace, "mailboxsyncs", other)
            bad = mailbox_sync("bad", "secret-looking@example.test")
            bad["spec"]["source"]["endpoint"]["port"] = "not-a-port"
            with pytest.raises(KubeError) as refused:
                await client.create_custom(namespace, "mailboxsyncs", bad)
            return created, again, refused.value
        finally:
            await client.close()

    created, again, refused = asyncio.run(go())
    assert created == [True] * len(names)
    assert again is False
    assert refused.status == 422 and refused.reason == "Invalid"
    assert "secret-looking" not in str(refused)  # the message names the path and the API's reason only
    listed = json.loads(
        kube.kubectl("get", "mailboxsyncs", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )
    found = {item["metadata"]["name"]: item for item in listed["items"]}
    assert sorted(found) == sorted(names)
    assert found["m3"]["spec"]["source"]["username"] == "m3@example.test"  # the 409 changed nothing
    managers = {m["manager"] for item in found.values() for m in item["metadata"]["managedFields"]}
    assert managers == {"mailferry-operator"}
