"""Validation's Secret reads (`kube.client.read_secret_values`) on the real API server: readers that
overlap share one GET and one decoded copy, which is dropped shortly after; a missing Secret is None."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest

from fixtures.kubeapi import KubeAPI
from mailferry_operator.kube import client


@pytest.fixture
def operator_client(kube: KubeAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    monkeypatch.setattr(client, "_api", None)
    monkeypatch.setattr(client, "SECRET_SHARE_SECONDS", 0.3)
    yield


def test_overlapping_reads_share_one_decoded_copy_then_forget_it(
    kube: KubeAPI, namespace: str, operator_client: None
) -> None:
    data = {f"u{i}_example.test": base64.b64encode(f"pw-{i}\n".encode()).decode() for i in range(2000)}
    data["binary"] = base64.b64encode(b"\xff\xfe").decode()
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "creds",
                "namespace": namespace,
                "labels": {"mailferry.io/credentials": "true"},
            },
            "data": data,
        }
    )

    async def go() -> None:
        try:
            burst = await asyncio.gather(*(client.read_secret_values(namespace, "creds") for _ in range(20)))
            first = burst[0]
            assert first is not None and all(r is first for r in burst)  # one copy for all 20 readers
            assert first.values["u7_example.test"] == "pw-7" and first.not_text == ("binary",)
            assert (namespace, "creds") in client._secret_reads
            await asyncio.sleep(0.6)
            assert (namespace, "creds") not in client._secret_reads  # not kept beyond the window
            again = await client.read_secret_values(namespace, "creds")
            assert again is not first and again == first
            missing = await asyncio.gather(*(client.read_secret_values(namespace, "nope") for _ in range(3)))
            assert missing == [None, None, None]
        finally:
            await client.close()

    asyncio.run(go())
