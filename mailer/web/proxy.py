"""The client's real address and scheme behind a TLS reverse proxy, and the site's public origin.

Forwarded headers are believed only from the addresses in ``web.trusted_proxies`` (addresses or networks,
e.g. ``["127.0.0.1", "10.0.0.0/8"]``); from anybody else they are ignored, since any client can send them.
From a trusted peer:

- ``X-Forwarded-For``: read from the right, the first address that is not itself a trusted proxy is the
  client (the left part of the list is whatever the client claimed);
- ``X-Forwarded-Proto``: ``http`` or ``https``, the scheme the browser used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Parse addresses and CIDR networks. Raises ValueError naming a bad entry."""
    parsed = []
    for entry in entries:
        try:
            parsed.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry!r}") from None
    return tuple(parsed)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def public_origin(base_url: str) -> str:
    """``scheme://host[:port]`` of ``web.base_url``, as browsers send it in ``Origin`` (default ports left
    out, host in lower case)."""
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{scheme}://{host}{port}"


def forwarded_client(peer: str, forwarded_for: str, trusted: tuple[Network, ...]) -> str:
    """The client address for a request from ``peer`` carrying ``X-Forwarded-For: forwarded_for``."""
    if not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


class ForwardedHeaders:
    """Pure ASGI middleware: from a trusted proxy, ``scope["client"]`` becomes the real client and
    ``scope["scheme"]`` the browser's scheme; from anybody else nothing changes."""

    def __init__(self, app: ASGIApp, trusted: tuple[Network, ...]) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and self.trusted and client and _trusted(client[0], self.trusted):
            headers = {key.lower(): value.decode("latin-1") for key, value in scope["headers"]}
            real = forwarded_client(client[0], headers.get(b"x-forwarded-for", ""), self.trusted)
            scope = dict(scope, client=(real[:64], 0))
            proto = headers.get(b"x-forwarded-proto", "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        await self.app(scope, receive, send)


__all__ = ["ForwardedHeaders", "Network", "forwarded_client", "networks", "public_origin"]
