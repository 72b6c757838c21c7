"""IMAP endpoint, credentials and folder selection: what both MailMigration and MailboxSync carry."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .common import HOST_PATTERN, ApiModel, SecretKey, SecretRef

Security = Literal["tls", "starttls", "none"]
AuthMethod = Literal["password", "xoauth2", "master-user"]
OAuth2Provider = Literal["static", "google", "microsoft"]
FolderStrategy = Literal["all", "standard", "inboxOnly"]
Provider = Literal["generic", "gmail", "microsoft365"]


class OAuth2(ApiModel):
    """Where XOAUTH2 access tokens come from. Secret keys name entries of auth.secretRef."""

    provider: OAuth2Provider = "static"
    """static: a ready token in `tokenKey`; google: a service account with domain-wide delegation; microsoft:
    client credentials of an Entra ID app."""
    token_key: SecretKey = "token"
    """Secret key holding a ready access token (provider static)."""
    service_account_key: SecretKey = "service-account.json"
    """Secret key holding the Google service-account JSON (provider google)."""
    client_id: str | None = Field(default=None, max_length=256)
    """Application (client) ID (provider microsoft)."""
    tenant_id: str | None = Field(default=None, max_length=256)
    """Directory (tenant) ID (provider microsoft)."""
    client_secret_key: SecretKey = "client-secret"
    """Secret key holding the client secret (provider microsoft)."""
    scope: str | None = Field(default=None, max_length=1024)
    """OAuth scope to request; default: the provider's IMAP scope."""
    token_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")
    """Token endpoint override; default: the provider's."""


class ImapAuth(ApiModel):
    """How to log in. Passwords live in `secretRef`; per mailbox under its secretKey.

    password:    key = mailbox secretKey (default: its address with '@' as '_')
    master-user: `masterUserKey`/`masterPasswordKey` hold the master login; logs in as user*master
    xoauth2:     see `oauth2`
    """

    method: AuthMethod = "password"
    """password, xoauth2 or master-user."""
    secret_ref: SecretRef
    """The Secret holding the passwords or keys; the operator reads only Secrets labelled
    mailferry.io/credentials=true."""
    master_user_key: SecretKey = "master-username"
    """Secret key holding the master user's login (method master-user)."""
    master_password_key: SecretKey = "master-password"
    """Secret key holding the master user's password (method master-user)."""
    master_separator: str = Field(default="*", min_length=1, max_length=4)
    """Put between user and master login (Dovecot: `*`)."""
    oauth2: OAuth2 | None = None
    """Where access tokens come from (method xoauth2)."""


class EndpointLimits(ApiModel):
    """The provider's limits for this side; an unset value takes the preset's (docs/providers.md)."""

    max_connections: int | None = Field(default=None, ge=1, le=64)
    """IMAP connections per mailbox at once on this side (caps connectionsPerMailbox)."""
    max_message_bytes: int | None = Field(default=None, ge=1)
    """Largest message this side takes (destination) or that is copied (source); larger ones are skipped
    as MessageTooLarge."""
    bytes_per_day: int | None = Field(default=None, ge=1)
    """IMAP bytes per mailbox and day on this side: downloads when source, uploads when destination."""
    messages_per_second: float | None = Field(default=None, ge=0.01, le=1000)
    """Messages per second per mailbox on this side."""


class ImapEndpoint(ApiModel):
    host: str = Field(
        min_length=1,
        max_length=253,
        pattern=HOST_PATTERN,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "host is immutable"}]
        },
    )
    """IMAP server host name or IP address; immutable."""
    port: int = Field(default=993, ge=1, le=65535)
    """IMAP port (993 for tls, 143 for starttls or none)."""
    security: Security = "tls"
    """tls (implicit TLS), starttls, or none (tests and trusted networks only)."""
    tls_verify: bool = True
    """Verify the server certificate and host name."""
    auth: ImapAuth
    """How to log in."""
    connect_timeout_seconds: int = Field(default=30, ge=1, le=600)
    """Seconds to wait for the TCP and TLS handshake."""
    read_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    """Seconds to wait for a server response before the connection is abandoned."""
    provider: Provider = "generic"
    """generic, gmail or microsoft365: the preset for folders, limits and flags (docs/providers.md)."""
    limits: EndpointLimits = EndpointLimits()
    """Override the preset's limits for this side."""
    provider_folders: bool = True
    """Apply the preset's folder rules (e.g. Gmail's Starred/Important views, Spam and Trash skipped);
    false copies folders as a generic server's."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    # has(): a MailboxSync is stored without the defaults (method: password)
                    "rule": "!has(self.auth.method) || self.auth.method != 'xoauth2'"
                    " || has(self.auth.oauth2)",
                    "message": "auth.oauth2 is required when auth.method is xoauth2",
                    "fieldPath": ".auth.oauth2",
                },
            ]
        }
    }


class FolderMapping(ApiModel):
    """Rename source folders: an RE2 pattern (linear time: no backreferences or lookaround) and a
    replacement (\\1 or \\g<name> groups), first match wins."""

    from_: str = Field(alias="from", min_length=1, max_length=1024)
    """Python regular expression matched against the whole source folder name."""
    to: str = Field(max_length=1024)
    """Replacement (\\1 for groups): the destination folder name."""


FolderPattern = Annotated[str, Field(min_length=1, max_length=1024)]
# Every MailboxSync carries a copy of its migration's folder selection: bound the copy, so 10,000
# mailboxes cannot turn one large spec into gigabytes in etcd (docs/reliability.md, "Bounded fan-out").
MAX_FOLDER_SELECTION_CHARS = 8192


class FolderSelection(ApiModel):
    strategy: FolderStrategy = "all"
    """all folders, standard (special-use folders and INBOX) or inboxOnly."""
    include: Annotated[list[FolderPattern], Field(max_length=256)] = []
    """Only folders matching one of these glob patterns (default: every folder the strategy picks)."""
    exclude: Annotated[list[FolderPattern], Field(max_length=256)] = []
    """Skip folders matching one of these glob patterns."""
    mappings: Annotated[list[FolderMapping], Field(max_length=256)] = []
    """Rename folders: the first matching mapping wins."""
    special_use_automap: bool = True
    """Map special-use folders (Sent, Drafts, Trash, Junk, Archive) to the destination's, whatever their
    names."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.include) ? self.include.map(p, p.size()).sum() : 0)"
                    " + (has(self.exclude) ? self.exclude.map(p, p.size()).sum() : 0)"
                    " + (has(self.mappings) ? self.mappings.map(m, m.from.size() + m.to.size()).sum() : 0)"
                    f" <= {MAX_FOLDER_SELECTION_CHARS}",
                    "message": f"folders: include, exclude and mappings together must stay within "
                    f"{MAX_FOLDER_SELECTION_CHARS} characters (every MailboxSync carries a copy)",
                },
            ]
        }
    }

    @model_validator(mode="after")
    def _bounded(self) -> FolderSelection:
        total = sum(map(len, self.include)) + sum(map(len, self.exclude))
        total += sum(len(m.from_) + len(m.to) for m in self.mappings)
        if total > MAX_FOLDER_SELECTION_CHARS:
            raise ValueError(
                f"include, exclude and mappings together hold {total} characters, more than "
                f"{MAX_FOLDER_SELECTION_CHARS} (every MailboxSync carries a copy)"
            )
        return self


DeletionMode = Literal["mirror", "keep"]


class DeletionSafety(ApiModel):
    """The cap on removals per folder and round: a source outage that empties a folder must not empty the
    destination. Above it the folder's removals wait (condition DeletionsHeld, Event) until the source
    has the messages again or the cap is raised."""

    max_percent: int = Field(
        default=25, ge=1, le=100, description="largest share of a folder's copies removed in one round"
    )
    always_allowed: int = Field(
        default=10, ge=0, description="removals per folder and round allowed whatever the share"
    )


class SyncOptions(ApiModel):
    """What to copy; shared by MailMigration (defaults for every mailbox) and MailboxSync."""

    folders: FolderSelection = FolderSelection()
    """Which folders to copy, and how to name them on the destination."""
    import_since: date | None = None
    """Copy only messages whose INTERNALDATE is on or after this date."""
    skip_duplicates: bool = False
    """Skip a message the destination folder already holds (same Message-ID and size)."""
    max_message_bytes: int | None = Field(default=None, ge=1)
    """Skip (and report) messages larger than this."""
    connections_per_mailbox: int = Field(default=2, ge=1, le=16)
    """IMAP connections per mailbox and side at once."""
    deletions: DeletionMode = Field(
        default="mirror",
        description=(
            "messages expunged on the source after mailferry copied them: `mirror` removes mailferry's "
            "copies in the next delta round (and moves them where the source moved them), `keep` leaves "
            "them. Mail that arrived at the destination by itself is never removed"
        ),
    )
    deletion_safety: DeletionSafety = DeletionSafety()
    """Cap on removals per folder and round when deletions are mirrored."""


def default_secret_key(username: str) -> str:
    """The Secret key that holds a mailbox's password when `secretKey` is unset: its login with '@' as '_'."""
    return username.replace("@", "_")
