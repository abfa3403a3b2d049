"""The connection-time endpoint guard with real sockets: redirects, private names, rebinding."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from services.trust.endpoints import EndpointPolicy, check_endpoint
from services.trust.http_guard import EndpointNotAllowed, guarded_client
from services.trust.refusal import Refusal
from tests.trust.local_servers import (
    Certificate,
    Reply,
    chat_completion,
    make_certificate,
    redirect,
    serving,
)

if TYPE_CHECKING:
    from inspect_ai.model import Model


def resolver(names: dict[str, Sequence[str]], calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Resolution as a name server would answer: ``names`` (host -> addresses), else NXDOMAIN."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        if host not in names:
            raise OSError(f"{host}: name or service not known")
        return names[host]

    return resolve


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path, "lab.test")


async def test_an_allowlisted_loopback_server_is_reached(certificate: Certificate) -> None:
    async with serving(Reply()) as (port, seen):
        policy = EndpointPolicy.from_entries([f"127.0.0.1:{port}"])
        async with guarded_client(policy) as client:
            response = await client.get(f"http://127.0.0.1:{port}/v1/models")
    assert (response.status_code, response.text) == (200, "hello from the lab")
    assert seen.hosts == [f"127.0.0.1:{port}"]


async def test_a_redirect_to_a_private_address_is_returned_not_followed(
    certificate: Certificate,
) -> None:
    async with serving(Reply(body=b"metadata secrets")) as (private_port, private):
        target = f"http://127.0.0.1:{private_port}/latest/meta-data/"
        async with serving(redirect(target), tls=certificate.server_context()) as (port, lab):
            policy = EndpointPolicy.from_entries([f"127.0.0.1:{port}"])
            async with guarded_client(policy, verify=certificate.client_context()) as client:
                response = await client.post(f"https://127.0.0.1:{port}/v1/chat/completions")
    assert response.status_code == 307
    assert response.headers["location"] == target
    assert len(lab.requests) == 1
    assert private.connections == 0


async def test_a_redirect_hop_is_checked_even_when_a_caller_asks_to_follow(
    certificate: Certificate,
) -> None:
    async with serving(Reply(body=b"metadata secrets")) as (private_port, private):
        target = f"https://127.0.0.1:{private_port}/latest/meta-data/"
        async with serving(redirect(target), tls=certificate.server_context()) as (port, _):
            policy = EndpointPolicy.from_entries([f"127.0.0.1:{port}"])
            async with guarded_client(policy, verify=certificate.client_context()) as client:
                with pytest.raises(EndpointNotAllowed) as refused:
                    await client.get(f"https://127.0.0.1:{port}/v1", follow_redirects=True)
    assert "127.0.0.1 resolves to 127.0.0.1, which is loopback" in str(refused.value)
    assert refused.value.refusal.reason == "endpoint_not_allowed"
    assert private.connections == 0


async def test_a_downgrade_to_http_is_refused_before_any_lookup(certificate: Certificate) -> None:
    calls: list[str] = []
    async with serving(redirect("http://lab.test/v1")) as (port, _):
        policy = EndpointPolicy.from_entries([f"127.0.0.1:{port}"])
        client = guarded_client(policy, resolve=resolver({"127.0.0.1": ["127.0.0.1"]}, calls))
        async with client:
            with pytest.raises(EndpointNotAllowed, match=r"uses http://, not https://"):
                await client.get(f"http://127.0.0.1:{port}/", follow_redirects=True)
    assert "lab.test" not in calls


async def test_a_name_that_resolves_to_a_private_address_is_never_connected(
    certificate: Certificate,
) -> None:
    async with serving(Reply(), tls=certificate.server_context()) as (port, seen):
        names = resolver({"lab.test": ["127.0.0.1"]})
        async with guarded_client(
            EndpointPolicy(), resolve=names, verify=certificate.client_context()
        ) as client:
            with pytest.raises(EndpointNotAllowed, match=r"lab\.test resolves to 127\.0\.0\.1"):
                await client.get(f"https://lab.test:{port}/v1")
    assert seen.connections == 0


@pytest.mark.parametrize(
    "addresses",
    [
        ["93.184.216.34", "10.0.0.7"],
        ["93.184.216.34", "169.254.169.254"],
        ["2606:2800:220:1::248", "::ffff:127.0.0.1"],
        ["fd12:3456::1"],
        ["100.64.1.1"],
    ],
)
async def test_one_private_address_among_public_ones_refuses_the_name(
    addresses: list[str],
) -> None:
    async with guarded_client(EndpointPolicy(), resolve=resolver({"lab.test": addresses})) as c:
        with pytest.raises(EndpointNotAllowed, match=r"lab\.test resolves to"):
            await c.get("https://lab.test/v1")


async def test_the_connection_goes_to_the_address_the_guard_resolved(
    certificate: Certificate,
) -> None:
    """lab.test exists only in the guard's resolver: reaching it proves the connection
    used the address the guard resolved (and checked), while TLS verified the name."""
    async with serving(Reply(), tls=certificate.server_context()) as (port, seen):
        policy = EndpointPolicy.from_entries([f"lab.test:{port}"])
        names = resolver({"lab.test": ["127.0.0.1"]})
        async with guarded_client(
            policy, resolve=names, verify=certificate.client_context()
        ) as client:
            response = await client.get(f"https://lab.test:{port}/v1")
    assert response.status_code == 200
    assert seen.hosts == [f"lab.test:{port}"]
    assert seen.server_names == ["lab.test"]


async def test_a_name_rebound_to_a_private_address_after_submission_is_refused_at_connect(
    certificate: Certificate,
) -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> Sequence[str]:
        return next(answers)

    async with serving(Reply(), tls=certificate.server_context()) as (port, seen):
        endpoint = f"https://lab.test:{port}/v1"
        assert await check_endpoint(endpoint, EndpointPolicy(), resolve=rebinding) is None
        async with guarded_client(
            EndpointPolicy(), resolve=rebinding, verify=certificate.client_context()
        ) as client:
            with pytest.raises(EndpointNotAllowed, match="loopback"):
                await client.get(endpoint)
    assert seen.connections == 0


async def test_the_environments_proxy_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(Reply(body=b"proxy")) as (proxy_port, proxy), serving(Reply()) as (port, _):
        for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy_port}")
        policy = EndpointPolicy.from_entries([f"127.0.0.1:{port}"])
        async with guarded_client(policy) as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
    assert response.text == "hello from the lab"
    assert proxy.connections == 0


@pytest.mark.parametrize(
    "url",
    ["https://user:secret@lab.test/v1", "ftp://lab.test/", "http://lab.test/v1"],
)
async def test_urls_the_policy_refuses_never_resolve(url: str) -> None:
    calls: list[str] = []
    client = guarded_client(EndpointPolicy(), resolve=resolver({"lab.test": ["8.8.8.8"]}, calls))
    async with client:
        with pytest.raises((EndpointNotAllowed, httpx.UnsupportedProtocol)):
            await client.get(url)
    assert calls == []


async def test_inspect_calls_the_lab_through_the_guarded_client(certificate: Certificate) -> None:
    """The wiring for the Inspect child: get_model(..., http_client=guarded_client(...))."""
    async with serving(chat_completion("4"), tls=certificate.server_context()) as (port, seen):
        client = guarded_client(
            EndpointPolicy.from_entries([f"lab.test:{port}"]),
            resolve=resolver({"lab.test": ["127.0.0.1"]}),
            verify=certificate.client_context(),
        )
        model = lab_model(f"https://lab.test:{port}/v1", client)
        output = await model.generate("2 + 2?")
        await client.aclose()
    assert output.completion == "4"
    assert seen.requests[0]["request"] == "POST /v1/chat/completions HTTP/1.1"
    assert seen.requests[0]["authorization"] == "Bearer secret"


async def test_inspect_cannot_be_redirected_to_a_private_address(certificate: Certificate) -> None:
    async with serving(chat_completion("metadata")) as (private_port, private):
        target = f"http://127.0.0.1:{private_port}/latest/meta-data/"
        async with serving(redirect(target), tls=certificate.server_context()) as (port, lab):
            client = guarded_client(
                EndpointPolicy.from_entries([f"lab.test:{port}"]),
                resolve=resolver({"lab.test": ["127.0.0.1"]}),
                verify=certificate.client_context(),
            )
            model = lab_model(f"https://lab.test:{port}/v1", client)
            with pytest.raises(Exception) as failed:
                await model.generate("2 + 2?")
            await client.aclose()
    assert "307" in str(failed.value)
    assert len(lab.requests) == 1
    assert private.connections == 0


async def test_a_caller_that_refuses_redirects_gets_a_refusal_and_nothing_of_the_body(
    certificate: Certificate,
) -> None:
    told: list[Refusal] = []
    async with serving(Reply(body=b"metadata secrets")) as (private_port, private):
        target = f"http://127.0.0.1:{private_port}/latest/meta-data/"
        moved = Reply(307, "Temporary Redirect", (("Location", target),), b"REDIRECT-BODY")
        async with serving(moved, tls=certificate.server_context()) as (port, lab):
            client = guarded_client(
                EndpointPolicy.from_entries([f"127.0.0.1:{port}"]),
                verify=certificate.client_context(),
                refuse_redirects=True,
                on_refusal=told.append,
            )
            async with client:
                with pytest.raises(EndpointNotAllowed) as refused:
                    await client.post(f"https://127.0.0.1:{port}/v1/chat/completions?k=v")
    assert refused.value.refusal.reason == "endpoint_not_allowed"
    assert "HTTP 307 with a redirect" in refused.value.refusal.detail
    assert "k=v" not in refused.value.refusal.detail, "the query stays out of the refusal"
    assert "REDIRECT-BODY" not in str(refused.value) and target not in str(refused.value)
    assert told == [refused.value.refusal]
    assert len(lab.requests) == 1
    assert private.connections == 0


async def test_a_response_that_is_not_a_redirect_is_returned_when_redirects_are_refused() -> None:
    async with serving(Reply(404, "Not Found")) as (port, _):
        policy = EndpointPolicy.from_entries([f"127.0.0.1:{port}"])
        async with guarded_client(policy, refuse_redirects=True) as client:
            response = await client.get(f"http://127.0.0.1:{port}/v1")
    assert response.status_code == 404


async def test_every_refusal_is_told_before_it_is_raised(certificate: Certificate) -> None:
    told: list[Refusal] = []
    names = resolver({"lab.test": ["10.0.0.7"]})
    async with guarded_client(EndpointPolicy(), resolve=names, on_refusal=told.append) as client:
        with pytest.raises(EndpointNotAllowed) as at_connect:
            await client.get("https://lab.test/v1")
        with pytest.raises(EndpointNotAllowed) as at_url:
            await client.get("http://lab.test/v1")
    assert told == [at_connect.value.refusal, at_url.value.refusal]
    assert "private (RFC 1918)" in told[0].detail and "not https" in told[1].detail


async def test_inspect_sees_a_refusal_as_a_connection_error_caused_by_it(
    certificate: Certificate,
) -> None:
    """What the Inspect child relies on: the SDK wraps the refusal (and Inspect's retrying
    wraps that), ``on_refusal`` keeps it."""
    import openai
    import tenacity

    told: list[Refusal] = []
    async with serving(redirect("http://169.254.169.254/latest/meta-data/")) as (port, lab):
        client = guarded_client(
            EndpointPolicy.from_entries([f"127.0.0.1:{port}"]),
            refuse_redirects=True,
            on_refusal=told.append,
        )
        model = lab_model(f"http://127.0.0.1:{port}/v1", client)
        assert model.api.http_client is client  # type: ignore[attr-defined]
        with pytest.raises(tenacity.RetryError) as failed:
            await model.generate("2 + 2?")
        await client.aclose()
    error = failed.value.last_attempt.exception()
    assert isinstance(error, openai.APIConnectionError)
    assert isinstance(error.__cause__, EndpointNotAllowed)
    assert told == [error.__cause__.refusal]
    assert len(lab.requests) == 1


def lab_model(base_url: str, client: httpx.AsyncClient) -> Model:
    """Inspect's openai-api model on ``client``, as the evaluation's Inspect process builds it."""
    from inspect_ai.model import GenerateConfig, get_model

    return get_model(
        "openai-api/lab/demo",
        base_url=base_url,
        api_key="secret",
        memoize=False,
        max_retries=0,
        http_client=client,
        config=GenerateConfig(max_retries=0, timeout=10),
    )
