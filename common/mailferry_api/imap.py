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


class OAuth2(ApiModel):
    """Where XOAUTH2 access tokens come from. Secret keys name entries of auth.secretRef."""

    provider: OAuth2Provider = "static"
    token_key: SecretKey = "token"
    service_account_key: SecretKey = "service-account.json"
    client_id: str | None = Field(default=None, max_length=256)
    tenant_id: str | None = Field(default=None, max_length=256)
    client_secret_key: SecretKey = "client-secret"
    scope: str | None = Field(default=None, max_length=1024)
    token_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://")


class ImapAuth(ApiModel):
    """How to log in. Passwords live in `secretRef`; per mailbox under its secretKey.

    password:    key = mailbox secretKey (default: its address with '@' as '_')
    master-user: `masterUserKey`/`masterPasswordKey` hold the master login; logs in as user*master
    xoauth2:     see `oauth2`
    """

    method: AuthMethod = "password"
    secret_ref: SecretRef
    master_user_key: SecretKey = "master-username"
    master_password_key: SecretKey = "master-password"
    master_separator: str = Field(default="*", min_length=1, max_length=4)
    oauth2: OAuth2 | None = None


class ImapEndpoint(ApiModel):
    host: str = Field(
        min_length=1,
        max_length=253,
        pattern=HOST_PATTERN,
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "host is immutable"}]
        },
    )
    port: int = Field(default=993, ge=1, le=65535)
    security: Security = "tls"
    tls_verify: bool = True
    auth: ImapAuth
    connect_timeout_seconds: int = Field(default=30, ge=1, le=600)
    read_timeout_seconds: int = Field(default=120, ge=1, le=3600)

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.auth.method != 'xoauth2' || has(self.auth.oauth2)",
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
    to: str = Field(max_length=1024)


FolderPattern = Annotated[str, Field(min_length=1, max_length=1024)]
# Every MailboxSync carries a copy of its migration's folder selection: bound the copy, so 10,000
# mailboxes cannot turn one large spec into gigabytes in etcd (docs/reliability.md, "Bounded fan-out").
MAX_FOLDER_SELECTION_CHARS = 8192


class FolderSelection(ApiModel):
    strategy: FolderStrategy = "all"
    include: Annotated[list[FolderPattern], Field(max_length=256)] = []
    exclude: Annotated[list[FolderPattern], Field(max_length=256)] = []
    mappings: Annotated[list[FolderMapping], Field(max_length=256)] = []
    special_use_automap: bool = True

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
    import_since: date | None = None
    skip_duplicates: bool = False
    max_message_bytes: int | None = Field(default=None, ge=1)
    connections_per_mailbox: int = Field(default=2, ge=1, le=16)
    deletions: DeletionMode = Field(
        default="mirror",
        description=(
            "messages expunged on the source after mailferry copied them: `mirror` removes mailferry's "
            "copies in the next delta round (and moves them where the source moved them), `keep` leaves "
            "them. Mail that arrived at the destination by itself is never removed"
        ),
    )
    deletion_safety: DeletionSafety = DeletionSafety()


def default_secret_key(username: str) -> str:
    """The Secret key that holds a mailbox's password when `secretKey` is unset: its login with '@' as '_'."""
    return username.replace("@", "_")
