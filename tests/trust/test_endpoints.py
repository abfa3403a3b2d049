"""The endpoint policy at submission: decision tables for addresses, URLs and names."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from contracts.events.common import RejectionReason
from services.trust.endpoints import EndpointPolicy, address_problem, check_endpoint

REFUSED_ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("100.64.0.1", "CGNAT"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.0.8", "IETF"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("::ffff:127.0.0.1", "IPv6 form of 127.0.0.1, which is loopback"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:10.1.1.1", "private"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::10.0.0.1", "IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "IPv6 form of 169.254.169.254"),
    ("2002:c0a8:0101::1", "IPv6 form of 192.168.1.1"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("not-an-address", "not an IP address"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED_ADDRESSES)
def test_addresses_that_are_not_public_are_refused_saying_why(address: str, why: str) -> None:
    problem = address_problem(address)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
     "64:ff9b::808:808"],
)  # fmt: skip
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(address) is None


def names(table: dict[str, Sequence[str]], calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(f"{host}:{port}")
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return table[host]

    return resolve


PUBLIC = names(
    {
        "lab.example.com": ["93.184.216.34"],
        "dual.example.com": ["93.184.216.34", "2606:2800:220:1::248"],
    }
)


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("http://lab.example.com/v1", "not https"),
        ("https://user:pw@lab.example.com/v1", "credentials"),
        ("https://nowhere.example.com/v1", "does not resolve"),
        ("https://localhost/v1", "does not resolve"),  # not in this name server: no fallback
        ("https://127.0.0.1/v1", "loopback"),
        ("https://[::1]:8443/v1", "loopback"),
        ("https://169.254.169.254/latest", "cloud metadata"),
        ("https://[::ffff:a9fe:a9fe]/", "cloud metadata"),
        ("ftp://lab.example.com/", "ftp"),
        ("https:///v1", "names no host"),
        ("not a url at all", "names no host"),
        ("https://lab.example.com:99999/", "port 99999 is out of range"),
    ],
)
async def test_submission_check_refuses_what_the_agency_must_not_connect_to(
    endpoint: str, why: str
) -> None:
    refusal = await check_endpoint(endpoint, EndpointPolicy(), resolve=PUBLIC)
    assert refusal is not None and refusal.reason is RejectionReason.ENDPOINT_NOT_ALLOWED
    assert why in refusal.detail, refusal.detail
    assert refusal.field_errors[0].path == "data.evaluation_access.endpoint"


@pytest.mark.parametrize(
    "endpoint", ["https://lab.example.com/v1", "https://dual.example.com:8443/"]
)
async def test_a_public_https_host_is_allowed(endpoint: str) -> None:
    assert await check_endpoint(endpoint, EndpointPolicy(), resolve=PUBLIC) is None


async def test_a_name_with_a_private_address_among_public_ones_is_refused() -> None:
    mixed = names({"lab.example.com": ["93.184.216.34", "10.0.0.7"]})
    refusal = await check_endpoint("https://lab.example.com/v1", EndpointPolicy(), resolve=mixed)
    assert refusal is not None and "resolves to 10.0.0.7, which is private" in refusal.detail


async def test_an_allowlisted_host_and_port_is_exempt_and_may_use_http() -> None:
    calls: list[str] = []
    policy = EndpointPolicy.from_entries(["127.0.0.1:8900", "[::1]:8900"])
    for endpoint in ("http://127.0.0.1:8900/v1", "https://127.0.0.1:8900/v1", "http://[::1]:8900/"):
        assert await check_endpoint(endpoint, policy, resolve=names({}, calls)) is None
    assert calls == []  # exempt hosts are not even resolved
    other_port = await check_endpoint("http://127.0.0.1:8901/v1", policy, resolve=PUBLIC)
    assert other_port is not None


async def test_a_name_server_that_never_answers_is_a_refusal_within_the_timeout() -> None:
    async def silent(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(60)
        return []

    refusal = await check_endpoint(
        "https://slow.example.com/", EndpointPolicy(), resolve=silent, timeout_s=0.2
    )
    assert refusal is not None and "within 0.2 s" in refusal.detail


async def test_the_default_port_is_what_the_name_is_resolved_and_matched_for() -> None:
    calls: list[str] = []
    await check_endpoint("https://lab.example.com/v1", EndpointPolicy(), resolve=names(
        {"lab.example.com": ["93.184.216.34"]}, calls))  # fmt: skip
    assert calls == ["lab.example.com:443"]
    policy = EndpointPolicy.from_entries(["demo.local:443"])
    assert await check_endpoint("https://demo.local/v1", policy, resolve=names({})) is None


@pytest.mark.parametrize(
    "entry", ["127.0.0.1", "http://127.0.0.1:8900", "127.0.0.1:8900/v1", "a:b"]
)
def test_allowlist_entries_must_be_exact_host_and_port(entry: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        EndpointPolicy.from_entries([entry])


async def test_the_system_resolver_refuses_localhost() -> None:
    refusal = await check_endpoint("https://localhost:8443/v1", EndpointPolicy())
    assert refusal is not None and "which is loopback" in refusal.detail
