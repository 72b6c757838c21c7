"""The `make bench` harness works: tiny corpus (2 users x 20 messages), real Dovecot pair, real peers.

Asserts completeness and fidelity of what the harness measures, never timings.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.bench.corpus import CorpusParams, load_or_generate  # noqa: E402
from tests.bench.harness import BenchServers  # noqa: E402
from tests.bench.mailferry_runner import mailferry_available  # noqa: E402
from tests.bench.run import run_mailferry, run_peer, table, targets  # noqa: E402
from tests.fixtures.dovecot import Dovecot  # noqa: E402

TINY = CorpusParams(users=2, messages=20)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture
def servers(cache: Path, tmp_path: Path) -> Iterator[BenchServers]:
    corpus = load_or_generate(TINY, cache, log=False)
    s = BenchServers(corpus, TINY.user_names(), tmp_path / "bench")
    try:
        yield s.start()
    finally:
        s.stop()


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_corpus_is_deterministic_and_matches_the_mix(cache: Path, tmp_path: Path) -> None:
    a = load_or_generate(TINY, cache, log=False)
    b = load_or_generate(TINY, tmp_path / "other-cache", log=False)
    assert a.path.name == b.path.name
    assert _digest(a.path) == _digest(b.path)
    assert a.messages == 40
    for user in TINY.user_names():
        files = [p for p in a.maildir(user).rglob("*,S=*") if p.is_file()]
        assert len(files) == 20
        assert sum(a.users[user].folders.values()) == 20
        for f in files:
            size = int(f.name.split(",S=")[1].split(",")[0])
            assert size == f.stat().st_size
            assert b"Message-ID: <" in f.read_bytes()[:2000]
    other = load_or_generate(CorpusParams(users=2, messages=20, seed=7), cache, log=False)
    assert _digest(other.path) != _digest(a.path)


def test_seeded_source_matches_the_manifest(servers: BenchServers) -> None:
    for user in servers.users:
        status = servers.source.mailbox_status(user, "messages")
        for folder, n in servers.corpus.users[user].folders.items():
            assert status[folder]["messages"] == n, (user, folder)
    # \Seen and keywords came through the maildir file names and dovecot-keywords
    flags = servers.flag_summary(servers.source, servers.users[0])
    seen = " ".join(k[1] for k in flags)
    assert "\\Seen" in seen


def test_verify_notices_a_missing_copy(servers: BenchServers) -> None:
    servers.wipe_destination()
    problems = servers.verify()
    assert problems, "an empty destination must not verify as complete"


def _system_flags(servers: BenchServers, server: Dovecot, user: str) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for (folder, flags), n in servers.flag_summary(server, user).items():
        key = (folder, " ".join(f for f in flags.split() if f.startswith("\\")))
        out[key] = out.get(key, 0) + n
    return out


@pytest.mark.parametrize("tool", ["mbsync", "doveadm-backup"])
def test_peer_copies_everything_and_delta_is_a_no_op(
    servers: BenchServers, tool: str, tmp_path: Path
) -> None:
    results = run_peer(servers, tool, tmp_path / "tools", concurrency=4, repeats=1)
    assert [(r.tool, r.phase) for r in results] == [(tool, "bulk"), (tool, "delta")]
    for r in results:
        assert r.complete, r.problems
        assert r.messages == 40
    assert servers.verify() == []
    assert servers.internaldate_differences() == 0
    if tool == "doveadm-backup":
        assert servers.flag_differences() == []  # dsync keeps flags and keywords
    else:
        # isync 1.4 propagates system flags (user keywords are not synced by that version)
        for user in servers.users:
            assert _system_flags(servers, servers.source, user) == _system_flags(
                servers, servers.destination, user
            )
    rendered = table(results)
    assert tool in rendered and "INCOMPLETE" not in rendered
    assert {t for t, _s, _d in targets(results)} == {
        "bulk >= 1.0x doveadm backup",
        "no-op delta no slower than mbsync",
        "peak RSS <= 150 MB",
    }


def test_mailferry_copies_everything(servers: BenchServers, tmp_path: Path) -> None:
    ok, why = mailferry_available()
    if not ok:
        pytest.skip(f"mailferry-worker not available yet: {why}")
    results = run_mailferry(servers, tmp_path / "tools", concurrency=4, repeats=1)
    for r in results:
        assert r.complete, r.problems
    assert servers.verify() == []
