"""MailMigration checks the CRD schema cannot express (pure; the handler does the I/O around them).

Each check returns a `Problem` (a CamelCase reason and a message that names the field or object to
fix) or None. A problem blocks the whole migration before any MailboxSync or Job exists: the handler
reports it as `Validated=False` and tries again when the spec or the referenced objects change.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date

from mailferry_api import egress
from mailferry_api.folder_regex import MappingPatternError, compile_mapping
from mailferry_api.imap import FolderSelection, ImapEndpoint
from mailferry_api.mailmigration import MailboxEntry, MailMigrationSpec, WorkerSpec
from mailferry_api.problems import Problem

from .durations import parse_duration

# A delta round every few seconds already means a Job (a pod) after another; zero is a busy loop.
MIN_DELTA_SECONDS = 5.0
# Secret types whose keys Kubernetes fixes; mailferry reads its own key names (see messages).
_FIXED_KEY_TYPES = {
    "kubernetes.io/basic-auth": "username/password",
    "kubernetes.io/ssh-auth": "ssh-privatekey",
    "kubernetes.io/tls": "tls.crt/tls.key",
    "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
    "kubernetes.io/dockercfg": ".dockercfg",
    "kubernetes.io/service-account-token": "token/ca.crt/namespace",
    "bootstrap.kubernetes.io/token": "token-id/token-secret",
}
_GROUP_REF = re.compile(r"\\(?:(\d{1,2})|g<([^>]*)>)")


# ------------------------------------------------------------------------------------- spec fields
def folder_mapping_problem(folders: FolderSelection) -> Problem | None:
    """Every `from` compiles on RE2 (the engine the worker runs: linear time, so no pattern can keep a
    worker busy), every `\\N` / `\\g<name>` in `to` exists, no two constant mappings send different
    folders into one destination folder."""
    constant_targets: dict[str, int] = {}
    for i, m in enumerate(folders.mappings):
        field = f"spec.folders.mappings[{i}]"
        try:
            pattern = compile_mapping(m.from_)
        except MappingPatternError as exc:
            return Problem(
                "InvalidFolderMapping",
                f"{field}.from {m.from_[:80]!r} is not a valid RE2 regular expression ({exc}): "
                "backreferences and lookaround are not supported",
            )
        refs = list(_GROUP_REF.finditer(m.to))
        for ref in refs:
            number, name = ref.group(1), ref.group(2)
            ok = (
                (number is not None and int(number) <= pattern.groups)
                or (name is not None and name.isdigit() and int(name) <= pattern.groups)
                or (name is not None and name in pattern.groupindex)
            )
            if not ok:
                return Problem(
                    "InvalidFolderMapping",
                    f"{field}.to {m.to[:80]!r} refers to group {ref.group(0)!r} but "
                    f"{field}.from has {pattern.groups} group(s)",
                )
        if not refs:
            target = m.to.strip("/")
            target = "INBOX" if target.upper() == "INBOX" else target
            if target in constant_targets:
                first = constant_targets[target]
                return Problem(
                    "FolderMappingConflict",
                    f"spec.folders.mappings[{first}] and {field} both map into the folder {m.to[:80]!r}: "
                    "two source folders in one destination folder cannot be told apart after a crash "
                    "(their messages would be matched against each other); map them to different folders",
                )
            constant_targets[target] = i
    return None


def delta_interval_problem(spec: MailMigrationSpec) -> Problem | None:
    seconds = parse_duration(spec.delta_interval)
    if seconds < MIN_DELTA_SECONDS:
        return Problem(
            "InvalidSpec",
            f"spec.deltaInterval {spec.delta_interval} is below the minimum of {MIN_DELTA_SECONDS:.0f}s: "
            "every delta round starts worker Jobs; use 5s or more (15m is the default)",
        )
    return None


def import_since_problem(spec: MailMigrationSpec, today: date) -> Problem | None:
    if spec.import_since is not None and spec.import_since > today:
        return Problem(
            "InvalidSpec",
            f"spec.importSince {spec.import_since.isoformat()} is in the future: no message would be "
            "copied; use a past date or remove the field",
        )
    return None


def spec_problem(spec: MailMigrationSpec, today: date) -> Problem | None:
    """The first problem of the spec alone (no Secrets, no servers, no inventory)."""
    for check in (
        folder_mapping_problem(spec.folders),
        delta_interval_problem(spec),
        import_since_problem(spec, today),
    ):
        if check is not None:
            return check
    return None


# ---------------------------------------------------------------------------- source == destination
def normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def same_server(
    source: ImapEndpoint, destination: ImapEndpoint, source_addrs: Iterable[str], dest_addrs: Iterable[str]
) -> bool:
    """Same port and the same host: equal names, or names that resolve to a common address."""
    if source.port != destination.port:
        return False
    if normal_host(source.host) == normal_host(destination.host):
        return True
    return bool(set(source_addrs) & set(dest_addrs))


def self_copy_problem(spec: MailMigrationSpec, entries: Sequence[MailboxEntry], same: bool) -> Problem | None:
    """On one server, a mailbox whose destination login is its source login would be copied onto itself."""
    if not same:
        return None
    looping = [e.source for e in entries if (e.destination or e.source).lower() == e.source.lower()]
    if not looping:
        return None
    more = f" and {len(looping) - 1} more" if len(looping) > 1 else ""
    return Problem(
        "SourceIsDestination",
        f"spec.source and spec.destination are the same server ({spec.source.host}:{spec.source.port} and "
        f"{spec.destination.host}:{spec.destination.port}) and mailbox {looping[0]}{more} would be copied "
        "onto itself; refusing to start: give each mailbox a different destination login or fix the hosts",
    )


# ------------------------------------------------------------------------------------------- Secrets
def decode_values(raw: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Secret `.data` -> (text values with trailing CR/LF removed, keys that are not UTF-8 text).

    A trailing newline (`echo pw > file; kubectl create secret --from-file`) is removed, as the worker
    removes it from the mounted file: passwords never end in a newline."""
    values: dict[str, str] = {}
    not_text: list[str] = []
    for key, value in raw.items():
        try:
            values[key] = base64.b64decode(value, validate=True).decode("utf-8").rstrip("\r\n")
        except (binascii.Error, ValueError):
            not_text.append(key)
    return values, not_text


def _type_hint(secret_type: str | None) -> str:
    if secret_type and secret_type in _FIXED_KEY_TYPES:
        return (
            f" (it is a {secret_type} Secret: mailferry does not use its "
            f"{_FIXED_KEY_TYPES[secret_type]} keys; use an Opaque Secret with the keys named here)"
        )
    return ""


def key_problem(
    side: str,
    secret: str,
    secret_type: str | None,
    values: Mapping[str, str],
    not_text: Sequence[str],
    key: str,
    field: str,
) -> Problem | None:
    """Is `key` usable: present, UTF-8, not empty? `field` is the spec field that names the key."""
    if key in not_text:
        return Problem(
            "SecretValueInvalid",
            f"{side} Secret {secret} key {key} ({field}) is not UTF-8 text",
        )
    if key not in values:
        return Problem(
            "SecretKeyMissing",
            f"{side} Secret {secret} has no key {key} ({field}){_type_hint(secret_type)}",
        )
    if not values[key].strip():
        return Problem("SecretValueEmpty", f"{side} Secret {secret} key {key} ({field}) is empty")
    return None


def endpoint_secret_problem(
    side: str,
    endpoint: ImapEndpoint,
    secret_type: str | None,
    values: Mapping[str, str],
    not_text: Sequence[str],
) -> Problem | None:
    """Keys every mailbox of this side needs (master user, OAuth2); per-mailbox keys are checked apart."""
    auth = endpoint.auth
    name = auth.secret_ref.name
    wanted: list[tuple[str, str]] = []
    if auth.method == "master-user":
        wanted = [
            (auth.master_user_key, f"spec.{side}.auth.masterUserKey"),
            (auth.master_password_key, f"spec.{side}.auth.masterPasswordKey"),
        ]
    elif auth.method == "xoauth2" and auth.oauth2 is not None:
        o = auth.oauth2
        if o.provider == "static":
            wanted = [(o.token_key, f"spec.{side}.auth.oauth2.tokenKey")]
        elif o.provider == "google":
            wanted = [(o.service_account_key, f"spec.{side}.auth.oauth2.serviceAccountKey")]
        else:
            wanted = [(o.client_secret_key, f"spec.{side}.auth.oauth2.clientSecretKey")]
    for key, field in wanted:
        problem = key_problem(side, name, secret_type, values, not_text, key, field)
        if problem is not None:
            return problem
    return None


def mailbox_key_field(entry: MailboxEntry) -> str:
    if entry.secret_key:
        return f"the secretKey of mailbox {entry.source}"
    return f"the password of {entry.source}: its login with '@' as '_', or set the mailbox's secretKey"


def token_url_problem(spec: MailMigrationSpec, allowlist: Iterable[str]) -> Problem | None:
    """An OAuth2 tokenUrl receives the client secret or a signed assertion: only URLs the installer
    allows (mailferry_api.egress), refused before any login is tried."""
    for side, endpoint in (("source", spec.source), ("destination", spec.destination)):
        oauth2 = endpoint.auth.oauth2
        if endpoint.auth.method == "xoauth2" and oauth2 is not None and oauth2.token_url:
            found = egress.url_problem(oauth2.token_url, allowlist, f"spec.{side}.auth.oauth2.tokenUrl")
            if found is not None:
                return found
    return None


# ------------------------------------------------------------------------------------------- worker
def worker_problem(
    worker: WorkerSpec,
    installed_image: str,
    installed_account: str,
    allowed_images: Collection[str],
    allowed_accounts: Collection[str],
) -> Problem | None:
    """A MailMigration is a request to run pods: their image and ServiceAccount are the installation's
    (`installed_*`, what an unset field means) or ones the installer allowed (chart values
    workerPolicy.allowedImages / allowedServiceAccounts); anything else is WorkerNotAllowed."""
    image, account = worker.image, worker.service_account_name
    if image and image != installed_image and image not in allowed_images:
        return Problem(
            "WorkerNotAllowed",
            f"spec.worker.image {image[:200]} is not an image this installation allows (chart values "
            "image.* and workerPolicy.allowedImages); remove it to use the installation's image",
        )
    if account and account != installed_account and account not in allowed_accounts:
        return Problem(
            "WorkerNotAllowed",
            f"spec.worker.serviceAccountName {account} is not a ServiceAccount this installation allows "
            "(chart values serviceAccount.worker.name and workerPolicy.allowedServiceAccounts); remove it",
        )
    return None
