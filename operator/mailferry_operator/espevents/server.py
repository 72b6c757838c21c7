"""`mailferry-esp-events`: the HTTP endpoint ESPs post bounce/complaint/delivery webhooks to.

    mailferry-esp-events --config /etc/mailferry-esp/config.yaml [--port 8443] [--metrics-port 9102]
                         [--tls-cert F --tls-key F]

POST /events/<provider>/<domain>/<stream>: verified → 200 and counted in mailferry_esp_events_total;
refused → 4xx/5xx and counted in mailferry_esp_rejected_total{reason}. GET /healthz. /metrics is on its
own port, so the port facing the Internet serves nothing but the webhooks.

A Deployment of its own, not a part of the operator: it faces the Internet and needs no Kubernetes
credentials at all (the keys come as a mounted Secret), a flood of webhooks cannot slow reconciling,
and it scales on its own. Nothing from a request body or a key reaches a log line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .config import PROVIDERS, ConfigError, Endpoint, IngestConfig, load
from .sns import SnsVerifier
from .verify import (
    EventType,
    Inbound,
    Rejected,
    ReplayCache,
    verify_generic,
    verify_mailgun,
    verify_postmark,
    verify_sendgrid,
)

log = logging.getLogger("mailferry.espevents")
SYNC_VERIFIERS = {
    "sendgrid": verify_sendgrid,
    "mailgun": verify_mailgun,
    "postmark": verify_postmark,
    "generic": verify_generic,
}


class Ingest:
    def __init__(self, config: IngestConfig) -> None:
        self.config = config
        self.replay = ReplayCache(ttl=2 * max(config.tolerance_seconds, config.sns.max_age_seconds))
        self.sns = SnsVerifier(config.sns)

    def _reject(self, ep: Endpoint | None, provider: str, reason: str) -> None:
        label = provider if provider in PROVIDERS else ""
        metrics.rejected.labels(label, ep.domain if ep else "", reason).inc()
        log.debug("rejected a %s webhook: %s", label or "request", reason)

    async def _body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        if (request.content_length or 0) > limit:
            raise Rejected("oversized", 413)
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise Rejected("oversized", 413)
        return body

    async def handle(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        key = (provider, request.match_info["domain"].lower(), request.match_info["stream"])
        ep = self.config.endpoints.get(key)
        try:
            if ep is None:
                raise Rejected("unknown_endpoint", 404)
            inbound = Inbound(request.headers, await self._body(request), time.time())
            if provider == "ses":
                types = await self.sns.verify(ep, inbound, self.replay)
            else:
                types = SYNC_VERIFIERS[provider](ep, inbound, self.replay, self.config.tolerance_seconds)
        except Rejected as exc:
            self._reject(ep, provider, exc.reason)
            return web.Response(status=exc.status, text=exc.reason + "\n")
        counted: dict[EventType, int] = {}
        for t in types:
            counted[t] = counted.get(t, 0) + 1
        for t, n in counted.items():
            metrics.events.labels(ep.provider, ep.domain, ep.stream, t).inc(n)
        metrics.requests.labels(ep.provider, ep.domain, ep.stream).inc()
        return web.Response(text="ok\n")

    async def close(self) -> None:
        await self.sns.close()


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app(config: IngestConfig) -> web.Application:
    ingest = Ingest(config)
    # aiohttp's own body limit stays above ours, so the oversized check (and its counter) is ours
    app = web.Application(client_max_size=config.max_body_bytes + 1024)
    app.router.add_post("/events/{provider}/{domain}/{stream}", ingest.handle)
    app.router.add_get("/healthz", _healthz)

    async def closing(_: web.Application) -> None:
        await ingest.close()

    app.on_cleanup.append(closing)
    return app


def metrics_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    return app


async def serve(
    config: IngestConfig,
    host: str,
    port: int,
    metrics_port: int,
    tls: ssl.SSLContext | None = None,
) -> None:
    runners = []
    for app, p, context in ((make_app(config), port, tls), (metrics_app(), metrics_port, None)):
        runner = web.AppRunner(app, access_log=None)  # an access log would carry paths and addresses only,
        await runner.setup()  # but webhook volumes make it noise
        await web.TCPSite(runner, host, p, ssl_context=context, backlog=1024).start()
        runners.append(runner)
    log.info(
        "ESP event endpoint on %s:%d, metrics on :%d, %d endpoints",
        host,
        port,
        metrics_port,
        len(config.endpoints),
    )
    try:
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mailferry-esp-events", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--metrics-port", type=int, default=9102)
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load(args.config)
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(config, args.host, args.port, args.metrics_port, tls))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
