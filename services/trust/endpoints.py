"""Which evaluation endpoints the agency connects to: public https hosts only (against SSRF).

A lab names the endpoint; the agency's worker connects to it from inside the
agency's network, with a secret. So an endpoint must be an https URL, without
credentials in it, whose host resolves only to globally reachable addresses.
Refused: loopback, private (RFC 1918, ULA fc00::/7), link-local (169.254/16 with
the cloud metadata address 169.254.169.254, fe80::/10), shared/CGNAT
(100.64/10), unspecified, multicast, benchmarking, documentation and reserved
ranges, and the IPv6 forms that embed an IPv4 address (IPv4-mapped,
IPv4-compatible, NAT64, 6to4) when the embedded address is one of those. A name
is refused if *any* of its addresses is.

The operator's allowlist names exact ``host:port`` pairs that are exempt (the
demo lab server on 127.0.0.1:8900 in local development); they may use http.

The check runs twice: at submission (``check_endpoint``, a Refusal the lab
hears about), and at every connection (``http_guard``), which resolves the name
again, checks what it got and connects to exactly that address, so a name that
resolves elsewhere by then (DNS rebinding) is refused too. Redirects are never
followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import anyio
import httpx

from contracts.events.common import RejectionReason
from services.trust.refusal import Refusal, field_error

ENDPOINT_PATH = "data.evaluation_access.endpoint"
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``; raises OSError when the name does not resolve."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives for ``host`` (works under asyncio and trio)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_V4_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network' (unspecified)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (includes cloud metadata 169.254.169.254)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (includes broadcast)"),
)
_V6_REFUSED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments (includes Teredo)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing (SRv6)"),
    ("fc00::/7", "unique local (ULA)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
_V4_NETWORKS = [(ipaddress.IPv4Network(net), why) for net, why in _V4_REFUSED]
_V6_NETWORKS = [(ipaddress.IPv6Network(net), why) for net, why in _V6_REFUSED]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_problem(address: str | IPAddress) -> str | None:
    """Why the agency must not connect to ``address``, or None for a public address."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            problem = address_problem(embedded)
            return f"an IPv6 form of {embedded}, which is {problem}" if problem else None
        networks: Iterable[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]
        networks = _V6_NETWORKS
    else:
        networks = _V4_NETWORKS
    for network, why in networks:
        if ip in network:
            return why
    if not ip.is_global:  # whatever else the standard library knows is not public
        return "not globally reachable"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address reaches."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


@dataclass(frozen=True)
class EndpointPolicy:
    """The operator's exemptions: exact (host, port) pairs, e.g. ``{("127.0.0.1", 8900)}``."""

    allowlist: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EndpointPolicy:
        """From settings strings ``host:port`` (IPv6 as ``[::1]:8900``); ValueError if bad."""
        pairs = set()
        for entry in entries:
            try:
                url = httpx.URL(f"http://{entry.strip()}")
            except httpx.InvalidURL as exc:
                raise ValueError(f"allowlist entry {entry!r} is not host:port: {exc}") from None
            if not url.host or url.port is None or url.path not in ("", "/") or url.userinfo:
                raise ValueError(f"allowlist entry {entry!r} is not host:port, e.g. 127.0.0.1:8900")
            pairs.add((url.host, url.port))
        return cls(frozenset(pairs))

    def exempt(self, host: str, port: int) -> bool:
        return (host.lower(), port) in self.allowlist


def endpoint_refusal(endpoint: str, why: str) -> Refusal:
    """The ``endpoint_not_allowed`` refusal of ``endpoint``, saying why."""
    return Refusal(
        RejectionReason.ENDPOINT_NOT_ALLOWED,
        f"the evaluation endpoint {endpoint[:300]!r} is not allowed: {why}. The agency "
        "connects only to public https hosts",
        (field_error(ENDPOINT_PATH, why),),
    )


def url_problem(url: httpx.URL, policy: EndpointPolicy) -> str | None:
    """What in the URL itself is not allowed (no name resolution)."""
    if not url.host:
        return "it names no host"
    if url.userinfo:
        return "it carries credentials (user:password@); the agency sends its own"
    port = url.port or DEFAULT_PORTS.get(url.scheme)
    if port is None:
        return f"the scheme {url.scheme!r} is not https"
    if not 0 < port < 65536:
        return f"the port {port} is out of range"
    if policy.exempt(url.host, port):
        return None if url.scheme in DEFAULT_PORTS else f"the scheme {url.scheme!r} is not http(s)"
    if url.scheme != "https":
        return f"it uses {url.scheme}://, not https://"
    return None


def addresses_problem(host: str, addresses: Sequence[str]) -> str | None:
    """Why the resolved ``addresses`` of ``host`` must not be connected to, or None."""
    if not addresses:
        return f"{host} resolves to no address"
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            return f"{host} resolves to {address}, which is {problem}"
    return None


async def resolve_host(
    host: str, port: int, resolve: Resolver, timeout_s: float, *, checked: bool = True
) -> list[str] | str:
    """The addresses of ``host`` (if ``checked``: only if every one is public), else why not.

    An IP literal is its own address (no lookup); anything else goes to ``resolve``,
    so legacy spellings such as ``0x7f.1`` are judged by what they resolve to.
    """
    try:
        literal: list[str] | None = [str(ipaddress.ip_address(host))]
    except ValueError:
        literal = None
    try:
        with anyio.fail_after(timeout_s):
            addresses = literal or list(await resolve(host, port))
    except TimeoutError:
        return f"{host} could not be resolved within {timeout_s:g} s"
    except OSError as exc:
        return f"{host} does not resolve ({exc.strerror or exc})"
    problem = addresses_problem(host, addresses) if checked else None
    return problem if problem is not None else addresses


async def check_endpoint(
    endpoint: str,
    policy: EndpointPolicy,
    *,
    resolve: Resolver = system_resolver,
    timeout_s: float = 2.0,
) -> Refusal | None:
    """At submission: is ``endpoint`` a public https URL (or an allowlisted host:port)?

    Any resolution failure is a refusal too (bounded by ``timeout_s``): the lab
    can file again once its name resolves, and a name server that never answers
    can't hold the partition.
    """
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL as exc:
        return endpoint_refusal(endpoint, f"it is not a URL ({exc})")
    problem = url_problem(url, policy)
    if problem is not None:
        return endpoint_refusal(endpoint, problem)
    port = url.port or DEFAULT_PORTS[url.scheme]
    if policy.exempt(url.host, port):
        return None
    checked = await resolve_host(url.host, port, resolve, timeout_s)
    return endpoint_refusal(endpoint, checked) if isinstance(checked, str) else None
