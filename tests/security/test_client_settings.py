"""Client settings: credentials come from a private file or explicit values, and the
password never shows in a repr, a log line or an error."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from faststream.security import SASLScram512
from pydantic import SecretStr, ValidationError

from services.runtime.kafka import (
    KafkaCredentials,
    KafkaSecurityError,
    KafkaSettings,
    aiokafka_options,
    faststream_security,
    read_credentials,
    write_credentials,
)

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    path = tmp_path / "intake.json"
    write_credentials(path, KafkaCredentials("intake", SecretStr(PASSWORD)))
    return path


def secured(**values: Any) -> KafkaSettings:
    base: dict[str, Any] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_credentials_file": None,
        "kafka_username": None,
        "kafka_password": None,
        "kafka_ca_file": None,
    }
    return KafkaSettings(**(base | values))


def test_a_credentials_file_is_written_readable_by_its_owner_only(credentials_file: Path) -> None:
    assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o666])
def test_a_credentials_file_others_can_read_or_change_is_refused(
    credentials_file: Path, mode: int
) -> None:
    credentials_file.chmod(mode)
    with pytest.raises(KafkaSecurityError, match="accessible to others"):
        read_credentials(credentials_file)


def test_a_credentials_file_its_group_may_read_is_accepted_as_kubernetes_mounts_it(
    credentials_file: Path,
) -> None:
    credentials_file.chmod(0o440)
    assert read_credentials(credentials_file).username == "intake"


def test_a_malformed_credentials_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"user": "intake", "secret": PASSWORD}))
    path.chmod(0o600)
    with pytest.raises(KafkaSecurityError) as refused:
        read_credentials(path)
    assert PASSWORD not in str(refused.value)


def test_the_password_is_not_in_the_repr_of_settings_or_credentials(
    credentials_file: Path,
) -> None:
    settings = secured(kafka_username="intake", kafka_password=PASSWORD)
    assert PASSWORD not in repr(settings) + str(settings)
    assert PASSWORD not in repr(read_credentials(credentials_file))


def test_sasl_ssl_without_a_principal_is_a_clear_error() -> None:
    with pytest.raises(KafkaSecurityError, match="FR_KAFKA_CREDENTIALS_FILE"):
        aiokafka_options(secured())


def test_a_credentials_file_and_a_username_together_are_refused(credentials_file: Path) -> None:
    with pytest.raises(ValidationError, match="either"):
        secured(kafka_credentials_file=credentials_file, kafka_username="intake")


def test_plaintext_must_be_asked_for_and_then_sends_no_credentials() -> None:
    assert KafkaSettings.model_fields["kafka_security_protocol"].default == "SASL_SSL"
    options = aiokafka_options(KafkaSettings(kafka_security_protocol="PLAINTEXT"))
    assert options["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in options


def test_aiokafka_options_use_scram_over_tls_with_the_files_principal(
    credentials_file: Path,
) -> None:
    options = aiokafka_options(secured(kafka_credentials_file=credentials_file))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "intake"
    assert options["ssl_context"].check_hostname


def test_faststream_gets_scram_512_over_tls(credentials_file: Path) -> None:
    security = faststream_security(secured(kafka_credentials_file=credentials_file))
    assert isinstance(security, SASLScram512)
    assert security.use_ssl and security.username == "intake"


def test_a_missing_ca_file_is_named_in_the_error(credentials_file: Path, tmp_path: Path) -> None:
    settings = secured(kafka_credentials_file=credentials_file, kafka_ca_file=tmp_path / "no.pem")
    with pytest.raises(KafkaSecurityError, match=r"no\.pem"):
        aiokafka_options(settings)


def test_building_client_options_logs_nothing_secret(
    credentials_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    aiokafka_options(secured(kafka_credentials_file=credentials_file))
    faststream_security(secured(kafka_credentials_file=credentials_file))
    assert PASSWORD not in caplog.text
