"""Release hygiene: one version everywhere (and a bump that keeps it so), a LICENSE matching pyproject, a
CHANGELOG entry, every GitHub action pinned by commit SHA, the base image pinned by digest, keyless signing,
make test on pull requests."""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "tools"))

import bump_version  # noqa: E402

from mailferry_api.version import DEFAULT_IMAGE, __version__  # noqa: E402

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_one_version_everywhere() -> None:
    found = bump_version.versions()
    assert all(found.values()), f"a place lost its version: {found}"
    assert set().union(*found.values()) == {__version__}, found
    assert f"ghcr.io/mailferry/mailferry:{__version__}" == DEFAULT_IMAGE
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == __version__


def test_bump_changes_every_place_together(tmp_path: Path) -> None:
    for rel in [*bump_version.PLACES, "CHANGELOG.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    bump_version.bump("9.8.7", tmp_path, today=__import__("datetime").date(2027, 1, 2))
    found = bump_version.versions(tmp_path)
    assert set().union(*found.values()) == {"9.8.7"} and all(found.values()), found
    changelog = (tmp_path / "CHANGELOG.md").read_text()
    assert "## [Unreleased]\n\n## [9.8.7] - 2027-01-02" in changelog
    with pytest.raises(SystemExit):
        bump_version.bump("nine", tmp_path)


def test_license_matches_pyproject_and_chart() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    chart = yaml.safe_load((ROOT / "charts" / "mailferry" / "Chart.yaml").read_text())
    assert chart["annotations"]["artifacthub.io/license"] == "Apache-2.0"


def test_changelog_has_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)


def test_every_action_is_pinned_by_commit_sha() -> None:
    assert WORKFLOWS
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            m = re.match(r"\s*(?:-\s*)?uses:\s*(\S+)", line)
            if m:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", m.group(1)), (
                    f"{path.name}: {line.strip()}"
                )
                assert re.search(r"#\s*v\d", line), (
                    f"{path.name}: name the release in a comment: {line.strip()}"
                )


def test_pull_requests_run_make_test() -> None:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    on = wf.get("on", wf.get(True))
    assert "pull_request" in on
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    assert "make test" in runs


def test_image_and_chart_are_signed_keyless() -> None:
    text = (ROOT / ".github" / "workflows" / "image.yml").read_text()
    wf = yaml.safe_load(text)
    assert wf["jobs"]["image"]["permissions"]["id-token"] == "write"
    assert wf["jobs"]["chart"]["permissions"]["id-token"] == "write"
    assert 'cosign sign --yes "${REGISTRY}/${IMAGE_NAME}@${DIGEST}"' in text
    assert 'cosign sign --yes "$CHART_REF"' in text
    assert "--key" not in text  # keyless: no key to keep


def test_base_image_is_pinned_by_digest() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    m = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert m and re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", m.group(1))
