"""The endpoint policy at connection time: an httpx client that can only reach allowed hosts.

``guarded_client(policy)`` is an ``httpx.AsyncClient`` that
- never follows redirects (``follow_redirects=False``); should a caller ask for
  it per request, every hop is checked like the first. With
  ``refuse_redirects=True`` a redirect is not even returned: the response is
  closed unread and the request refused, for a caller (the OpenAI SDK) that
  would otherwise see only an unexpected status;
- checks every request's URL (https, no credentials, allowlist) before it is sent;
- resolves the host itself *when it opens a connection*, refuses the
  connection if any address is not public (``endpoints.address_problem``), and
  connects to exactly the address it checked. The TLS handshake still names and
  verifies the host, so certificates work as usual; a name that resolves
  elsewhere between the submission check and the connection (DNS rebinding) is
  caught here, because this is the resolution the connection uses;
- ignores the environment's proxies and .netrc (``trust_env=False``): a proxy
  would make the checked address the proxy's, and .netrc would hand its
  credentials to whatever host the lab named. The CA bundle from
  ``SSL_CERT_FILE``/``SSL_CERT_DIR`` is still honoured.

Refusals raise ``EndpointNotAllowed`` (an ``httpx.ConnectError``, carrying the
``Refusal``); nothing is sent to a refused host, not even a TCP SYN. A caller
whose own code wraps that exception (the OpenAI SDK raises
``APIConnectionError`` from it, Inspect keeps only a message) learns of every
refusal through ``on_refusal``, called with the ``Refusal`` before it is raised.

How it is done: httpx's transport accepts no network backend, so
``GuardedTransport`` replaces the connection pool httpx built with the same
httpcore pool on ``GuardedNetworkBackend``, whose ``connect_tcp`` is the one
place every connection is opened.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from services.trust.endpoints import (
    EndpointPolicy,
    Resolver,
    endpoint_refusal,
    resolve_host,
    system_resolver,
    url_problem,
)
from services.trust.refusal import Refusal

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

OnRefusal = Callable[[Refusal], None]
"""Told of every refusal, before ``EndpointNotAllowed`` is raised for it."""


class EndpointNotAllowed(httpx.ConnectError):
    """A request or connection the endpoint policy refuses."""

    def __init__(self, refusal: Refusal, *, request: httpx.Request | None = None) -> None:
        super().__init__(str(refusal), request=request)
        self.refusal = refusal


def _refused(
    refusal: Refusal, on_refusal: OnRefusal | None, request: httpx.Request | None = None
) -> EndpointNotAllowed:
    if on_refusal is not None:
        on_refusal(refusal)
    return EndpointNotAllowed(refusal, request=request)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to checked addresses."""

    def __init__(
        self,
        policy: EndpointPolicy,
        resolve: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
        on_refusal: OnRefusal | None = None,
    ) -> None:
        self.policy = policy
        self.resolve = resolve
        self.inner = inner or httpcore.AnyIOBackend()
        self.on_refusal = on_refusal

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        exempt = self.policy.exempt(host, port)
        addresses = await resolve_host(
            host, port, self.resolve, timeout if timeout is not None else 10.0, checked=not exempt
        )
        if isinstance(addresses, str):
            if exempt:  # allowed, just unreachable: an ordinary connection error
                raise httpcore.ConnectError(addresses)
            raise _refused(endpoint_refusal(f"{host}:{port}", addresses), self.on_refusal)
        failure: Exception = httpcore.ConnectError(f"{host} resolves to no address")
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout, OSError) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _refused(endpoint_refusal(path, "it is a local socket"), self.on_refusal)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on ``GuardedNetworkBackend``, checking each request's URL first."""

    def __init__(
        self,
        policy: EndpointPolicy,
        *,
        resolve: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        retries: int = 0,
        refuse_redirects: bool = False,
        on_refusal: OnRefusal | None = None,
    ) -> None:
        super().__init__(verify=verify, limits=limits, trust_env=False, retries=retries)
        self.policy = policy
        self.refuse_redirects = refuse_redirects
        self.on_refusal = on_refusal
        # trust_env=True here reads only SSL_CERT_FILE / SSL_CERT_DIR for the CA bundle.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=True),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
            network_backend=GuardedNetworkBackend(policy, resolve, on_refusal=on_refusal),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url.copy_with(query=None, fragment=None))
        problem = url_problem(request.url, self.policy)
        if problem is not None:
            raise _refused(endpoint_refusal(url, problem), self.on_refusal, request)
        response = await super().handle_async_request(request)
        if self.refuse_redirects and response.has_redirect_location:
            await response.aclose()  # nothing of its body is read
            why = f"it answered HTTP {response.status_code} with a redirect, which is not followed"
            raise _refused(endpoint_refusal(url, why), self.on_refusal, request)
        return response


def guarded_client(
    policy: EndpointPolicy,
    *,
    resolve: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    refuse_redirects: bool = False,
    on_refusal: OnRefusal | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient bound by ``policy``: pass it as ``http_client`` to OpenAI/Inspect.

    ``refuse_redirects``: a redirect raises ``EndpointNotAllowed`` instead of being
    returned; ``on_refusal`` is told of every refusal before it is raised.
    """
    transport = GuardedTransport(
        policy,
        resolve=resolve,
        verify=verify,
        refuse_redirects=refuse_redirects,
        on_refusal=on_refusal,
    )
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=timeout,
    )
