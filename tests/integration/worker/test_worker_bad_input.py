"""Bad input in one batch: each mailbox gets a clear status reason, the others go on."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import mfw_harness as h

from fixtures._proc import free_port
from fixtures.dovecot import DovecotPair
from fixtures.kubeapi import KubeAPI


def test_bad_input_gives_clear_reasons_and_other_mailboxes_go_on(
    kube: KubeAPI, namespace: str, dovecot_pair: DovecotPair, tmp_path: Path
) -> None:
    src, dst = dovecot_pair.source, dovecot_pair.destination
    tag = secrets.token_hex(3)
    sdir = tmp_path / "secrets"
    users = {n: f"{n}-{tag}@example.test" for n in ("ok", "badpw", "unreach", "tls", "large", "vanish")}
    src.add_users({u: "pw-src" for u in users.values()})  # one passwd reload per server
    dst.add_users({u: "pw-dst" for u in users.values()})
    # Every mailbox shares the two Secret volumes (as a batch Job mounts them): one key per mailbox.
    src_keys = {u.replace("@", "_"): "pw-src" for u in users.values()}
    dst_keys = {u.replace("@", "_"): "pw-dst" for u in users.values()}
    src_keys[users["badpw"].replace("@", "_")] = "wrong-password"
    src_keys |= {"master-username": src.master_user, "master-password": src.master_password}

    h.append(src, users["ok"], "INBOX", [h.message(f"ok {i}") for i in range(20)])
    h.append(src, users["ok"], "Sent", [h.message(f"sent {i}") for i in range(5)])
    h.append(src, users["large"], "INBOX", [h.message(f"small {i}") for i in range(3)])
    h.append(src, users["large"], "INBOX", [h.message("too big", size=60_000)])
    h.bulk_corpus(src, users["vanish"], {"INBOX": 600}, size=2000)
    h.append(src, users["vanish"], "Zdoomed", [h.message(f"doomed {i}") for i in range(5)])
    for n in ("badpw", "unreach", "tls"):
        h.append(src, users[n], "INBOX", [h.message(f"{n} {i}") for i in range(3)])

    def mk(name: str, source: dict, destination: dict, **opts: object) -> None:  # type: ignore[type-arg]
        h.create_mailboxsync(
            kube, namespace, name, users[name], source, destination, sdir, src_keys, dst_keys, **opts
        )

    mk("ok", h.endpoint(src, "src"), h.endpoint(dst, "dst"))
    # master-user login on the source for "ok"
    kube.kubectl(
        "patch",
        "mailboxsync",
        "ok",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"source": {"endpoint": {"auth": {"method": "master-user"}}}}}),
    )
    mk("badpw", h.endpoint(src, "src"), h.endpoint(dst, "dst"))
    mk("unreach", h.endpoint(src, "src", port=free_port()), h.endpoint(dst, "dst"))
    mk("tls", h.endpoint(src, "src"), h.endpoint(dst, "dst", "tls", port=dst.port))
    mk("large", h.endpoint(src, "src"), h.endpoint(dst, "dst"), maxMessageBytes=20_000)
    mk("vanish", h.endpoint(src, "src"), h.endpoint(dst, "dst"), connectionsPerMailbox=1)

    names = list(users)
    env = h.worker_env(
        kube,
        namespace,
        names,
        sdir,
        h.ca_bundle(tmp_path, src, dst),
        MAILFERRY_MAX_RETRIES="1",
        MAILFERRY_MAILBOX_CONCURRENCY="6",
    )
    log = tmp_path / "worker.log"
    p = h.start_worker(env, log)
    deadline = time.monotonic() + 60
    planned = False
    while time.monotonic() < deadline and p.poll() is None:
        text = log.read_text() if log.exists() else ""
        if any(
            e.get("event") == "folders_planned" and e.get("mailboxsync") == "vanish" for e in h.events(text)
        ):
            src.doveadm("mailbox", "delete", "-u", users["vanish"], "Zdoomed")
            planned = True
            break
        time.sleep(0.005)
    assert planned, log.read_text()[-3000:]
    rc = p.wait(timeout=180)
    out = log.read_text()
    assert rc == 1, out[-3000:]  # the unreachable host is transient: the Job should retry
    for pw in ("pw-src", "pw-dst", "wrong-password", src.master_password):
        assert pw not in out

    def status(name: str) -> dict:  # type: ignore[type-arg]
        return kube.get("mailboxsyncs.mailferry.io", name, namespace)["status"]

    ok = status("ok")
    assert ok["phase"] == "Synced", ok
    assert ok["totals"]["copied"] == 25
    rc_v, vout = h.verify(src, dst, users["ok"])
    assert rc_v == 0, vout

    bad = status("badpw")
    assert bad["phase"] == "Failed" and bad["lastError"]["reason"] == "AuthenticationFailed", bad
    assert {c["type"]: c["status"] for c in bad["conditions"]}["Stalled"] == "True"

    unreach = status("unreach")
    assert unreach["phase"] == "Failed" and unreach["lastError"]["reason"] == "ConnectionFailed", unreach

    tls = status("tls")
    assert tls["phase"] == "Failed" and tls["lastError"]["reason"] == "TLSError", tls

    large = status("large")
    assert large["phase"] == "Synced", large
    assert large["skipReasons"] == {"MessageTooLarge": 1}
    assert large["lastError"]["reason"] == "MessageTooLarge"
    assert large["totals"]["copied"] == 3 and large["totals"]["skipped"] == 1

    van = status("vanish")
    assert van["phase"] == "Synced", van
    assert van["lastError"]["reason"] == "FolderVanished", van
    assert {f["name"]: f["copied"] for f in van["folders"]}["INBOX"] == 600
