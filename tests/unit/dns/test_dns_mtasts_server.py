"""The MTA-STS policy server entrypoint and the policy probe, over real loopback HTTP and HTTPS."""

from __future__ import annotations

import ssl
import sys
import threading
from pathlib import Path

import httpx

from mailferry_operator.gates import probes
from mailferry_operator.mtasts import policy as mtasts
from mailferry_operator.mtasts.server import serve

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fixtures.certs import TestCA


async def test_serves_the_policy_file_rereading_it(tmp_path: Path) -> None:
    f = tmp_path / "mta-sts.txt"
    testing = mtasts.render("testing", ["mx1.dest.test", "mx.old.test"], 86400)
    f.write_bytes(testing.encode())
    httpd = serve(f, 0, "127.0.0.1")
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        text, err = await probes.fetch_policy(base + mtasts.WELL_KNOWN)
        assert err is None and text == testing and probes.compare_policy(testing, text) == []
        enforce = mtasts.render("enforce", ["mx1.dest.test"], 86400)
        f.write_bytes(enforce.encode())  # a ConfigMap update shows without a restart
        text, _ = await probes.fetch_policy(base + mtasts.WELL_KNOWN)
        assert text == enforce
        assert probes.compare_policy(testing, text) == [
            "MTA-STS policy served differs from the published one"
        ]
        assert httpx.get(base + "/other").status_code == 404
        f.unlink()
        text, err = await probes.fetch_policy(base + mtasts.WELL_KNOWN)
        assert text is None and err is not None and "404" in err
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_serves_over_https(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    pair = ca.issue("mta-sts", dns_names=("mta-sts.example.test",), ips=("127.0.0.1",))
    f = tmp_path / "mta-sts.txt"
    f.write_text("version: STSv1\r\nmode: none\r\nmax_age: 3600\r\n")
    httpd = serve(f, 0, "127.0.0.1", str(pair.cert), str(pair.key))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        r = httpx.get(f"https://127.0.0.1:{httpd.server_address[1]}{mtasts.WELL_KNOWN}", verify=ctx)
        assert r.status_code == 200 and r.headers["content-type"] == "text/plain" and "mode: none" in r.text
    finally:
        httpd.shutdown()
        httpd.server_close()
