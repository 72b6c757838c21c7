"""A tenant gets no more than it had (issue 14), the pure parts: the egress allowlist, RE2 folder
mappings, the bounded folder selection, the public-suffix check."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from mailferry_api import egress
from mailferry_api.folder_regex import MappingPatternError, compile_mapping, map_folder
from mailferry_api.imap import MAX_FOLDER_SELECTION_CHARS, FolderSelection


@pytest.mark.parametrize(
    ("url", "allow", "ok"),
    [
        ("https://oauth2.googleapis.com/token", (), True),  # the providers' own endpoints
        ("https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token", (), True),
        ("https://api.cloudflare.com/client/v4", (), True),
        ("https://api.cloudflare.com/other", (), False),  # outside the allowed path
        ("http://127.0.0.1:8081", (), False),
        ("http://127.0.0.1:8081", ("http://127.0.0.1:8081",), True),
        ("http://127.0.0.1:8081/api/v1", ("http://127.0.0.1:8081",), True),
        ("http://127.0.0.1:8082", ("http://127.0.0.1:8081",), False),  # another port
        ("https://127.0.0.1:8081", ("http://127.0.0.1:8081",), False),  # another scheme
        ("http://prom.monitoring.svc:9090/prom", ("http://prom.monitoring.svc:9090/prom",), True),
        ("http://prom.monitoring.svc:9090/prometheus", ("http://prom.monitoring.svc:9090/prom",), False),
        ("http://prom.monitoring.svc:9090/prom/../admin", ("http://prom.monitoring.svc:9090/prom",), False),
        ("http://prom.monitoring.svc:9090/prom/%2e%2e/x", ("http://prom.monitoring.svc:9090/prom",), False),
        ("https://pdns.dns.example.com", ("https://*.example.com",), True),
        ("https://evil-example.com", ("https://*.example.com",), False),
        ("http://u:p@127.0.0.1:8081", ("http://127.0.0.1:8081",), False),  # user info
        ("http://127.0.0.1:8081/?x=1", ("http://127.0.0.1:8081",), False),  # query
        ("ftp://127.0.0.1", ("ftp://127.0.0.1",), False),
        ("http://127.0.0.1:40123/api/v1", ("http://127.0.0.1:*",), True),  # any port of a host
        ("http://127.0.0.2:40123", ("http://127.0.0.1:*",), False),
        ("http://127.0.0.1:*", ("http://127.0.0.1:*",), False),  # a wildcard is no spec value
    ],
)
def test_egress_allowlist(url: str, allow: tuple[str, ...], ok: bool) -> None:
    assert egress.allowed(url, allow) is ok


def test_egress_problem_names_the_origin_and_the_setting_never_user_info() -> None:
    found = egress.url_problem("http://127.0.0.1:9/token", (), "spec.source.auth.oauth2.tokenUrl")
    assert found is not None and found.reason == "EgressNotAllowed"
    assert "spec.source.auth.oauth2.tokenUrl (http://127.0.0.1:9/token)" in found.message
    assert "MAILFERRY_EGRESS_ALLOW" in found.message and "egress.allowedUrls" in found.message
    hidden = egress.url_problem("http://user:hunter2@127.0.0.1:9/", (), "f")
    assert hidden is not None and "hunter2" not in hidden.message


def test_folder_mappings_run_in_linear_time() -> None:
    """`^(a+)+$` on a 33-character name kept Python's re busy for over 15 s: RE2 answers at once."""
    name = "a" * 33 + "!"
    started = time.perf_counter()
    assert map_folder(r"^(a+)+$", "X", name) is None
    elapsed = time.perf_counter() - started
    print(f"RE2 ^(a+)+$ on {len(name)} characters: {elapsed * 1e6:.0f} us")
    assert map_folder(r"^Archive/(?P<y>\d+)/(.*)$", r"Old/\g<y>/\2", "Archive/2020/Q1") == "Old/2020/Q1"
    assert map_folder("Sent Items", "Sent", "Sent Items") == "Sent"


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)b", r"(?<!x)y", "("])
def test_patterns_re2_cannot_run_are_refused_with_its_reason(pattern: str) -> None:
    with pytest.raises(MappingPatternError) as err:
        compile_mapping(pattern)
    assert str(err.value)


def test_folder_selection_is_bounded_in_total() -> None:
    FolderSelection(include=["x" * 1000] * 8)
    with pytest.raises(ValidationError) as err:
        FolderSelection(include=["x" * 1000] * 9)
    assert str(MAX_FOLDER_SELECTION_CHARS) in str(err.value)
    with pytest.raises(ValidationError):
        FolderSelection(include=["x" * 1025])  # one pattern
