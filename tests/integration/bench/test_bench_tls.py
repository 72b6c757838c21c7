"""`make bench-tls`: every tool copies a tiny corpus over implicit TLS (IMAPS) with verified certificates, and
the TLS run's section of docs/benchmarks.md and the plaintext run's part leave each other alone.

Asserts what the harness measures (complete copies, TLS logins), never timings.
"""

from __future__ import annotations

import re
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
from tests.bench.run import (  # noqa: E402
    TLS_BEGIN,
    TLS_END,
    run_mailferry,
    run_peer,
    write_doc,
    write_tls_section,
)
from tests.fixtures.dovecot import Dovecot  # noqa: E402

TINY = CorpusParams(users=2, messages=20)
LOGIN = re.compile(r"imap-login: Info: Login: user=<([^>]*)>.*")


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchServers]:
    corpus = load_or_generate(TINY, tmp_path_factory.mktemp("bench-tls-cache"), log=False)
    servers = BenchServers(corpus, TINY.user_names(), tmp_path_factory.mktemp("bench-tls"), tls=True)
    try:
        yield servers.start()
    finally:
        servers.stop()


def _logins_since(server: Dovecot, offset: int) -> list[tuple[str, bool]]:
    """(user, over TLS) of each login the server logged after ``offset`` bytes of its log."""
    with open(server.log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    return [(m.group(1), ", TLS," in m.group(0)) for m in LOGIN.finditer(text)]


def _log_size(server: Dovecot) -> int:
    return server.log_path.stat().st_size if server.log_path.exists() else 0


@pytest.mark.parametrize("tool", ["mbsync", "doveadm-backup", "mailferry"])
def test_each_tool_copies_everything_over_verified_tls(
    tls_servers: BenchServers, tool: str, tmp_path: Path
) -> None:
    if tool == "mailferry":
        ok, why = mailferry_available()
        if not ok:
            pytest.skip(f"mailferry-worker not available: {why}")
    sides = (
        [tls_servers.source] if tool == "doveadm-backup" else [tls_servers.source, tls_servers.destination]
    )
    before = {s.name: _log_size(s) for s in sides}
    if tool == "mailferry":
        results = run_mailferry(tls_servers, tmp_path / "tools", concurrency=2, repeats=1)
    else:
        results = run_peer(tls_servers, tool, tmp_path / "tools", concurrency=2, repeats=1)
    for r in results:
        assert r.complete, r.problems
    assert tls_servers.verify() == []
    for server in sides:
        logins = _logins_since(server, before[server.name])
        # Every user logged in, and every login of the run was over TLS.
        assert {u for u, _ in logins} == set(tls_servers.users), (server.name, logins)
        assert all(tls for _, tls in logins), (server.name, logins)


def test_tls_section_and_plaintext_run_keep_each_other(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    write_doc(doc, "plain report one\n", 4)
    doc.write_text(doc.read_text() + "\n<!-- other:begin -->\nother bench\n<!-- other:end -->\n")
    write_tls_section(doc, "tls report one\n", 4)
    write_doc(doc, "plain report two\n", 4)
    text = doc.read_text()
    assert "plain report two" in text and "plain report one" not in text
    assert "tls report one" in text and "other bench" in text
    write_tls_section(doc, "tls report two\n", 4)
    text = doc.read_text()
    assert text.count(TLS_BEGIN) == 1 and text.count(TLS_END) == 1
    assert "tls report two" in text and "tls report one" not in text
    assert "plain report two" in text and "other bench" in text
    assert text.index("plain report two") < text.index(TLS_BEGIN)
