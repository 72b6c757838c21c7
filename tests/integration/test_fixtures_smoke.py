"""Smoke tests: each real-server fixture starts and does the real thing tests rely on."""

from __future__ import annotations

import imaplib
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import pytest

from fixtures._proc import wait_until
from fixtures.dovecot import DovecotFactory, DovecotPair, make_message
from fixtures.kubeapi import KubeAPI
from fixtures.powerdns import PowerDNS, PowerDNSPair
from fixtures.prometheus import Prometheus

# ---------------------------------------------------------------- Kubernetes


def test_kube_lists_namespaces_and_creates_one(kube: KubeAPI, namespace: str) -> None:
    names = {i["metadata"]["name"] for i in kube.get("namespaces")["items"]}
    assert {"default", "kube-system", namespace} <= names
    assert kube.get("namespace", namespace)["status"]["phase"] == "Active"
    sa = kube.get("serviceaccount", "default", namespace)
    assert sa["metadata"]["namespace"] == namespace
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["minor"].startswith("34") or kube.external


def test_kube_rbac_and_token_request(kube: KubeAPI, namespace: str) -> None:
    """A ServiceAccount token from TokenRequest authenticates and is bound by RBAC."""
    if kube.external:
        pytest.skip("RBAC check assumes the fixture's own API server")
    kube.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cfg = kube.service_account_kubeconfig(namespace, "reader")
    as_sa = ["--kubeconfig", str(cfg)]
    env = dict(kube.env, KUBECONFIG=str(cfg))
    import subprocess

    denied = subprocess.run(
        [kube.kubectl_bin, *as_sa, "get", "configmaps", "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    kube.kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace)
    kube.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    allowed = subprocess.run(
        [kube.kubectl_bin, *as_sa, "get", "configmaps", "-n", namespace, "-o", "name"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert ("configmap/kube-root-ca.crt" in allowed.stdout) == ("root-ca-cert-publisher" in kube.controllers)


def test_kube_apply_keeps_yaml_ambiguous_strings(kube: KubeAPI, namespace: str) -> None:
    data = {"y": "y", "no": "no", "on": "on", "num": "0755"}
    kube.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strs"}, "data": data}, namespace
    )
    kube.apply(
        [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "stringData": {"x": "y"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c2"}, "data": {"k": "v"}},
        ],
        namespace,
    )
    assert kube.get("configmap", "strs", namespace)["data"] == data
    assert kube.get("secret", "s1", namespace)["data"] == {"x": "eQ=="}
    assert kube.get("configmap", "c2", namespace)["data"] == {"k": "v"}


def test_kube_gc_garbage_collects_owned_objects(kube_gc: KubeAPI, gc_namespace: str) -> None:
    assert "garbagecollector" in kube_gc.controllers or kube_gc.external
    namespace = gc_namespace
    kube_gc.kubectl("create", "configmap", "parent", "-n", namespace)
    uid = kube_gc.get("configmap", "parent", namespace)["metadata"]["uid"]
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": uid}
    kube_gc.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "child", "ownerReferences": [owner]}},
        namespace=namespace,
    )
    kube_gc.kubectl("delete", "configmap", "parent", "-n", namespace)
    wait_until(
        lambda: kube_gc.kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode != 0,
        timeout=60,
        what="garbage collection of the owned ConfigMap",
    )


def test_kube_installs_crds_from_a_directory(kube: KubeAPI, tmp_path: Path) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.smoke.mailferry.io"},
        "spec": {
            "group": "smoke.mailferry.io",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                    "subresources": {"status": {}},
                }
            ],
        },
    }
    (tmp_path / "widget.yaml").write_text(json.dumps(crd))
    assert kube.install_crds(tmp_path) == ["widgets.smoke.mailferry.io"]
    got = kube.get("crd", "widgets.smoke.mailferry.io")
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions["Established"] == "True"
    kube.kubectl("delete", "crd", "widgets.smoke.mailferry.io", "--wait=false")


def test_repo_crds_are_installed(kube: KubeAPI) -> None:
    repo_crds = Path(__file__).resolve().parents[2] / "crds"
    files = sorted(repo_crds.glob("*.y*ml"))
    if not files:
        pytest.skip("crds/ has no manifests yet")
    crds = {i["metadata"]["name"] for i in kube.get("crds")["items"]}
    assert any(n.endswith("mailferry.io") for n in crds), crds


# -------------------------------------------------------------------- Dovecot


def test_dovecot_login_append_select(dovecot_pair: DovecotPair) -> None:
    src = dovecot_pair.source
    src.add_user("smoke-alice", "alice-pw")
    with src.connect("smoke-alice") as c:
        caps = c.capability()[1][0].split()
        for cap in (b"CONDSTORE", b"MULTIAPPEND", b"LITERAL+", b"UIDPLUS"):
            assert cap in caps
        msg = make_message("smoke", size=2000)
        typ, data = c.append("INBOX", r"(\Seen)", None, msg)
        assert typ == "OK" and b"APPENDUID" in data[0]
        typ, data = c.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = c.fetch("1", "(FLAGS RFC822.SIZE)")
        assert b"\\Seen" in data[0] and f"RFC822.SIZE {len(msg)}".encode() in data[0]
    status = src.mailbox_status("smoke-alice")
    assert status["INBOX"]["messages"] == 1


def test_dovecot_wrong_password_rejected(dovecot_pair: DovecotPair) -> None:
    dst = dovecot_pair.destination
    dst.add_user("smoke-bob", "bob-pw")
    with dst.connect() as c, pytest.raises(imaplib.IMAP4.error):
        c.login("smoke-bob", "not-the-password")


def test_dovecot_master_user_login(dovecot_pair: DovecotPair) -> None:
    dst = dovecot_pair.destination
    dst.add_user("smoke-carol", "carol-pw")
    dst.seed("smoke-carol", "Archive/2020", count=3)
    with dst.connect() as c:
        c.login(f"smoke-carol*{dst.master_user}", dst.master_password)
        typ, data = c.select('"Archive/2020"')
        assert typ == "OK" and data == [b"3"]


def test_dovecot_tls_ports(dovecot_pair: DovecotPair) -> None:
    src = dovecot_pair.source
    src.add_user("smoke-dave", "dave-pw")
    with src.connect("smoke-dave", tls=True) as c:
        assert isinstance(c.sock, ssl.SSLSocket)
        assert c.select("INBOX")[0] == "OK"
    with imaplib.IMAP4(src.host, src.port) as c:
        assert b"STARTTLS" in c.capability()[1][0]
        c.starttls(ssl_context=src.ssl_context())
        c.login("smoke-dave", "dave-pw")
        assert c.select("INBOX")[0] == "OK"


def test_dovecot_doveadm_save_restart_keeps_data(dovecot_factory: DovecotFactory) -> None:
    d = dovecot_factory(name="smoke-own", separator=".")
    d.add_user("erin", "erin-pw")
    d.save("erin", "Projects", make_message("via doveadm"))
    before = d.mailbox_status("erin")
    assert before["Projects"]["messages"] == 1
    port = d.port
    d.restart()
    assert d.port == port
    with d.connect("erin") as c:
        assert c.select("Projects")[1] == [b"1"]
    assert d.mailbox_status("erin")["Projects"]["uidvalidity"] == before["Projects"]["uidvalidity"]
    d.kill()
    assert not d.running
    with pytest.raises(OSError):
        imaplib.IMAP4(d.host, d.port, timeout=2)


def test_dovecot_doveadm_backup_over_imapc(dovecot_pair: DovecotPair) -> None:
    src, dst = dovecot_pair
    src.add_user("smoke-frank", "frank-src")
    dst.add_user("smoke-frank", "frank-dst")
    src.seed("smoke-frank", "INBOX", count=4)
    src.seed("smoke-frank", "Archive/2021", count=2)
    dst.doveadm(*src.imapc_options("smoke-frank", master=True), "backup", "-R", "-u", "smoke-frank", "imapc:")
    status = dst.mailbox_status("smoke-frank")
    assert status["INBOX"]["messages"] == 4 and status["Archive/2021"]["messages"] == 2


# ------------------------------------------------------------------- PowerDNS


def test_powerdns_zone_via_api_and_dns_queries(powerdns: PowerDNS) -> None:
    zone = "smoke-api.test"
    powerdns.create_zone(
        zone,
        [
            ("@", "A", 300, "192.0.2.10"),
            ("@", "MX", 300, ["10 mx1.smoke-api.test.", "20 mx2.smoke-api.test."]),
            ("_dmarc", "TXT", 300, "v=DMARC1; p=none; rua=mailto:d@smoke-api.test"),
            ("long", "TXT", 300, "x" * 300),
        ],
    )
    assert powerdns.answer(f"{zone}.", "A") == ["192.0.2.10"]
    assert sorted(powerdns.answer(f"{zone}.", "MX")) == ["10 mx1.smoke-api.test.", "20 mx2.smoke-api.test."]
    assert powerdns.answer(f"_dmarc.{zone}.", "TXT") == ["v=DMARC1; p=none; rua=mailto:d@smoke-api.test"]
    assert powerdns.answer(f"long.{zone}.", "TXT") == ["x" * 300]
    resp = powerdns.query(f"{zone}.", "A", tcp=True)
    assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA
    names = {(r["name"], r["type"]) for r in powerdns.rrsets(zone)}
    assert (f"{zone}.", "SOA") in names and (f"{zone}.", "NS") in names
    powerdns.set_rrset(zone, "@", "A", 60, "192.0.2.11")
    assert powerdns.answer(f"{zone}.", "A") == ["192.0.2.11"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process holds (listening), as if it took it between free_port() and a server's bind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def test_powerdns_starts_on_new_ports_when_another_process_took_its_api_port(
    tmp_path: Path, taken_port: int
) -> None:
    """Another server took the port free_port() gave between the choice and pdns's bind (CI saw it): pdns
    logs "Address already in use", keeps running without its API, and that server answers there."""
    pd = PowerDNS(tmp_path / "pd")
    pd.webserver_port = taken_port
    pd._http.close()
    pd._configure()
    try:
        pd.start()
        assert pd.webserver_port != taken_port
        assert "Address already in use" in (tmp_path / "pd" / "pdns.log").read_text()
        pd.create_zone("ports.test.", [("@", "TXT", 60, ["moved"])])
        assert pd.answer("ports.test.", "TXT") == ["moved"]
    finally:
        pd.close()


def test_powerdns_rfc2136_update_with_tsig(powerdns: PowerDNS) -> None:
    zone = "smoke-update.test"
    powerdns.create_zone(zone, [("@", "A", 300, "192.0.2.1")])
    open_update = dns.update.UpdateMessage(f"{zone}.")
    open_update.replace("before-tsig", 120, "A", "192.0.2.50")
    assert (
        dns.query.tcp(open_update, powerdns.host, port=powerdns.port, timeout=5).rcode() == dns.rcode.NOERROR
    )
    assert powerdns.answer(f"before-tsig.{zone}.", "A") == ["192.0.2.50"]

    key = powerdns.create_tsig_key("smoke-key")
    powerdns.allow_dnsupdate(zone, key)  # takes effect at once (metadata cache is off)

    unsigned = dns.update.UpdateMessage(f"{zone}.")
    unsigned.replace("www", 120, "A", "192.0.2.99")
    assert dns.query.tcp(unsigned, powerdns.host, port=powerdns.port, timeout=5).rcode() == dns.rcode.REFUSED

    upd = dns.update.UpdateMessage(f"{zone}.", keyring=key.keyring(), keyalgorithm=key.algorithm)
    upd.replace("www", 120, "A", "192.0.2.7")
    upd.replace("_mta-sts", 120, "TXT", '"v=STSv1; id=1"')
    resp = dns.query.tcp(upd, powerdns.host, port=powerdns.port, timeout=5)
    assert resp.rcode() == dns.rcode.NOERROR
    assert powerdns.answer(f"www.{zone}.", "A") == ["192.0.2.7"]
    assert powerdns.answer(f"_mta-sts.{zone}.", "TXT") == ["v=STSv1; id=1"]
    assert powerdns.records(zone, "www", "A") == ["192.0.2.7"]


def test_powerdns_pair_can_disagree(powerdns_pair: PowerDNSPair) -> None:
    zone = "smoke-pair.test"
    powerdns_pair.create_zone(zone, [("@", "MX", 300, "10 old-mx.smoke-pair.test.")])
    assert [s.answer(f"{zone}.", "MX") for s in powerdns_pair] == [["10 old-mx.smoke-pair.test."]] * 2
    powerdns_pair.primary.set_rrset(zone, "@", "MX", 300, "10 new-mx.smoke-pair.test.")  # secondary lags
    assert powerdns_pair.primary.answer(f"{zone}.", "MX") == ["10 new-mx.smoke-pair.test."]
    assert powerdns_pair.secondary.answer(f"{zone}.", "MX") == ["10 old-mx.smoke-pair.test."]
    assert len(set(powerdns_pair.addresses)) == 2


# ----------------------------------------------------------------- Prometheus


def test_prometheus_serves_test_data(prometheus: Prometheus) -> None:
    labels = {"domain": "smoke.test"}
    prometheus.set("smoke_bounce_ratio", 0.012, labels)
    assert prometheus.wait_for('smoke_bounce_ratio{domain="smoke.test"}', lambda v: v == 0.012) == 0.012
    prometheus.inc("smoke_sent_total", 500, labels)
    prometheus.inc("smoke_bounced_total", 5, labels)
    ratio = prometheus.wait_for(
        "sum(smoke_bounced_total) / sum(smoke_sent_total)", lambda v: v is not None and abs(v - 0.01) < 1e-9
    )
    assert ratio is not None and abs(ratio - 0.01) < 1e-9
    prometheus.remove("smoke_bounce_ratio")
    assert prometheus.wait_for("smoke_bounce_ratio", lambda v: v is None) is None


# ----------------------------------------------------------------- kind marker


def test_kind_marker_reason_names_docker() -> None:
    from fixtures.markers import docker_unavailable_reason

    reason = docker_unavailable_reason()
    assert reason is None or "Docker engine" in reason


@pytest.mark.kind
def test_kind_marker_runs_only_with_docker() -> None:
    from fixtures.markers import docker_unavailable_reason

    assert docker_unavailable_reason() is None


def test_envtest_starts_on_new_ports_when_another_process_took_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    """etcd's client port was taken between free_port() and its bind: it exits at once, and the API server
    pair starts again on new ports."""
    from fixtures import kubeapi

    first = iter([taken_port])
    real = kubeapi.free_port
    monkeypatch.setattr(kubeapi, "free_port", lambda: next(first, None) or real())
    kube = kubeapi.start_envtest(tmp_path / "kube", kubeapi.find_bin_dir())
    try:
        assert kube.etcd_url != f"http://127.0.0.1:{taken_port}"
        assert "address already in use" in (tmp_path / "kube" / "etcd.log").read_text().lower()
        assert kube.kubectl("get", "namespace", "default", "-o", "name").stdout.strip() == "namespace/default"
    finally:
        kube.stop()


def test_dovecot_starts_on_new_ports_when_another_process_took_one(tmp_path: Path, taken_port: int) -> None:
    """Dovecot's IMAP port was taken between free_port() and its bind: it exits, and starts again on new
    ports."""
    from fixtures.dovecot import Dovecot

    (tmp_path / "dovecot").mkdir()
    server = Dovecot(tmp_path / "dovecot", "ports")
    server.port = taken_port
    server._write_conf()
    try:
        server.start()
        assert server.port != taken_port
        with imaplib.IMAP4("127.0.0.1", server.port, timeout=5) as c:
            assert b"IMAP4rev1" in c.capability()[1][0]
    finally:
        server.destroy()


def test_prometheus_starts_on_a_new_port_when_another_process_took_it(
    tmp_path: Path, taken_port: int
) -> None:
    """Prometheus's listen port was taken between free_port() and its bind: it exits, and starts again."""
    (tmp_path / "prom").mkdir()
    prom = Prometheus(tmp_path / "prom", "ports")
    prom.port = taken_port
    try:
        prom.start()
        assert prom.port != taken_port and prom.url.endswith(f":{prom.port}")
        assert prom.query_value('up{job="testdata"}') == 1.0
    finally:
        prom.close()
