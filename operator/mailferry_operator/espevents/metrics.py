"""The ESP event endpoint's Prometheus counters (its own registry: it runs as its own Deployment).

SendingCutover's warm-up gates read `mailferry_esp_events_total` through Prometheus, summed over the
endpoint's replicas, for one domain and stream.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REGISTRY = CollectorRegistry(auto_describe=True)

events = Counter(
    "mailferry_esp_events",
    "Verified ESP events by provider, sending domain, stream and type "
    "(delivered, bounced = hard bounce, complained, deferred = soft bounce/delay, other)",
    ["provider", "domain", "stream", "type"],
    registry=REGISTRY,
)
rejected = Counter(
    "mailferry_esp_rejected",
    "Webhook requests refused, by reason (unsigned, bad_signature, stale, replayed, oversized, ...); "
    "provider and domain are empty when the path names no configured endpoint",
    ["provider", "domain", "reason"],
    registry=REGISTRY,
)
requests = Counter(
    "mailferry_esp_requests",
    "Webhook requests accepted, by provider and domain",
    ["provider", "domain", "stream"],
    registry=REGISTRY,
)


def metric_names() -> set[str]:
    names: set[str] = set()
    for collector in REGISTRY.collect():
        names.add(collector.name)
        names.update(s.name for s in collector.samples)
        if collector.type == "counter":
            names.add(collector.name + "_total")
    return names
