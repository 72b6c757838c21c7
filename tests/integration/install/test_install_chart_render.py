"""The Helm chart with the real helm CLI: lint, template in every mode, and the kustomize tree with kubectl.

No cluster needed here (tests/integration/install/test_install_cluster.py installs into the test API server).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from installlib import (
    CHART,
    CRDS,
    DEPLOY,
    by_kind,
    grants,
    helm,
    kubectl_local,
    load_all,
    one,
    template,
)

from mailferry_operator.main import parse_args

ALL_ON = {
    "metrics.serviceMonitor.enabled": "true",
    "metrics.serviceMonitor.additionalLabels.release": "kube-prometheus-stack",
    "metrics.prometheusRule.enabled": "true",
    "metrics.prometheusRule.additionalLabels.release": "kube-prometheus-stack",
    "grafanaDashboard.enabled": "true",
    "mtaSts.enabled": "true",
    "mtaSts.ingress.enabled": "true",
    "mtaSts.ingress.hosts[0]": "mta-sts.example.com",
}


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    dep = one(docs, "Deployment", "mf-mailferry-operator")
    return dict(dep["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize("values", [{}, ALL_ON, {"watch.mode": "cluster", "operator.replicas": "3"}])
def test_helm_lint_strict(values: dict[str, str]) -> None:
    args = [a for k, v in values.items() for a in ("--set", f"{k}={v}")]
    cp = helm("lint", "--strict", str(CHART), *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in cp.stdout


def test_values_schema_rejects_bad_values() -> None:
    for bad in (
        ["--set", "watch.mode=everywhere"],
        ["--set", "operator.securityContext.privileged=true"],
        ["--set", "image.pullPolicy=Sometimes"],
        ["--set", "operator.replicas=-1"],
        ["--set", "unknownKey=1"],
    ):
        cp = helm("template", "mf", str(CHART), *bad, check=False)
        assert cp.returncode != 0, f"accepted {bad}"
        assert "values don't meet the specifications of the schema" in cp.stderr, cp.stderr


def test_default_render_is_namespaced_and_restricted() -> None:
    docs = template()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    # the worker-image policy (issue 14) binds to the watched namespaces only in namespaced mode
    selector = one(docs, "ValidatingAdmissionPolicyBinding")["spec"]["matchResources"]["namespaceSelector"]
    assert selector["matchExpressions"][0]["values"] == ["mailferry"]
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mf-mailferry-operator"
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    c = operator_container(docs)
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert c["command"] == ["mailferry-operator"]
    assert c["image"] == "ghcr.io/mailferry/mailferry:0.1.0"
    # The operator's own argparse accepts exactly what the chart passes.
    args = parse_args(c["args"])
    assert args.namespace == ["mailferry"] and not args.all_namespaces
    assert args.standalone and args.peering is None
    assert args.metrics_port == 8080 and args.log_format == "json"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert ports == {"metrics": 8080, "healthz": args.liveness_port}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MAILFERRY_WORKER_SERVICE_ACCOUNT"] == "mailferry-worker"
    assert env["MAILFERRY_WORKER_IMAGE"] == c["image"]
    sas = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in by_kind(docs, "ServiceAccount")}
    assert sas == {("mailferry", "mf-mailferry-operator"), ("mailferry", "mailferry-worker")}


def test_crds_are_the_repository_files_with_keep() -> None:
    """The chart's CRDs are crds/*.yaml (through the files/crds symlink), plus only the keep annotation."""
    assert (CHART / "files" / "crds").is_symlink()
    assert (CHART / "files" / "crds").resolve() == CRDS.resolve()
    rendered = {d["metadata"]["name"]: d for d in by_kind(template(), "CustomResourceDefinition")}
    expected = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        expected[crd["metadata"]["name"]] = crd
    assert (
        set(rendered)
        == set(expected)
        == {
            "mailmigrations.mailferry.io",
            "mailboxsyncs.mailferry.io",
            "dnscutovers.mailferry.io",
            "noticeplans.mailferry.io",
            "sendingcutovers.mailferry.io",
        }
    )
    for name, crd in expected.items():
        got = rendered[name]
        assert got["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert got["spec"] == crd["spec"], f"{name}: chart spec differs from crds/"
        assert crd["metadata"]["labels"].items() <= got["metadata"]["labels"].items()
    assert not by_kind(template({"crds.install": "false"}), "CustomResourceDefinition")


def test_packaged_chart_contains_the_crd_files(tmp_path: Path) -> None:
    helm("package", str(CHART), "-d", str(tmp_path))
    (tgz,) = tmp_path.glob("mailferry-*.tgz")
    with tarfile.open(tgz) as tar:
        names = set(tar.getnames())
        for path in CRDS.glob("*.yaml"):
            member = f"mailferry/files/crds/{path.name}"
            assert member in names
            f = tar.extractfile(member)
            assert f is not None and f.read() == path.read_bytes()
        assert "mailferry/files/grafana/mailferry.json" in names
        assert "mailferry/files/prometheus/prometheusrule.yaml" in names


def test_namespaced_mode_roles_in_each_watched_namespace() -> None:
    docs = template({"watch.namespaces": "{mail-a,mail-b}"})
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in by_kind(docs, "Role")}
    assert set(roles) == {
        ("mail-a", "mf-mailferry-operator"),
        ("mail-b", "mf-mailferry-operator"),
        ("mail-a", "mf-mailferry-worker"),
        ("mail-b", "mf-mailferry-worker"),
    }
    for rb in by_kind(docs, "RoleBinding"):
        subject = rb["subjects"][0]
        if rb["metadata"]["name"].endswith("-operator"):
            assert subject == {
                "kind": "ServiceAccount",
                "name": "mf-mailferry-operator",
                "namespace": "mailferry",
            }
        else:
            assert (
                subject["name"] == "mailferry-worker" and subject["namespace"] == rb["metadata"]["namespace"]
            )
    worker_sas = {
        d["metadata"]["namespace"]
        for d in by_kind(docs, "ServiceAccount")
        if d["metadata"]["name"] == "mailferry-worker"
    }
    assert worker_sas == {"mail-a", "mail-b"}
    assert parse_args(operator_container(docs)["args"]).namespace == ["mail-a", "mail-b"]
    op = grants(roles[("mail-a", "mf-mailferry-operator")]["rules"])
    assert ("batch", "jobs", "create") in op and ("", "secrets", "get") in op
    assert ("", "secrets", "list") not in op and ("", "secrets", "delete") not in op
    assert ("mailferry.io", "mailboxsyncs/status", "patch") not in op, "the worker owns MailboxSync status"
    assert not any(g[0] == "kopf.dev" for g in op), "no peering with one replica"
    assert grants(roles[("mail-a", "mf-mailferry-worker")]["rules"]) == {
        ("mailferry.io", "mailboxsyncs", "get"),
        ("mailferry.io", "mailboxsyncs/status", "patch"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "delete"),
        ("", "events", "create"),
    }


def base_rbac() -> dict[str, dict[str, Any]]:
    docs = load_all(kubectl_local("kustomize", str(DEPLOY / "base")))
    return {d["metadata"]["name"]: d for d in by_kind(docs, "ClusterRole")}


def test_cluster_mode_clusterrole_matches_kustomize_base() -> None:
    docs = template({"watch.mode": "cluster", "worker.namespaces": "{mail-a,mail-b}"})
    assert not [r for r in by_kind(docs, "Role")]
    croles = {d["metadata"]["name"]: d for d in by_kind(docs, "ClusterRole")}
    base = base_rbac()
    assert grants(croles["mf-mailferry-operator"]["rules"]) == grants(base["mailferry-operator"]["rules"])
    assert grants(croles["mf-mailferry-worker"]["rules"]) == grants(base["mailferry-worker"]["rules"])
    crb = one(docs, "ClusterRoleBinding")
    assert crb["subjects"] == [
        {"kind": "ServiceAccount", "name": "mf-mailferry-operator", "namespace": "mailferry"}
    ]
    worker_bindings = by_kind(docs, "RoleBinding")
    assert {b["metadata"]["namespace"] for b in worker_bindings} == {"mail-a", "mail-b"}
    assert all(b["roleRef"]["kind"] == "ClusterRole" for b in worker_bindings)
    assert parse_args(operator_container(docs)["args"]).all_namespaces


def test_namespaced_rules_equal_cluster_rules_minus_crd_watch() -> None:
    ns = grants(one(template(), "Role", "mf-mailferry-operator")["rules"])
    cl = grants(one(template({"watch.mode": "cluster"}), "ClusterRole", "mf-mailferry-operator")["rules"])
    assert cl - ns == {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_peering_with_several_replicas(mode: str) -> None:
    docs = template({"watch.mode": mode, "operator.replicas": "2"})
    dep = one(docs, "Deployment", "mf-mailferry-operator")
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    args = parse_args(operator_container(docs)["args"])
    assert args.peering == "mailferry" and not args.standalone
    plural = "clusterkopfpeerings" if mode == "cluster" else "kopfpeerings"
    assert one(docs, "CustomResourceDefinition", f"{plural}.kopf.dev")["spec"]["group"] == "kopf.dev"
    rules = (
        one(docs, "ClusterRole", "mf-mailferry-operator")
        if mode == "cluster"
        else one(docs, "Role", "mf-mailferry-operator")
    )["rules"]
    assert ("kopf.dev", plural, "patch") in grants(rules)
    peering_kind = "ClusterKopfPeering" if mode == "cluster" else "KopfPeering"
    peer = one(docs, peering_kind)
    assert peer["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_monitoring_objects_use_the_deploy_files() -> None:
    docs = template(ALL_ON)
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    svc = one(docs, "Service", "mf-mailferry-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    pr = one(docs, "PrometheusRule")
    assert pr["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    source = yaml.safe_load((DEPLOY / "prometheus" / "prometheusrule.yaml").read_text())
    assert pr["spec"] == source["spec"]
    cm = one(docs, "ConfigMap", "mf-mailferry-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["mailferry.json"]) == json.loads(
        (DEPLOY / "grafana" / "mailferry.json").read_text()
    )


def test_mta_sts_server() -> None:
    docs = template(ALL_ON)
    dep = one(docs, "Deployment", "mf-mailferry-mta-sts")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == ["python", "-m", "mailferry_operator.mtasts.server"]
    assert pod["automountServiceAccountToken"] is False, "the policy server needs no API access"
    vol = next(v for v in pod["volumes"] if v["name"] == "policy")
    assert vol["configMap"]["name"] == "mailferry-mta-sts"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "policy")
    assert f"--policy-file={mount['mountPath']}/mta-sts.txt" in c["args"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    ing = one(docs, "Ingress")
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "mta-sts.example.com"
    assert rule["http"]["paths"][0]["path"] == "/.well-known/mta-sts.txt"
    svc = one(docs, "Service", "mf-mailferry-mta-sts")
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_kustomize_base_and_overlay_build() -> None:
    base = load_all(kubectl_local("kustomize", str(DEPLOY / "base")))
    crds = {d["metadata"]["name"]: d for d in by_kind(base, "CustomResourceDefinition")}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        assert crds[crd["metadata"]["name"]]["spec"] == crd["spec"], "the base must use crds/ as is"
    dep = one(base, "Deployment")
    args = parse_args(dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert args.all_namespaces and args.standalone
    overlay = load_all(kubectl_local("kustomize", str(DEPLOY / "overlays" / "example")))
    kinds = {d["kind"] for d in overlay}
    assert {"PrometheusRule", "ConfigMap", "Deployment", "ClusterRole"} <= kinds
    cm = one(overlay, "ConfigMap", "mailferry-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "mailferry"
    c = one(overlay, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert parse_args(c["args"]).log_level == "debug"
    assert c["image"] == "ghcr.io/mailferry/mailferry:0.1.0"
    rb = [d for d in by_kind(overlay, "RoleBinding") if d["metadata"]["namespace"] == "mail-migration"]
    assert rb and rb[0]["roleRef"]["name"] == "mailferry-worker"


def test_argocd_applications(tmp_path: Path) -> None:
    apps = {}
    for path in sorted((DEPLOY / "argocd" / "apps").glob("*.yaml")):
        app = yaml.safe_load(path.read_text())
        assert app["kind"] == "Application"
        apps[app["metadata"]["name"]] = app
    wave = {n: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for n, a in apps.items()}
    assert wave["mailferry-operator"] < wave["mailferry-migration"] < wave["mailferry-dns"]
    op = apps["mailferry-operator"]["spec"]["source"]
    assert op["path"] == "charts/mailferry"
    # the values the Application passes are valid chart values (schema) and render the promised objects
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(op["helm"]["valuesObject"]))
    rendered = load_all(
        helm("template", "mailferry", str(CHART), "-n", "mailferry", "-f", str(values)).stdout
    )
    assert {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= {d["kind"] for d in rendered}
    assert {r["metadata"]["namespace"] for r in by_kind(rendered, "Role")} == {"mail-migration"}
    assert "ServerSideApply=true" in apps["mailferry-operator"]["spec"]["syncPolicy"]["syncOptions"]
    examples = {p.name for p in (DEPLOY / "examples").glob("*.yaml")}
    for name in ("mailferry-migration", "mailferry-dns"):
        include = apps[name]["spec"]["source"]["directory"]["include"].strip("{}").split(",")
        assert set(include) <= examples, f"{name} includes files that do not exist"
    kinds_by_app: dict[str, set[str]] = {}
    for name in ("mailferry-migration", "mailferry-dns"):
        include = apps[name]["spec"]["source"]["directory"]["include"].strip("{}").split(",")
        kinds_by_app[name] = {
            d["kind"] for f in include for d in yaml.safe_load_all((DEPLOY / "examples" / f).read_text()) if d
        }
    assert "MailMigration" in kinds_by_app["mailferry-migration"]
    assert "DnsCutover" not in kinds_by_app["mailferry-migration"]
    assert kinds_by_app["mailferry-dns"] == {"DnsCutover"}
