"""`make chaos` scenario notices-kill: the operator SIGKILLed several times while it sends one approved notice
to N recipients (default 1,000) over real SMTP submission (aiosmtpd, STARTTLS + AUTH) into a real Dovecot
over LMTP. Each kill lands at a random number of deliveries; the operator is started again at once.

Figures: kills, deliveries at each kill, recipients looked up as in doubt after a restart (found /
absent), then per recipient the copies of the notice in their INBOX: missed (0) and twice (>1) must be 0.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
for _p in (TESTS, TESTS / "e2e"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from notices_harness import NoticeOperator, drafts, notice_copies, patch_plan, plan_manifest, setup, wait_np  # noqa: E402

from fixtures._proc import wait_until  # noqa: E402
from fixtures.dovecot import Dovecot  # noqa: E402
from fixtures.kubeapi import KubeAPI  # noqa: E402
from fixtures.smtp import LMTP_CONFIG, Submission  # noqa: E402


def notices_kill(
    kube: KubeAPI, namespace: str, work: Path, recipients: int = 1000, kills: int = 3, seed: int = 7
) -> tuple[bool, dict[str, Any]]:
    rng = random.Random(seed)
    (work / "dovecot").mkdir(parents=True)
    dovecot = Dovecot(work / "dovecot", "notices", extra_config=LMTP_CONFIG).start()
    sub = Submission(work, dovecot).start()
    people = [f"user{i:04d}@acme.test" for i in range(recipients)]
    result: dict[str, Any] = {"recipients": recipients, "kills": 0, "delivered_at_kill": []}
    op = None
    try:
        setup(kube, namespace, sub, {"everyone": people}, inventory_configmap=True)
        plan = plan_manifest(sub, ["everyone"], sending={"maxPerRun": 200, "inDoubtGrace": "2s"})
        kube.apply(plan, namespace)
        op = NoticeOperator(kube, namespace, work, {"MAILFERRY_CA_FILE": str(sub.ca_cert)}).start()
        obj = wait_np(kube, namespace, lambda o: drafts(o).get("everyone", {}).get("hash"), "draft", op)
        t0 = time.monotonic()
        patch_plan(kube, namespace, {"spec": {"approvedHashes": [drafts(obj)["everyone"]["hash"]]}})
        marks = sorted(rng.sample(range(recipients // 10, recipients * 9 // 10), kills))
        for mark in marks:
            wait_until(lambda m=mark: len(sub.delivered) >= m, timeout=600, what=f"{mark} delivered")
            op.kill()
            result["kills"] += 1
            result["delivered_at_kill"].append(len(sub.delivered))
            op.start()
        obj = wait_np(
            kube, namespace, lambda o: drafts(o)["everyone"]["state"] == "Sent", "all sent", op, timeout=900
        )
        result["seconds_to_all_sent"] = round(time.monotonic() - t0, 1)
        copies = notice_copies(sub, people)
        log = op.log_text()
        result["in_doubt_found"] = log.count("was in doubt: found")
        result["in_doubt_absent"] = log.count("was in doubt: absent")
        result["smtp_transactions"] = len(sub.delivered)
        result["status_sent"] = obj["status"]["sent"]
        result["missed"] = sum(1 for n in copies.values() if n == 0)
        result["twice"] = sum(1 for n in copies.values() if n > 1)
        ok = result["missed"] == 0 and result["twice"] == 0 and result["status_sent"] == recipients
        return ok, result
    finally:
        if op is not None:
            op.stop()
        sub.stop()
        dovecot.destroy()
