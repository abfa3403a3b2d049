"""Only authenticated principals get in, and only to a broker they can verify."""

from __future__ import annotations

import ssl

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.fetch import FetchRequest
from pydantic import SecretStr

from contracts.principals import lab
from services.runtime.kafka import (
    KafkaCredentials,
    KafkaSettings,
    aiokafka_options,
    read_credentials,
)
from services.runtime.principals import deprovision_lab, provision_lab
from tests.security.support import NewLab, Stack, connect_error, fetch_error


async def test_a_service_principal_authenticates_over_tls(stack: Stack) -> None:
    assert await connect_error(stack.settings_for("intake")) is None


async def test_an_unauthenticated_plaintext_client_is_refused(stack: Stack) -> None:
    plaintext = KafkaSettings(
        kafka_bootstrap=stack.bootstrap,
        kafka_security_protocol="PLAINTEXT",
        kafka_credentials_file=None,
        kafka_username=None,
        kafka_password=None,
    )
    assert await connect_error(plaintext) is not None


async def test_a_wrong_password_is_refused(stack: Stack) -> None:
    wrong = KafkaCredentials("intake", SecretStr("not-the-password"))
    assert await connect_error(stack.settings(wrong)) == "SaslAuthenticationFailed"


async def test_an_unknown_user_is_refused(stack: Stack) -> None:
    stranger = KafkaCredentials("lab.nobody", SecretStr("guess"))
    assert await connect_error(stack.settings(stranger)) == "SaslAuthenticationFailed"


async def test_a_client_that_cannot_verify_the_broker_does_not_send_its_password(
    stack: Stack,
) -> None:
    # Without the cluster's CA the TLS handshake fails before SASL starts.
    untrusting = stack.settings_for("intake").model_copy(update={"kafka_ca_file": None})
    assert await connect_error(untrusting) in {
        ssl.SSLCertVerificationError.__name__,
        "KafkaConnectionError",
    }


async def test_a_removed_lab_can_no_longer_connect(stack: Stack, new_lab: NewLab) -> None:
    registered = await new_lab()
    settings = stack.settings(registered.file)
    assert await connect_error(settings) is None
    await deprovision_lab(stack.operator, registered.lab_id)
    assert await connect_error(settings) == "SaslAuthenticationFailed"


async def test_a_removed_labs_open_session_can_no_longer_read_its_feed(
    stack: Stack, new_lab: NewLab
) -> None:
    registered = await new_lab()
    feed = registered.feeds["answers"]
    session = AIOKafkaAdminClient(**aiokafka_options(stack.settings(registered.file)))
    await session.start()  # authenticated before the removal
    try:
        request = FetchRequest(0, 1, 1 << 20, 1, [(feed, [(0, 0, 1 << 20)])])
        before = (await session._send_request(request)).topics[0][1][0][1]
        await deprovision_lab(stack.operator, registered.lab_id)
        after = (await session._send_request(request)).topics[0][1][0][1]
    finally:
        await session.close()
    assert (before, after) == (0, 29)  # NONE, then TOPIC_AUTHORIZATION_FAILED


async def test_provisioning_a_lab_twice_keeps_its_credential(stack: Stack, new_lab: NewLab) -> None:
    first = await new_lab("t-twice")
    password = read_credentials(first.file).password.get_secret_value()
    again = await provision_lab(stack.operator, "t-twice", first.file)
    assert read_credentials(again.file).password.get_secret_value() == password
    assert await connect_error(stack.settings(again.file)) is None
    assert await fetch_error(stack.settings(again.file), again.feeds["answers"]) is None
    assert lab("t-twice").name == again.credentials.username
