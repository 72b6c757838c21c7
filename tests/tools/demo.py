"""`make demo`: a whole migration on this machine, live, in one command.

Starts a local Kubernetes API server (etcd + kube-apiserver), two Dovecot servers with a generated
organisation of 20 mailboxes, the mailferry operator and the local job runner (the kubelet stand-in
that runs the worker Jobs); applies a MailMigration; shows live progress (a bar per phase and a
table of mailboxes); delivers new mail to the source mid-way to show a delta round; then cuts the
domain's DNS over with a DnsCutover on a local PowerDNS (its phases walked with short DEMO TIMINGS,
labelled as such: tests/tools/demo_dns.py); delivers a message to the old mailbox after the MX swap and
completes the migration, which holds its final round until the cutover's drainUntil so that message is
copied; ends with the verifier's summary (`mailferry verify` for every mailbox). Plain ANSI.

    python tests/tools/demo.py [--mailboxes 20] [--messages 40] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_dns
import demolib as d

from fixtures.dovecot import Dovecot, make_message
from fixtures.kubeapi import find_bin_dir, start_envtest
from mailferry_kubectl.view import Style, migration_lines

NS = "mailferry-demo"
NAME = "acme"
RESET, BOLD, DIM, GREEN, YELLOW, RED, CYAN = (
    "\033[0m",
    "\033[1m",
    "\033[2m",
    "\033[32m",
    "\033[33m",
    "\033[31m",
    "\033[36m",
)
STYLE = Style(color=True)


class Screen:
    """The live view: `kubectl mailferry status --mailboxes` (the same code), plus the demo's notes."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.lines = 0
        self.cutover: dict[str, Any] | None = None

    def note(self, text: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {text}")
        self.notes = self.notes[-6:]

    def draw(self, kube: Any) -> dict[str, Any]:
        mig = d.migration(kube, NS, NAME)
        syncs = d.get(kube, "mailboxsyncs.mailferry.io", NS)["items"]
        out = migration_lines(mig, syncs, STYLE, mailboxes=True)
        self.cutover = demo_dns.cutover(kube, NS, NAME)
        out += demo_dns.lines(self.cutover)
        out.append("")
        out += [f"  {DIM}{n}{RESET}" for n in self.notes]
        if self.lines:
            sys.stdout.write(f"\033[{self.lines}F\033[J")
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()
        self.lines = len(out)
        return dict(mig.get("status") or {})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mailboxes", type=int, default=20)
    p.add_argument("--messages", type=int, default=40, help="messages per mailbox")
    p.add_argument("--delta-interval", default="8s")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs) afterwards")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailferry-demo-"))
    print(f"{BOLD}mailferry demo{RESET}  (work dir {work})")
    stack: list[Any] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        print("  starting kube-apiserver + etcd ...", flush=True)
        kube = start_envtest(work / "kube", find_bin_dir())
        stack.append(kube)
        kube.install_crds()
        print("  starting two Dovecot servers ...", flush=True)
        (work / "source").mkdir()
        (work / "destination").mkdir()
        src = Dovecot(work / "source", "source")
        dst = Dovecot(work / "destination", "destination")
        stack += [src, dst]
        src.start()
        dst.start()
        org = d.make_org(args.mailboxes, domain="example.test")
        d.add_org_users(src, dst, org)
        print(f"  generating the organisation: {args.mailboxes} mailboxes ...", flush=True)
        total = d.seed_org(src, org, args.messages)
        print(f"  {total} messages in the source", flush=True)
        print(
            "  starting PowerDNS, authoritative for example.test (the old provider's records) ...", flush=True
        )
        pdns = demo_dns.start_zone(work, "example.test")
        stack.append(pdns)
        kube.kubectl("create", "namespace", NS)
        runner = d.JobRunnerProcess(kube, [NS], work).start()
        stack.append(runner)
        operator = d.OperatorProcess(kube, [NS], work, extra_env=demo_dns.operator_env()).start()
        stack.append(operator)
        print(
            f"  operator running (metrics on :{operator.metrics_port}/metrics); applying the MailMigration\n"
        )
        d.apply(
            kube,
            d.secret_manifest(f"{NAME}-source", NS, d.credentials(org)),
            d.secret_manifest(f"{NAME}-destination", NS, d.credentials(org)),
            d.migration_manifest(
                NAME,
                NS,
                src,
                dst,
                org.addresses,
                batchSize=4,
                maxConcurrentJobs=3,
                deltaInterval=args.delta_interval,
            ),
        )
        screen = Screen()
        screen.note(f"applied MailMigration {NAME}: {args.mailboxes} mailboxes, batches of 4, 3 Jobs at once")
        added = False
        cutting = False
        completing = False
        late: dict[str, int] = {}
        after_switch = org.addresses[-1]
        after_switch_count = 0
        late_round = 0
        while True:
            st = screen.draw(kube)
            dns = (screen.cutover or {}).get("status") or {}
            cond = {c["type"]: c for c in st.get("conditions") or []}
            rnd = st.get("round") or {}
            if not added and cond.get("BulkCopied", {}).get("status") == "True":
                for addr in org.addresses[:3]:
                    late[addr] = d.folder_counts(dst, addr).get("INBOX", 0)
                    src.append(addr, "INBOX", [make_message(f"late mail for {addr}", domain=org.domain)])
                late_round = int(rnd.get("number", 0))
                added = True
                screen.note(
                    "bulk copy done; delivered 3 new messages to the source (waiting for a delta round)"
                )
            if (
                added
                and not cutting
                and all(d.folder_counts(dst, a).get("INBOX", 0) == n + 1 for a, n in late.items())
            ):
                screen.note(
                    f"delta round {rnd.get('number')} (after round {late_round}) carried the new mail over"
                )
                d.apply(kube, *demo_dns.manifests(NAME, NS, "example.test", pdns))
                screen.note("applied DnsCutover acme (no gates: the built-in ones hold each phase)")
                cutting = True
            if cutting and not completing and dns.get("switchedAt"):
                after_switch_count = d.folder_counts(dst, after_switch).get("INBOX", 0)
                src.append(
                    after_switch,
                    "INBOX",
                    [make_message("sent to the old MX after the switch", domain=org.domain)],
                )
                screen.note(f"MX switched; a message reached the old mailbox {after_switch} after it")
                kube.kubectl(
                    "patch",
                    "mailmigration",
                    NAME,
                    "-n",
                    NS,
                    "--type=merge",
                    "-p",
                    '{"spec":{"complete":true}}',
                )
                screen.note(
                    f"set spec.complete=true: the final round runs after drainUntil {dns.get('drainUntil')}"
                )
                completing = True
            if st.get("phase") == "Completed" and dns.get("phase") == "Enforced" and not dns.get("gates"):
                screen.draw(kube)
                break
            if st.get("phase") == "Failed":
                print(f"{RED}migration failed{RESET}")
                return 1
            time.sleep(0.7)
        print(f"\n{BOLD}verifying every mailbox (mailferry verify) ...{RESET}", flush=True)
        result = d.verify(kube, NS, NAME)
        color = GREEN if result.clean else RED
        print(f"{color}{BOLD}{result.summary()}{RESET}")
        copied = d.folder_counts(dst, after_switch).get("INBOX", 0) == after_switch_count + 1
        print(
            f"{GREEN if copied else RED}the message that reached the old mailbox after the MX swap is "
            f"{'on' if copied else 'NOT on'} the destination{RESET}"
        )
        if result.errors:
            for e in result.errors[:5]:
                print(f"  {RED}{e}{RESET}")
        return 0 if result.clean and copied else 1
    finally:
        for part in reversed(stack):
            try:
                if hasattr(part, "destroy"):
                    part.destroy()
                else:
                    part.stop()
            except Exception as exc:  # keep tearing down
                print(f"teardown: {exc}", file=sys.stderr)
        if args.keep:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
