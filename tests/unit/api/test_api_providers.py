"""Provider presets: each provider's defaults per side, and every one of them overridable."""

from __future__ import annotations

from typing import Any

import pytest

from mailferry_api.imap import EndpointLimits, FolderSelection, ImapEndpoint, SyncOptions
from mailferry_api.providers import effective_limits, with_presets
from mailferry_worker.plan import select_folder


def endpoint(provider: str = "generic", **kw: Any) -> ImapEndpoint:
    return ImapEndpoint.model_validate(
        {"host": "imap.example.org", "auth": {"secretRef": {"name": "s"}}, "provider": provider, **kw}
    )


@pytest.mark.parametrize(
    ("provider", "side", "expected"),
    [
        ("generic", "source", EndpointLimits()),
        ("generic", "destination", EndpointLimits()),
        ("gmail", "source", EndpointLimits(max_connections=15, bytes_per_day=2_500_000_000)),
        (
            "gmail",
            "destination",
            EndpointLimits(max_connections=15, max_message_bytes=35_651_584, bytes_per_day=500_000_000),
        ),
        ("microsoft365", "source", EndpointLimits(max_connections=16)),
        (
            "microsoft365",
            "destination",
            EndpointLimits(max_connections=16, max_message_bytes=45_000_000, messages_per_second=4.0),
        ),
    ],
)
def test_preset_limits_per_side(provider: str, side: Any, expected: EndpointLimits) -> None:
    assert effective_limits(endpoint(provider), side) == expected


def test_endpoint_limits_override_the_preset_one_by_one() -> None:
    gmail = endpoint("gmail", limits={"bytesPerDay": 1_000_000, "maxConnections": 2})
    assert effective_limits(gmail, "source") == EndpointLimits(max_connections=2, bytes_per_day=1_000_000)


@pytest.mark.parametrize(
    ("source", "destination", "options", "connections", "size"),
    [
        ("generic", "generic", {}, 2, None),
        ("generic", "microsoft365", {}, 2, 45_000_000),
        ("generic", "gmail", {"connectionsPerMailbox": 16}, 15, 35_651_584),
        ("microsoft365", "gmail", {}, 2, 35_651_584),
        # An explicit maxMessageBytes wins over the destination's preset, larger or smaller.
        ("generic", "microsoft365", {"maxMessageBytes": 60_000_000}, 2, 60_000_000),
        ("generic", "gmail", {"maxMessageBytes": 1_000}, 2, 1_000),
    ],
)
def test_options_with_both_presets(
    source: str, destination: str, options: dict[str, Any], connections: int, size: int | None
) -> None:
    got = with_presets(SyncOptions.model_validate(options), endpoint(source), endpoint(destination))
    assert (got.connections_per_mailbox, got.max_message_bytes) == (connections, size)


def test_an_explicit_connection_limit_lifts_the_cap() -> None:
    dst = endpoint("gmail", limits={"maxConnections": 40})
    got = with_presets(SyncOptions(connections_per_mailbox=16), endpoint(), dst)
    assert got.connections_per_mailbox == 16


@pytest.mark.parametrize(
    ("provider", "folder", "copied"),
    [
        ("gmail", "INBOX", True),
        ("gmail", "[Gmail]/Sent Mail", True),
        ("gmail", "[Gmail]/All Mail", True),
        ("gmail", "Work/Projects", True),
        ("gmail", "[Gmail]/Starred", False),
        ("gmail", "[Gmail]/Important", False),
        ("gmail", "[Gmail]/Spam", False),
        ("gmail", "[Gmail]/Trash", False),
        ("gmail", "[Gmail]/Bin", False),
        ("gmail", "Gmail", True),  # the glob's [ is literal: no character class matching plain names
        ("microsoft365", "Files", False),
        ("microsoft365", "Sync Issues/Conflicts", False),
        ("microsoft365", "Sent Items", True),
        ("generic", "[Gmail]/Spam", True),
        ("generic", "Files", True),
    ],
)
def test_source_folder_rules(provider: str, folder: str, copied: bool) -> None:
    got = with_presets(SyncOptions(), endpoint(provider), endpoint())
    assert select_folder(folder, None, got.folders) is copied


def test_folder_rules_off_and_user_rules_kept() -> None:
    user = SyncOptions(folders=FolderSelection(exclude=["Old/*"]))
    off = with_presets(user, endpoint("gmail", providerFolders=False), endpoint())
    assert off.folders.exclude == ["Old/*"]
    on = with_presets(user, endpoint("gmail"), endpoint())
    assert on.folders.exclude[0] == "Old/*" and select_folder("Old/x", None, on.folders) is False
    assert select_folder("[Gmail]/Spam", None, off.folders) is True


def test_presets_keep_the_spec_type_and_the_rest_of_it() -> None:
    from mailferry_api.mailboxsync import MailboxSyncSpec

    spec = MailboxSyncSpec.model_validate(
        {
            "source": {"endpoint": endpoint("gmail").to_api(), "username": "a@example.org"},
            "destination": {"endpoint": endpoint("microsoft365").to_api(), "username": "a@example.org"},
            "secretKey": "a_example.org",
            "deletions": "keep",
        }
    )
    got = with_presets(spec, spec.source.endpoint, spec.destination.endpoint)
    assert isinstance(got, MailboxSyncSpec)
    kept = (got.deletions, got.max_message_bytes, got.source.username)
    assert kept == ("keep", 45_000_000, "a@example.org")


def test_no_deletion_mirroring_from_a_source_with_labels() -> None:
    mirror = SyncOptions(deletions="mirror")
    assert with_presets(mirror, endpoint("gmail"), endpoint()).deletions == "keep"
    assert with_presets(mirror, endpoint(), endpoint("gmail")).deletions == "mirror"
    assert with_presets(mirror, endpoint("microsoft365"), endpoint()).deletions == "mirror"


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="provider"):
        endpoint("yahoo")
