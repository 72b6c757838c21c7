"""`mailferry-operator`: run the Kopf operator with mailferry's handlers.

    mailferry-operator [--namespace NS ... | --all-namespaces]
                       [--peering NAME [--priority N] | --standalone]
                       [--metrics-port 8080] [--liveness-port 8081]
                       [--log-level info] [--log-format text|json]

Namespaces also come from MAILFERRY_WATCH_NAMESPACES (comma-separated). Kopf keeps its handler
progress in annotations (`mailferry.io/...`), never in status; owner references clean up MailboxSyncs
and Jobs, so the only finalizer is the one Kopf needs to stop a MailMigration's daemon.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Sequence

from . import settings

log = logging.getLogger("mailferry")

# Kopf imports these client libraries when they are installed (for type checks and fallback logins);
# the operator uses none of them (its login handler and one httpx client). Where they are installed
# (a developer's or the test venv) they cost ~60 MB of RSS and 0.4 s per process; the image has none.
UNUSED_CLIENT_LIBRARIES = ("kubernetes", "kubernetes_asyncio", "pykube")


def block_unused_client_libraries() -> None:
    """Make `import kubernetes` (etc.) fail in this process, before Kopf is imported. Only for the
    operator's own process: `main()` calls it (a test importing this module is not affected)."""
    for name in UNUSED_CLIENT_LIBRARIES:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # None: ImportError on import


def _namespaces(args: argparse.Namespace) -> list[str]:
    found: list[str] = []
    for value in [*(args.namespace or []), *settings.current().watch_namespaces]:
        found += [ns.strip() for ns in value.split(",") if ns.strip()]
    return sorted(set(found))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mailferry-operator", description=__doc__.splitlines()[0])
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", help="namespace to watch (repeat or comma-separate)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the whole cluster")
    peer = p.add_mutually_exclusive_group()
    peer.add_argument(
        "--peering", metavar="NAME", help="coordinate with other operators via this KopfPeering"
    )
    peer.add_argument("--standalone", action="store_true", help="no peering (the default)")
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority (default: random, so replicas of one Deployment never tie)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=settings.current().metrics_port,
        help="serve Prometheus /metrics here (0: off)",
    )
    p.add_argument("--metrics-address", default="0.0.0.0")
    p.add_argument(
        "--liveness-port",
        type=int,
        default=settings.current().liveness_port,
        help="serve Kopf's liveness probe at /healthz here (0: off)",
    )
    p.add_argument(
        "--log-level",
        default=settings.current().log_level,
        choices=["debug", "info", "warning", "error"],
    )
    p.add_argument("--log-format", default=settings.current().log_format, choices=["text", "json"])
    args = p.parse_args(argv)
    if not args.all_namespaces and not _namespaces(args):
        p.error("give --namespace NS (or MAILFERRY_WATCH_NAMESPACES) or --all-namespaces")
    return args


def peering_priority(args: argparse.Namespace) -> int:
    """Kopf pauses every operator that shares the highest priority, so replicas of one Deployment
    (same args) must not tie: without an explicit --priority each takes a random one."""
    if args.priority is not None:
        return int(args.priority)
    return random.SystemRandom().randint(1, 2**31 - 1) if args.peering else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    block_unused_client_libraries()
    import kopf

    from . import activities, logctx, metrics
    from .dnscutover import handlers as dnscutover_handlers  # noqa: F401 - importing registers them
    from .mailmigration import handlers as mailmigration_handlers  # noqa: F401 - registers them
    from .notices import handlers as notices_handlers  # noqa: F401 - registers them
    from .sendingcutover import handlers as sendingcutover_handlers  # noqa: F401 - registers them

    kopf.configure(
        debug=args.log_level == "debug",
        verbose=args.log_level in ("debug", "info"),
        quiet=args.log_level in ("warning", "error"),
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logctx.install(text=args.log_format != "json")  # every line names namespace/Kind/name
    logging.getLogger().setLevel(args.log_level.upper())
    # The Kubernetes client logs request bodies at debug level: keep it quiet (Secrets are read).
    for noisy in ("httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_address)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    namespaces = [] if args.all_namespaces else _namespaces(args)
    activities.clusterwide = bool(args.all_namespaces)
    log.info(
        "mailferry-operator starting: %s, %s, metrics :%s",
        "all namespaces" if args.all_namespaces else f"namespaces {','.join(namespaces)}",
        f"peering {args.peering}" if args.peering else "standalone",
        args.metrics_port or "off",
    )
    kopf.run(
        clusterwide=bool(args.all_namespaces),
        namespaces=namespaces,
        standalone=not args.peering,
        peering_name=args.peering,
        priority=peering_priority(args),
        liveness_endpoint=liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
