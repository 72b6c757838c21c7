"""`make bench-follow`: live follow mode at scale (issue 20; a benchmark and chaos run, not a test).

N mailboxes (INBOX + Archive) on a real source Dovecot reached through the TCP fault proxy, a real
destination Dovecot, the real API server, the operator and the local job runner; a MailMigration with
`deltaMode: follow` (one follower Job for all mailboxes unless --batch-size says otherwise). Once every
mailbox is followed, mail is APPENDed to the source at a steady rate (80 % INBOX, 20 % Archive) for a
while; a third of the way in every proxied connection is cut and new ones refused for a few seconds, two
thirds in the source Dovecot restarts. Then:

  - lag end to end: the destination's SAVEDATE (when the APPEND landed, whole seconds) minus the moment
    the message was delivered to the source; p50/p95/p99 over every message, over the messages
    delivered after the faults, and per 10 s of delivery (does lag recover, and how fast?);
  - lag as the follower measured it (first seen -> APPEND confirmed), from its /metrics histogram;
  - lost / duplicated: every delivered message by Subject, source count vs destination count;
  - worker RSS (peak) and CPU seconds during delivery; Dovecot and API server CPU beside it;
  - no new Job: the follower Jobs during delivery are the ones there before it.

    python tests/bench/follow.py [--mailboxes 1000] [--rate 20] [--seconds 60] [--no-faults] [--json F]
"""

from __future__ import annotations

import argparse
import imaplib
import json
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "tools")]

import demolib as d  # noqa: E402
from tests.bench.delta_round import api_requests, descendants, diff, dovecot_cpu, own_cpu, status_kb  # noqa: E402

from chaos.faultproxy import FaultProxy  # noqa: E402
from fixtures.dovecot import Dovecot, make_message  # noqa: E402
from fixtures.kubeapi import find_bin_dir, start_envtest  # noqa: E402

NS = "bench"
NAME = "follow"
WINDOW = 10  # seconds of delivery per row of lag_by_delivery_window
METRICS_PORT = 9102  # what the operator gives a follower (one follower here: no clash on this host)
# Enough Dovecot processes for one IDLE/NOTIFY connection per mailbox plus the deltas and the delivery.
# Each of those imap processes wants an inotify instance, and the kernel gives a user 128
# (fs.inotify.max_user_instances): past that, Dovecot looks for changes every mailbox_idle_check_interval
# instead (30 s by default), which would measure this host's limit, not the follower. Checked every second.
DOVECOT_LIMITS = """
mailbox_idle_check_interval = 1s
default_process_limit = 6000
default_client_limit = 12000
service imap {
  process_limit = 6000
}
service imap-login {
  process_limit = 6000
}
"""
SAVEDATE = re.compile(rb'SAVEDATE "([^"]+)"')
SUBJECT = re.compile(rb"Subject: (follow-bench [0-9a-f]+ [0-9.]+)")


@dataclass
class Delivery:
    user: str
    folder: str
    subject: str
    at: float


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "n": 0}
    s = sorted(values)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))], 2)

    return {"p50": q(50), "p95": q(95), "p99": q(99), "max": round(s[-1], 2), "n": len(s)}


def histogram_quantiles(text: str) -> dict[str, float | None]:
    """p50/p95/p99 upper bounds from mailferry_follow_lag_seconds buckets (summed over modes)."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        m = re.match(r'mailferry_follow_lag_seconds_bucket\{.*le="([^"]+)".*\} ([0-9.e+]+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets[le] = buckets.get(le, 0.0) + float(m.group(2))
    total = buckets.get(float("inf"), 0.0)
    out: dict[str, float | None] = {"count": total}
    for name, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        out[name] = next((le for le in sorted(buckets) if total and buckets[le] >= p * total), None)
    return out


def scrape() -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    except OSError:
        return ""


def watching(text: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("mailferry_follow_mailboxes{") and 'watching="true"' in line
    )


def seed(src: Dovecot, users: list[str]) -> None:
    for u in users:
        with src.connect_as(u) as c:
            c.create("Archive")
            for folder in ("INBOX", "Archive"):
                c.append(folder, None, None, make_message(f"seed {folder} {u}", size=800))


def deliver(
    src: Dovecot, users: list[str], rate: float, seconds: float, out: list[Delivery], senders: int = 4
) -> None:
    """APPEND at `rate` msg/s for `seconds` (a message a fault made fail is sent again, counted once).
    Several senders share the schedule (message i goes to sender i mod `senders`): one sender, a login
    per message, managed only 9/s on a loaded machine."""
    start = time.monotonic()
    n = int(rate * seconds)
    threads = [
        threading.Thread(target=_send, args=(src, users, rate, start, range(k, n, senders), out))
        for k in range(senders)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _send(
    src: Dovecot, users: list[str], rate: float, start: float, share: range, out: list[Delivery]
) -> None:
    for i in share:
        due = start + i / rate
        time.sleep(max(0.0, due - time.monotonic()))
        rnd = random.Random(i)  # the same mailbox and folder for message i whatever the senders
        user = rnd.choice(users)
        folder = "INBOX" if rnd.random() < 0.8 else "Archive"
        for attempt in range(60):
            at = time.time()
            subject = f"follow-bench {i:06x} {at:.3f}"
            try:
                with src.connect_as(user) as c:
                    typ, _ = c.append(folder, None, None, make_message(subject, size=1500))
                if typ == "OK":
                    out.append(Delivery(user, folder, subject, at))  # (list.append: thread-safe)
                    break
            except (OSError, imaplib.IMAP4.error):
                time.sleep(min(2.0, 0.2 * (attempt + 1)))  # the source is restarting


def subjects(server: Dovecot, user: str, folder: str) -> list[tuple[str, float | None]]:
    """(Subject, SAVEDATE as epoch seconds) of every message of a folder."""
    out: list[tuple[str, float | None]] = []
    with server.connect_as(user) as c:
        typ, _ = c.select(folder, readonly=True)
        if typ != "OK":
            return out
        typ, data = c.fetch("1:*", "(SAVEDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        if typ != "OK":
            return out
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, body = item[0], item[1]
            sm = SUBJECT.search(body)
            dm = SAVEDATE.search(head)
            saved = imaplib.Internaldate2tuple(b'INTERNALDATE "' + dm.group(1) + b'"') if dm else None
            out.append((sm.group(1).decode() if sm else "", time.mktime(saved) if saved else None))
    return out


def total_messages(server: Dovecot) -> int:
    """Messages in every mailbox of every user (one doveadm call)."""
    out = server.doveadm("-f", "tab", "mailbox", "status", "-A", "messages", "*")
    return sum(int(c) for line in out.splitlines()[1:] for c in line.split("\t")[-1:] if c.isdigit())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mailboxes", type=int, default=1000)
    p.add_argument("--rate", type=float, default=20.0, help="messages per second delivered to the source")
    p.add_argument("--seconds", type=float, default=60.0, help="how long mail is delivered")
    p.add_argument("--batch-size", type=int, default=0, help="mailboxes per follower Job (0: all in one)")
    p.add_argument("--concurrency", type=int, default=16, help="deltas at once per follower")
    p.add_argument("--no-faults", action="store_true", help="no network cut, no Dovecot restart")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    n = args.mailboxes
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a connection per mailbox: past 1024
    work = Path(tempfile.mkdtemp(prefix="mailferry-bench-follow-"))
    print(f"bench-follow: {n} mailboxes, {args.rate} msg/s for {args.seconds:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    figures: dict[str, Any] = {"mailboxes": n, "rate": args.rate, "seconds": args.seconds}
    with ExitStack() as stack:
        stack.callback(lambda: None if args.keep else shutil.rmtree(work, True))
        kube = start_envtest(work / "kube", find_bin_dir())
        stack.callback(kube.stop)
        kube.install_crds()
        org = d.make_org(n, domain="follow.test", prefix="f")
        servers = d.start_dovecots(
            stack, work, ("source", "destination"), "follow", org, extra_config=DOVECOT_LIMITS
        )
        src, dst = servers["source"], servers["destination"]
        proxy = FaultProxy("127.0.0.1", src.port).start()
        stack.callback(proxy.stop)
        users = org.addresses
        t = time.monotonic()
        seed(src, users)
        print(f"seeded {2 * n} messages in {time.monotonic() - t:.0f} s", flush=True)
        kube.kubectl("create", "namespace", NS)
        runner = d.JobRunnerProcess(kube, [NS], work).start()
        stack.callback(runner.stop)
        operator = d.OperatorProcess(kube, [NS], work).start()
        stack.callback(operator.stop)
        csv = d.same_address_inventory(users)
        manifest = d.migration_manifest(
            NAME, NS, src, dst, inventory_configmap="inventory", deltaMode="follow", deltaInterval="15m",
            batchSize=args.batch_size or n, maxConcurrentJobs=4,
            worker={"mailboxConcurrency": args.concurrency},
        )  # fmt: skip
        manifest["spec"]["source"]["port"] = proxy.port
        for side in ("source", "destination"):
            manifest["spec"][side]["auth"]["secretRef"]["name"] = "creds"
        d.apply(
            kube,
            d.inventory_manifest("inventory", NS, csv),
            d.secret_manifest("creds", NS, d.credentials(org)),
            verb=("create",),
        )
        t0 = time.monotonic()
        d.apply(kube, manifest)

        def followed() -> bool:
            m = d.migration(kube, NS, NAME).get("status") or {}
            return (m.get("round") or {}).get("kind") == "follow" and watching(scrape()) >= n

        d.wait_for(followed, 1800, "every mailbox followed")
        figures["seconds_to_followed"] = round(time.monotonic() - t0, 1)
        print(f"every mailbox followed after {figures['seconds_to_followed']} s", flush=True)
        jobs_before = sorted(j["metadata"]["name"] for j in d.worker_jobs(kube, NS, NAME))
        follower = next(
            pid for pid in descendants(runner.proc.pid)
            if b"follow" in Path(f"/proc/{pid}/cmdline").read_bytes() and b"mailferry-worker" in
            Path(f"/proc/{pid}/cmdline").read_bytes()
        )  # fmt: skip
        apiserver = next(pr.pid for pr in kube._procs if pr.name == "kube-apiserver")
        requests0, acpu0 = api_requests(kube), own_cpu(apiserver)
        cpu0, t_start = own_cpu(follower), time.monotonic()
        src_cpu0, dst_cpu0 = dovecot_cpu(src), dovecot_cpu(dst)
        t_wall0 = time.time()
        deliveries: list[Delivery] = []
        sender = threading.Thread(target=deliver, args=(src, users, args.rate, args.seconds, deliveries))
        sender.start()
        fault_times: list[float] = []
        if not args.no_faults:
            time.sleep(args.seconds / 3)
            fault_times.append(time.time())
            proxy.refuse(True)
            cut = proxy.cut_all()
            time.sleep(3)
            proxy.refuse(False)
            print(f"network cut: {cut} connections reset, new ones refused for 3 s", flush=True)
            time.sleep(max(0.0, args.seconds / 3 - 3))
            fault_times.append(time.time())
            src_cpu0 -= dovecot_cpu(src)  # the restarted master counts from zero: keep what the old one spent
            src.restart()
            print("source Dovecot restarted", flush=True)
        sender.join()
        delivered_at = time.monotonic()
        print(f"delivered {len(deliveries)} messages in {delivered_at - t_start:.0f} s", flush=True)
        by_box = {(x.user, x.folder) for x in deliveries}

        def caught_up() -> bool:
            return total_messages(src) == total_messages(dst)

        d.wait_for(caught_up, 1800, "every delivered message on the destination")
        figures["drain_seconds"] = round(time.monotonic() - delivered_at, 1)
        figures["worker_cpu_seconds"] = round(own_cpu(follower) - cpu0, 2)
        figures["dovecot_cpu_seconds"] = round(dovecot_cpu(src) - src_cpu0 + dovecot_cpu(dst) - dst_cpu0, 2)
        figures["apiserver_cpu_seconds"] = round(own_cpu(apiserver) - acpu0, 2)
        # The requests the follower (and the operator beside it) made per delivered message; the bench's
        # own polling (GET mailmigrations, kubectl discovery) is in it.
        requests = diff(api_requests(kube), requests0)
        figures["api_requests_per_message"] = round(sum(requests.values()) / max(1, len(deliveries)), 2)
        figures["api_requests"] = dict(sorted(requests.items(), key=lambda kv: -kv[1]))
        per_message = 1000 * figures["worker_cpu_seconds"] / max(1, len(deliveries))
        figures["worker_cpu_per_message_ms"] = round(per_message, 2)
        figures["worker_peak_rss_mb"] = round(status_kb(follower, "VmHWM") / 1024, 1)
        figures["worker_rss_mb"] = round(status_kb(follower, "VmRSS") / 1024, 1)
        figures["wall_seconds"] = round(time.monotonic() - t_start, 1)
        # lag end to end, lost, duplicated
        sent = {x.subject: x for x in deliveries}
        lags, after_faults, lost, duplicated = [], [], 0, 0
        by_window: dict[int, list[float]] = {}  # lag by when the message was delivered: does it recover?
        last_fault = max(fault_times) if fault_times else 0.0
        for u, f in sorted(by_box):
            on_src = Counter(s for s, _ in subjects(src, u, f) if s)
            on_dst = subjects(dst, u, f)
            dst_count = Counter(s for s, _ in on_dst if s)
            for s, k in on_src.items():
                lost += max(0, k - dst_count.get(s, 0))
                duplicated += max(0, dst_count.get(s, 0) - k)
            for s, saved in on_dst:
                if s in sent and saved is not None:
                    lag = max(0.0, saved + 0.5 - sent[s].at)  # SAVEDATE is whole seconds: +/- 0.5 s
                    lags.append(lag)
                    by_window.setdefault(int((sent[s].at - t_wall0) // WINDOW), []).append(lag)
                    if sent[s].at > last_fault + 10:
                        after_faults.append(lag)
        figures["lost"], figures["duplicated"] = lost, duplicated
        figures["lag_end_to_end"] = percentiles(lags)
        figures["lag_after_faults"] = percentiles(after_faults)
        figures["fault_seconds"] = [round(t - t_wall0, 1) for t in fault_times]
        figures["lag_by_delivery_window"] = {
            f"{w * WINDOW}-{(w + 1) * WINDOW} s": percentiles(v) for w, v in sorted(by_window.items())
        }
        figures["lag_follower_histogram"] = histogram_quantiles(scrape())
        figures["status_lag_max_seconds"] = (d.migration(kube, NS, NAME).get("status") or {}).get("lag")
        jobs_after = sorted(j["metadata"]["name"] for j in d.worker_jobs(kube, NS, NAME))
        figures["new_jobs_during_run"] = sorted(set(jobs_after) - set(jobs_before))
        figures["load_average"] = os.getloadavg()[0]
    print(json.dumps(figures, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    ok = figures["lost"] == 0 and figures["duplicated"] == 0 and not figures["new_jobs_during_run"]
    print("PASS" if ok else "MISS: messages lost/duplicated or a new Job", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
