"""A tiny MTA-STS policy server: `python -m mailferry_operator.mtasts.server`.

Serves the policy file (the ConfigMap key mounted as a file, re-read on every request so a
ConfigMap update shows without a restart) at /.well-known/mta-sts.txt as text/plain, over HTTPS
when a certificate is given (or plain HTTP behind an Ingress that terminates TLS).

Options / env: --policy-file (MAILFERRY_MTASTS_POLICY_FILE, default /etc/mta-sts/mta-sts.txt),
--port (MAILFERRY_MTASTS_PORT, 8443), --bind (0.0.0.0), --cert/--key (MAILFERRY_MTASTS_TLS_CERT/KEY).
"""

from __future__ import annotations

import argparse
import os
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .policy import WELL_KNOWN


def make_handler(policy_file: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mailferry-mta-sts"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, b"ok\n")
                return
            if path != WELL_KNOWN:
                self._send(404, b"not found\n")
                return
            try:
                body = policy_file.read_bytes()
            except OSError:
                self._send(404, b"no policy\n")
                return
            self._send(200, body)

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet, one line per request
            return

    return Handler


def serve(
    policy_file: Path, port: int, bind: str = "0.0.0.0", cert: str | None = None, key: str | None = None
) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer((bind, port), make_handler(policy_file))
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    return httpd


def main(argv: list[str] | None = None) -> None:
    env = os.environ.get
    ap = argparse.ArgumentParser(description="serve an MTA-STS policy file")
    ap.add_argument("--policy-file", default=env("MAILFERRY_MTASTS_POLICY_FILE", "/etc/mta-sts/mta-sts.txt"))
    ap.add_argument("--port", type=int, default=int(env("MAILFERRY_MTASTS_PORT", "8443")))
    ap.add_argument("--bind", default=env("MAILFERRY_MTASTS_BIND", "0.0.0.0"))
    ap.add_argument("--cert", default=env("MAILFERRY_MTASTS_TLS_CERT"))
    ap.add_argument("--key", default=env("MAILFERRY_MTASTS_TLS_KEY"))
    args = ap.parse_args(argv)
    httpd = serve(Path(args.policy_file), args.port, args.bind, args.cert, args.key)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
