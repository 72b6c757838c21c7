"""Deterministic benchmark corpus, written as Dovecot maildirs and cached on disk.

The corpus is generated once per (seed, parameters) under ``~/.cache/mailferry/bench/`` and
seeded into a Dovecot instance by hard-linking the message files into the user's Maildir
(no IMAP round trips): flags travel in the maildir file name (``:2,FRS`` plus keyword letters)
and keywords in each folder's ``dovecot-keywords`` file; INTERNALDATE is the file mtime.

Default mix (per user): 1,000 messages over six folders; 70% 2-20 KB, 25% 20-200 KB,
5% 200 KB-3 MB with a base64 attachment; mixed \\Seen \\Answered \\Flagged \\Draft and keywords.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

CORPUS_VERSION = 3
CACHE_ROOT = Path(os.environ.get("MAILFERRY_BENCH_CACHE", Path.home() / ".cache" / "mailferry" / "bench"))

# (folder name as seen over IMAP, share of the messages). "Projects" exists as an empty parent.
FOLDERS: tuple[tuple[str, float], ...] = (
    ("INBOX", 0.40),
    ("Archive", 0.22),
    ("Sent", 0.15),
    ("Projects/2025", 0.09),
    ("Projects/2026", 0.08),
    ("Drafts", 0.06),
)
EMPTY_PARENTS = ("Projects",)
KEYWORDS = ("$Forwarded", "$Label1", "Work", "Personal", "$MDNSent")  # maildir letters a..e

_WORDS_TEXT = (
    "migration mailbox server folder project budget review meeting schedule deadline report "
    "quarter customer invoice contract release deploy cluster network storage backup restore "
    "update security policy access team planning design draft final approve change request "
    "the a an and or but with for from into over under about after before during between "
    "please thanks regards attached see below above note issue ticket status progress week "
    "monday tuesday wednesday thursday friday morning afternoon call agenda minutes action item "
    "owner follow up pending done blocked risk mitigation estimate cost revenue forecast sales "
    "marketing launch campaign feedback survey results analysis data metrics dashboard alert"
)
WORDS = tuple(_WORDS_TEXT.split())
FIRST = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "olivia",
)
DOMAINS = ("example.com", "example.org", "corp.example.net", "partner.example")
ATTACH_TYPES = (
    ("application/pdf", "pdf"),
    ("image/jpeg", "jpg"),
    ("application/zip", "zip"),
    ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
)


@dataclass(frozen=True)
class CorpusParams:
    seed: int = 20261125
    users: int = 10
    messages: int = 1000
    small: tuple[int, int] = (2_000, 20_000)
    medium: tuple[int, int] = (20_000, 200_000)
    large: tuple[int, int] = (200_000, 3_000_000)
    mix: tuple[float, float, float] = (0.70, 0.25, 0.05)

    def key(self) -> str:
        blob = json.dumps({"v": CORPUS_VERSION, **asdict(self)}, sort_keys=True).encode()
        return (
            f"corpus-v{CORPUS_VERSION}-s{self.seed}-u{self.users}-m{self.messages}-"
            + hashlib.sha256(blob).hexdigest()[:10]
        )

    def user_names(self) -> list[str]:
        return [f"bench{i:02d}" for i in range(1, self.users + 1)]


@dataclass
class UserManifest:
    name: str
    folders: dict[str, int] = field(default_factory=dict)  # IMAP folder name -> message count
    bytes: int = 0


@dataclass
class Corpus:
    params: CorpusParams
    path: Path
    users: dict[str, UserManifest]

    @property
    def messages(self) -> int:
        return sum(sum(u.folders.values()) for u in self.users.values())

    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.users.values())

    def password(self, user: str) -> str:
        return password_for(user)

    def maildir(self, user: str) -> Path:
        return self.path / user / "Maildir"


def password_for(user: str) -> str:
    return f"pw-{user}-bench"


def maildir_dir(root: Path, folder: str) -> Path:
    """Dovecot's default Maildir++ layout: INBOX at the root, ``a/b`` in ``.a.b``."""
    if folder == "INBOX":
        return root
    return root / ("." + folder.replace("/", "."))


# ------------------------------------------------------------------ message generation
class _Text:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.paragraphs = [self._paragraph() for _ in range(64)]

    def _paragraph(self) -> str:
        words = self.rng.choices(WORDS, k=self.rng.randint(30, 120))
        words[0] = words[0].capitalize()
        lines, line = [], ""
        for w in words:
            if len(line) + len(w) + 1 > 72:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}" if line else w
        lines.append(line + ".")
        return "\n".join(lines) + "\n\n"

    def body(self, size: int) -> str:
        out: list[str] = []
        n = 0
        while n < size:
            p = self.rng.choice(self.paragraphs)
            out.append(p)
            n += len(p)
        return "".join(out)


def _addr(rng: random.Random) -> str:
    name = rng.choice(FIRST)
    last = rng.choice(("Smith", "Jones", "Lee", "Garcia", "Müller"))
    return f"{name.capitalize()} {last} <{name}@{rng.choice(DOMAINS)}>"


def _encode_header_value(value: str) -> str:
    if value.isascii():
        return value
    return "=?utf-8?b?" + base64.b64encode(value.encode()).decode() + "?="


def _message(
    rng: random.Random, text: _Text, user: str, idx: int, size: int, kind: str, date: datetime
) -> bytes:
    boundary = f"=_mf_{rng.getrandbits(64):016x}"
    msgid = f"<{rng.getrandbits(80):020x}.{idx}@{user}.bench.example>"
    subject = f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {rng.choice(WORDS)} #{idx}"
    headers = [
        f"Return-Path: <{rng.choice(FIRST)}@{rng.choice(DOMAINS)}>",
        f"Received: from mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)} (mx.{rng.choice(DOMAINS)} "
        f"[192.0.2.{rng.randint(1, 254)}])\n\tby mail.bench.example with ESMTPS id "
        f"{rng.getrandbits(48):012X}\n"
        f"\tfor <{user}@bench.example>; {format_datetime(date)}",
        f"From: {_encode_header_value(_addr(rng))}",
        f"To: {user} <{user}@bench.example>",
        f"Subject: {subject}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: {msgid}",
        "MIME-Version: 1.0",
    ]
    if rng.random() < 0.3:
        headers.append(f"Cc: {_encode_header_value(_addr(rng))}")
    if rng.random() < 0.25:
        ref = f"<{rng.getrandbits(80):020x}@{rng.choice(DOMAINS)}>"
        headers += [f"In-Reply-To: {ref}", f"References: {ref}"]
    headers.append(f"X-Mailer: BenchMailer {rng.randint(1, 9)}.{rng.randint(0, 9)}")
    head = "\n".join(headers) + "\n"
    budget = max(200, size - len(head) - 300)
    if kind == "small":
        if rng.random() < 0.5:
            body = text.body(budget)
            return (
                head + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + body
            ).encode()
        plain = text.body(budget // 3)
        html = (
            "<html><body><p>"
            + text.body(budget - len(plain) - 40).replace("\n\n", "</p><p>")
            + "</p></body></html>\n"
        )
        return (
            head
            + f'Content-Type: multipart/alternative; boundary="{boundary}"\n\nThis is a MIME message.\n'
            + f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{plain}"
            + f"--{boundary}\nContent-Type: text/html; charset=utf-8\n\n{html}"
            + f"--{boundary}--\n"
        ).encode()
    # medium/large: text part plus one base64 attachment filling the rest
    plain = text.body(min(budget // 4, rng.randint(500, 6000)))
    raw_len = max(64, int((budget - len(plain)) * 57 / 77))
    ctype, ext = rng.choice(ATTACH_TYPES)
    payload = base64.encodebytes(rng.randbytes(raw_len)).decode()
    return (
        head
        + f'Content-Type: multipart/mixed; boundary="{boundary}"\n\nThis is a MIME message.\n'
        + f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{plain}"
        + f'--{boundary}\nContent-Type: {ctype}; name="file{idx}.{ext}"\n'
        + f'Content-Disposition: attachment; filename="file{idx}.{ext}"\n'
        + "Content-Transfer-Encoding: base64\n\n"
        + payload
        + f"--{boundary}--\n"
    ).encode()


def _flags(rng: random.Random, folder: str) -> str:
    letters: set[str] = set()
    if folder == "Drafts":
        letters.add("D")
        if rng.random() < 0.3:
            letters.add("S")
    elif folder == "Sent":
        letters.add("S")
    else:
        if rng.random() < 0.7:
            letters.add("S")
        if rng.random() < 0.15:
            letters.add("R")
        if rng.random() < 0.08:
            letters.add("F")
    for i, _kw in enumerate(KEYWORDS):
        if rng.random() < 0.06:
            letters.add(chr(ord("a") + i))
    upper = sorted(c for c in letters if c.isupper())
    lower = sorted(c for c in letters if c.islower())
    return "".join(upper + lower)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _generate_user(args: tuple[CorpusParams, str, str]) -> UserManifest:
    params, user, out_dir = args
    rng = random.Random(f"{params.seed}:{user}")
    text = _Text(rng)
    root = Path(out_dir) / user / "Maildir"
    for folder, _ in FOLDERS:
        d = maildir_dir(root, folder)
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if folder != "INBOX":
            (d / "maildirfolder").touch()
        (d / "dovecot-keywords").write_text("".join(f"{i} {kw}\n" for i, kw in enumerate(KEYWORDS)))
    for parent in EMPTY_PARENTS:
        d = maildir_dir(root, parent)
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "maildirfolder").touch()
    (root / "subscriptions").write_text(
        "".join(f"{f}\n" for f in sorted({f for f, _ in FOLDERS if f != "INBOX"} | set(EMPTY_PARENTS)))
    )
    names = [f for f, _ in FOLDERS]
    weights = [w for _, w in FOLDERS]
    manifest = UserManifest(user)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    span = (datetime(2026, 11, 1, tzinfo=UTC) - start).total_seconds()
    for idx in range(params.messages):
        folder = rng.choices(names, weights)[0]
        r = rng.random()
        if r < params.mix[0]:
            kind, size = "small", _log_uniform(rng, *params.small)
        elif r < params.mix[0] + params.mix[1]:
            kind, size = "medium", _log_uniform(rng, *params.medium)
        else:
            kind, size = "large", rng.randint(*params.large)
        date = start + timedelta(seconds=int(span * idx / params.messages) + rng.randint(0, 3600))
        data = _message(rng, text, user, idx, size, kind, date)
        flags = _flags(rng, folder)
        mtime = int(date.timestamp()) + rng.randint(1, 120)
        vsize = len(data) + data.count(b"\n")
        fname = f"{mtime}.M{idx:06d}P{params.seed % 100000}.bench,S={len(data)},W={vsize}:2,{flags}"
        path = maildir_dir(root, folder) / "cur" / fname
        path.write_bytes(data)
        os.chmod(path, 0o444)
        os.utime(path, (mtime, mtime))
        manifest.folders[folder] = manifest.folders.get(folder, 0) + 1
        manifest.bytes += len(data)
    for folder in names + list(EMPTY_PARENTS):
        manifest.folders.setdefault(folder, 0)
    return manifest


def load_or_generate(params: CorpusParams, cache_root: Path = CACHE_ROOT, log: bool = True) -> Corpus:
    """Return the cached corpus for ``params``, generating it (one process per CPU) if missing."""
    path = cache_root / params.key()
    manifest_path = path / "manifest.json"
    if manifest_path.exists():
        data = json.loads(manifest_path.read_text())
        users = {n: UserManifest(n, u["folders"], u["bytes"]) for n, u in data["users"].items()}
        return Corpus(params, path, users)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=cache_root))
    if log:
        print(f"bench: generating corpus {params.key()} into {path} ...", flush=True)
    try:
        jobs = [(params, u, str(tmp)) for u in params.user_names()]
        with ProcessPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
            manifests = list(pool.map(_generate_user, jobs))
        (tmp / "manifest.json").write_text(
            json.dumps({"params": asdict(params), "users": {m.name: asdict(m) for m in manifests}}, indent=1)
        )
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_or_generate(params, cache_root, log=False)


def link_tree(src: Path, dst: Path, uid: int, gid: int) -> None:
    """Recreate ``src`` under ``dst`` with directories owned by uid:gid and files hard-linked.

    Falls back to copying when hard links are impossible (another file system).
    """
    for dirpath, _dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        target = dst / rel
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, uid, gid)
        for name in filenames:
            s = Path(dirpath) / name
            t = target / name
            if name.startswith(("dovecot-keywords", "subscriptions")):
                shutil.copyfile(s, t)  # Dovecot may rewrite these: never share them with the cache
                os.chown(t, uid, gid)
                continue
            try:
                os.link(s, t)
            except OSError:
                shutil.copy2(s, t)


def seed_users(corpus: Corpus, mail_root: Path, users: Iterable[str], uid: int, gid: int) -> None:
    """Place the corpus maildirs of ``users`` at ``mail_root/<user>/Maildir`` (fresh)."""
    for user in users:
        home = mail_root / user
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        os.chown(home, uid, gid)
        link_tree(corpus.maildir(user), home / "Maildir", uid, gid)


if __name__ == "__main__":
    c = load_or_generate(CorpusParams())
    print(f"{c.path}: {c.messages} messages, {c.bytes / 1e6:.1f} MB")
