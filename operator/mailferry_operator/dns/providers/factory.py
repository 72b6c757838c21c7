"""Build a provider from `spec.provider` and the referenced Secret's data (already base64-decoded)."""

from __future__ import annotations

from mailferry_api import egress
from mailferry_api.dnscutover import DnsCutoverSpec

from ... import settings
from .base import DnsProvider, ProviderError, RetryPolicy


def _need(secret: dict[str, str], key: str, secret_name: str | None) -> str:
    value = secret.get(key)
    if not value:
        raise ProviderError(
            "SecretKeyMissing",
            f"Secret {secret_name or '(none)'} has no key {key!r}: add it or "
            "point the provider at the right key",
        )
    return value.strip()


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        attempts=settings.current().dns_retries,
        base_delay=settings.current().dns_retry_delay,
    )


def api_urls(spec: DnsCutoverSpec) -> list[tuple[str, str]]:
    """(URL, spec field) of every HTTP API the provider of `spec` would be sent its credential at."""
    p = spec.provider
    if p.type == "powerdns" and p.powerdns is not None:
        return [(p.powerdns.api_url, "spec.provider.powerdns.apiUrl")]
    if p.type == "cloudflare" and p.cloudflare is not None:
        return [(p.cloudflare.api_url, "spec.provider.cloudflare.apiUrl")]
    if p.type == "route53" and p.route53 is not None and p.route53.endpoint:
        return [(p.route53.endpoint, "spec.provider.route53.endpoint")]
    return []


def egress_problem(spec: DnsCutoverSpec) -> ProviderError | None:
    """EgressNotAllowed when the spec would send the provider's key to a URL the installer did not allow."""
    for url, field in api_urls(spec):
        found = egress.url_problem(url, settings.current().egress_allow, field)
        if found is not None:
            return ProviderError(found.reason, found.message)
    return None


def build(spec: DnsCutoverSpec, secret: dict[str, str]) -> DnsProvider:
    refused = egress_problem(spec)
    if refused is not None:
        raise refused
    p = spec.provider
    zone = p.zone or spec.domain
    sname = p.secret_ref.name if p.secret_ref else None
    timeout = settings.current().dns_timeout
    retry = retry_policy()
    if p.type == "powerdns":
        from .powerdns import PowerDnsProvider

        assert p.powerdns is not None
        return PowerDnsProvider(
            p.powerdns.api_url,
            _need(secret, p.powerdns.api_key_key, sname),
            zone,
            server_id=p.powerdns.server_id,
            timeout=timeout,
            retry=retry,
        )
    if p.type == "rfc2136":
        from .rfc2136 import Rfc2136Provider

        assert p.rfc2136 is not None
        cfg = p.rfc2136
        tsig = _need(secret, cfg.tsig_secret_key, sname) if cfg.tsig_key_name else None
        return Rfc2136Provider(
            cfg.server,
            cfg.port,
            zone,
            cfg.tsig_key_name,
            tsig,
            cfg.tsig_algorithm,
            timeout=min(timeout, 5.0),
            retry=retry,
        )
    if p.type == "cloudflare":
        from .cloudflare import CloudflareProvider

        cf = p.cloudflare
        return CloudflareProvider(
            _need(secret, cf.api_token_key if cf else "api-token", sname),
            zone,
            zone_id=cf.zone_id if cf else None,
            api_url=cf.api_url if cf else "https://api.cloudflare.com/client/v4",
            timeout=timeout,
            retry=retry,
        )
    if p.type == "route53":
        from .route53 import Route53Provider

        assert p.route53 is not None
        r = p.route53
        return Route53Provider(
            _need(secret, r.access_key_id_key, sname),
            _need(secret, r.secret_access_key_key, sname),
            zone,
            r.hosted_zone_id,
            region=r.region,
            endpoint=r.endpoint,
            session_token=secret.get("aws-session-token"),
            timeout=timeout,
            retry=retry,
        )
    raise ProviderError("UnknownProvider", f"provider type {p.type!r} is not supported")
