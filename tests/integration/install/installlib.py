"""Helpers shared by the install tests: the real helm/kubectl binaries, rendering, strict YAML."""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from fixtures.kubeapi import KubeAPI, find_bin_dir

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "mailferry"
CRDS = ROOT / "crds"
DEPLOY = ROOT / "deploy"
HTTP_403 = re.compile(r"(?<![\d,.:])403(?!\d)")
# Kopf's cluster scan (list/watch namespaces and CRDs) is refused in namespaced mode by design; Kopf falls
# back to the given namespaces. (main.py could set settings.scanning.disabled to skip the attempt.)
KOPF_SCAN = re.compile(
    r'cannot (list|watch) resource "(namespaces|customresourcedefinitions)" in API group "[^"]*" '
    r"at the cluster scope"
)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one; the API server may not)."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=StrictLoader) if d]


def bin_dir() -> Path:
    return find_bin_dir()


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run([str(bin_dir() / "helm"), *args], capture_output=True, text=True, timeout=300)
    if check and cp.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


def kubectl_local(*args: str) -> str:
    """kubectl commands that need no cluster (kustomize)."""
    cp = subprocess.run([str(bin_dir() / "kubectl"), *args], capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{cp.stdout}\n{cp.stderr}")
    return cp.stdout


def set_args(values: dict[str, str] | None) -> list[str]:
    out: list[str] = []
    for k, v in (values or {}).items():
        out += ["--set", f"{k}={v}"]
    return out


def template(
    values: dict[str, str] | None = None,
    namespace: str = "mailferry",
    release: str = "mf",
    extra: list[str] | None = None,
    tests: bool = False,
) -> list[dict[str, Any]]:
    """`helm template` of the chart: `values` as --set, `extra` as more arguments (e.g. ["-f", FILE]);
    the `helm test` hook pods only with `tests`."""
    skip = [] if tests else ["--skip-tests"]
    cp = helm(
        "template", release, str(CHART), "--namespace", namespace, *skip, *set_args(values), *(extra or [])
    )
    return load_all(cp.stdout)


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


Grant = tuple[str, str, str]


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule.get("apiGroups", [])
        for r in rule.get("resources", [])
        for v in rule.get("verbs", [])
    }


@contextmanager
def namespaced_release(kube: KubeAPI, prefix: str, watched_as: str, cleanup: str) -> Iterator[dict[str, str]]:
    """`helm install` of the chart (CRDs already installed) into `{prefix}-sys-*`, watching only
    `{prefix}-{watched_as}-*`. On exit: deletes the `cleanup` resources (a kubectl type list) in the watched
    namespace, uninstalls the release and deletes both namespaces, none of it waited for."""
    suffix = secrets.token_hex(3)
    sys_ns, watched = f"{prefix}-sys-{suffix}", f"{prefix}-{watched_as}-{suffix}"
    for ns in (sys_ns, watched):
        kube.kubectl("create", "namespace", ns)
    name = f"{prefix}{suffix}"
    kube.helm(
        "install",
        name,
        str(CHART),
        "--namespace",
        sys_ns,
        "--set",
        "crds.install=false",
        "--set",
        f"watch.namespaces={{{watched}}}",
    )
    try:
        yield {"release": name, "sys": sys_ns, "ns": watched, "fullname": f"{name}-mailferry"}
    finally:
        kube.kubectl("delete", cleanup, "--all", "-n", watched, "--wait=false", check=False)
        kube.helm("uninstall", name, "--namespace", sys_ns, check=False)
        for ns in (sys_ns, watched):
            kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def unexpected_denials(log: str) -> list[str]:
    """The operator log's 403/Forbidden lines, but for Kopf's cluster scan (KOPF_SCAN)."""
    # "403" as a word: a log line's timestamp milliseconds (",403") are not a denial.
    denied = [line for line in log.splitlines() if HTTP_403.search(line) or "Forbidden" in line]
    return [line for line in denied if not KOPF_SCAN.search(line)]
