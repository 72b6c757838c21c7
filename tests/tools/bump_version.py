"""One version number for the package, the chart, the default worker image and the kustomize pins.

    python tests/tools/bump_version.py 0.2.0     set it everywhere (and date the CHANGELOG's Unreleased part)
    python tests/tools/bump_version.py --check   exit 1 unless every place agrees

The release workflow (.github/workflows/release.yml) runs the first, commits and tags vX.Y.Z; the image
workflow then publishes the image and the chart under that version.
"""

from __future__ import annotations

import datetime
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?"
# file -> patterns whose group 2 is the version (group 1 and 3 are kept as they are)
PLACES: dict[str, list[str]] = {
    "pyproject.toml": [rf'(?m)^(version = ")({VERSION})(")'],
    "common/mailferry_api/version.py": [rf'(__version__ = ")({VERSION})(")'],
    "charts/mailferry/Chart.yaml": [
        rf"(?m)^(version: )({VERSION})()$",
        rf'(?m)^(appVersion: ")({VERSION})(")',
        rf"(image: ghcr\.io/mailferry/mailferry:)({VERSION})()",
    ],
    "deploy/base/kustomization.yaml": [rf"(newTag: )({VERSION})()"],
    "deploy/overlays/example/kustomization.yaml": [rf"(newTag: )({VERSION})()"],
    "deploy/argocd/apps/10-operator.yaml": [rf"(targetRevision: )({VERSION})(\.)"],
    "docs/configuration.md": [rf"(`ghcr\.io/mailferry/mailferry:)({VERSION})(`)"],
}


def versions(root: Path = ROOT) -> dict[str, set[str]]:
    """The versions found at each place ('file#pattern' -> versions); a place no longer matching: empty."""
    found: dict[str, set[str]] = {}
    for rel, patterns in PLACES.items():
        text = (root / rel).read_text()
        for i, pattern in enumerate(patterns):
            found[f"{rel}#{i}"] = {m.group(2) for m in re.finditer(pattern, text)}
    return found


def bump(new: str, root: Path = ROOT, today: datetime.date | None = None) -> None:
    if not re.fullmatch(VERSION, new):
        raise SystemExit(f"not a version: {new!r}")
    for rel, patterns in PLACES.items():
        path = root / rel
        text = path.read_text()
        for pattern in patterns:
            text, n = re.subn(pattern, lambda m: m.group(1) + new + m.group(3), text)
            if n == 0:
                raise SystemExit(f"{rel}: no version found by {pattern}")
        path.write_text(text)
    changelog = root / "CHANGELOG.md"
    text = changelog.read_text()
    if f"## [{new}]" not in text:
        dated = f"## [Unreleased]\n\n## [{new}] - {(today or datetime.date.today()).isoformat()}"
        changelog.write_text(text.replace("## [Unreleased]", dated, 1))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--check"]:
        found = versions()
        all_versions = set().union(*found.values())
        missing = [place for place, v in found.items() if not v]
        if len(all_versions) != 1 or missing:
            print(f"versions disagree: {found}", file=sys.stderr)
            return 1
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    bump(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
