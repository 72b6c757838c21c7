"""DMARC TXT values (RFC 9989 / DMARCbis): stages none → quarantine t=y → quarantine → reject.

`pct` is kept only as a legacy knob when a stage asks for it; `t=y` is the test mode."""

from __future__ import annotations

from mailferry_api.dnscutover import DmarcStage

STRENGTH = {"none": 0, "quarantine": 1, "reject": 2}


def parse(value: str | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    if not value:
        return tags
    for part in value.split(";"):
        if "=" in part:
            k, _, v = part.partition("=")
            tags[k.strip().lower()] = v.strip()
    return tags


def _mailto(uri: str) -> str:
    return uri if ":" in uri else f"mailto:{uri}"


def _strength(policy: str, testing: bool, pct: int | None) -> tuple[int, int, int]:
    """Stronger first by policy, then not in test mode, then the share of mail it applies to."""
    return (STRENGTH.get(policy, 0), 0 if testing else 1, 100 if pct is None else pct)


def existing_stage(existing: str | None) -> DmarcStage | None:
    tags = parse(existing)
    policy = tags.get("p", "").lower()
    if policy not in STRENGTH:
        return None
    pct = tags.get("pct", "")
    return DmarcStage(
        policy=policy,
        testing=tags.get("t", "n").lower() == "y",
        pct=int(pct) if pct.isdigit() and int(pct) <= 100 else None,
    )


def never_weaker(existing: str | None, stage: DmarcStage) -> DmarcStage:
    """`stage`, unless the record already published is stronger (a p=reject stays reject; its pct and
    t stay as they are): mailferry tightens DMARC, it never loosens it."""
    have = existing_stage(existing)
    if have is None:
        return stage
    if _strength(have.policy, have.testing, have.pct) >= _strength(stage.policy, stage.testing, stage.pct):
        return have
    return stage


def render(existing: str | None, stage: DmarcStage, rua: list[str]) -> str:
    """The DMARC record for `stage` (never weaker than `existing`), keeping the existing record's other
    tags (ruf, adkim, ...) and the union of its rua with `rua`."""
    stage = never_weaker(existing, stage)
    tags = parse(existing)
    tags.pop("v", None)
    uris: list[str] = []
    for u in [*(x.strip() for x in tags.pop("rua", "").split(",") if x.strip()), *map(_mailto, rua)]:
        if u.lower() not in (x.lower() for x in uris):
            uris.append(u)
    tags.pop("p", None)
    tags.pop("pct", None)
    tags.pop("t", None)
    out = ["v=DMARC1", f"p={stage.policy}"]
    if stage.testing:
        out.append("t=y")
    if stage.pct is not None and stage.pct != 100:
        out.append(f"pct={stage.pct}")
    if uris:
        out.append("rua=" + ",".join(uris))
    out.extend(f"{k}={v}" for k, v in tags.items())
    return "; ".join(out)


def staged(existing: str | None, rua: list[str]) -> str:
    """Staged: p=none with rua, but never weaker than a policy already published."""
    return render(existing, DmarcStage(policy="none"), rua)


def is_dmarc(value: str) -> bool:
    return value.replace(" ", "").lower().startswith("v=dmarc1")
