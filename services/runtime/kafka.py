"""How a client connects to Kafka: bootstrap, TLS, and its own SCRAM principal.

The broker's client listener is SASL_SSL with SCRAM-SHA-512 (deploy/kafka/);
every process connects as its own principal, whose ACLs come from the contract
registry (``contracts.acl``). Settings (prefix ``FR_``):

- ``FR_KAFKA_BOOTSTRAP``: host:port list;
- ``FR_KAFKA_SECURITY_PROTOCOL``: ``SASL_SSL`` (default) or ``PLAINTEXT``, which
  must be asked for explicitly (a broker without security, e.g. a benchmark's
  plaintext listener);
- ``FR_KAFKA_CREDENTIALS_FILE``: a JSON file ``{"username": ..., "password": ...}``
  that others cannot read (deploy/stack.sh writes one per principal, mode 0600), or
  ``FR_KAFKA_USERNAME`` + ``FR_KAFKA_PASSWORD``;
- ``FR_KAFKA_CA_FILE``: the PEM bundle that signs the broker's certificate
  (default: the system's trust store).

The password is a ``SecretStr`` from the moment it is read: it appears in no
repr, log line or exception message of this module. ``aiokafka_options`` and
``faststream_security`` hand it to the client libraries, which need it in the
clear; do not log what they return.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faststream.security import BaseSecurity, SASLScram512
from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SCRAM_MECHANISM = "SCRAM-SHA-512"


class KafkaSecurityError(ValueError):
    """Kafka settings or a credentials file that cannot be used (says why, never the secret)."""


@dataclass(frozen=True)
class KafkaCredentials:
    username: str
    password: SecretStr

    def __repr__(self) -> str:
        return f"KafkaCredentials(username={self.username!r}, password='**********')"


class KafkaSettings(BaseSettings):
    """The Kafka connection of one process; a mixin for every service's settings."""

    model_config = SettingsConfigDict(env_prefix="FR_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_security_protocol: Literal["SASL_SSL", "PLAINTEXT"] = "SASL_SSL"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_credentials_file: Path | None = None
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ca_file: Path | None = None

    @model_validator(mode="after")
    def _one_source_of_credentials(self) -> KafkaSettings:
        if self.kafka_credentials_file is not None and (
            self.kafka_username is not None or self.kafka_password is not None
        ):
            raise ValueError(
                "give either FR_KAFKA_CREDENTIALS_FILE or FR_KAFKA_USERNAME/FR_KAFKA_PASSWORD"
            )
        return self


def read_credentials(path: Path) -> KafkaCredentials:
    """A principal's credentials file: JSON with ``username`` and ``password``, a
    regular file others cannot read and nobody but its owner can write. (Group
    read is allowed: Kubernetes mounts a Secret as root:<fsGroup>, mode 0440.)"""
    try:
        info = path.stat()
    except OSError as exc:
        raise KafkaSecurityError(
            f"Kafka credentials file {path} cannot be read ({exc.strerror})"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise KafkaSecurityError(f"Kafka credentials file {path} is not a regular file")
    if info.st_mode & 0o027:
        raise KafkaSecurityError(
            f"Kafka credentials file {path} is accessible to others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); chmod 600 it"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise KafkaSecurityError(f"Kafka credentials file {path} is not valid JSON") from None
    username, password = (
        (data.get("username"), data.get("password")) if isinstance(data, dict) else (None, None)
    )
    if not isinstance(username, str) or not username or not isinstance(password, str):
        raise KafkaSecurityError(
            f"Kafka credentials file {path} needs string fields 'username' and 'password'"
        )
    return KafkaCredentials(username, SecretStr(password))


def write_credentials(path: Path, credentials: KafkaCredentials, **extra: str) -> None:
    """Write a credentials file atomically, created with mode 0600 (never wider)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = {
        "username": credentials.username,
        "password": credentials.password.get_secret_value(),
        "mechanism": SCRAM_MECHANISM,
    } | extra
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT honours the umask only for new files
        os.write(fd, (json.dumps(body, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def kafka_credentials(settings: KafkaSettings) -> KafkaCredentials | None:
    """The principal ``settings`` connect as (None on a PLAINTEXT connection)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    if settings.kafka_credentials_file is not None:
        return read_credentials(settings.kafka_credentials_file)
    if settings.kafka_username and settings.kafka_password is not None:
        return KafkaCredentials(settings.kafka_username, settings.kafka_password)
    raise KafkaSecurityError(
        "Kafka over SASL_SSL needs a principal: set FR_KAFKA_CREDENTIALS_FILE "
        "(or FR_KAFKA_USERNAME and FR_KAFKA_PASSWORD); FR_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
        "only for a broker without security"
    )


def tls_context(settings: KafkaSettings) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name against the CA file (or the
    system trust store); TLS 1.2 at least."""
    ca = settings.kafka_ca_file
    if ca is not None and not ca.is_file():
        raise KafkaSecurityError(f"Kafka CA file {ca} does not exist")
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def aiokafka_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap}
    credentials = kafka_credentials(settings)
    if credentials is None:
        return options | {"security_protocol": "PLAINTEXT"}
    return options | {
        "security_protocol": "SASL_SSL",
        "ssl_context": tls_context(settings),
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": credentials.username,
        "sasl_plain_password": credentials.password.get_secret_value(),
    }


def faststream_security(settings: KafkaSettings) -> BaseSecurity | None:
    """The ``security=`` of ``faststream.kafka.KafkaBroker`` (None for PLAINTEXT)."""
    credentials = kafka_credentials(settings)
    if credentials is None:
        return None
    return SASLScram512(
        username=credentials.username,
        password=credentials.password.get_secret_value(),
        ssl_context=tls_context(settings),
    )


def principal_name(settings: KafkaSettings) -> str | None:
    """The SCRAM user ``settings`` authenticate as (None on PLAINTEXT)."""
    credentials = kafka_credentials(settings)
    return None if credentials is None else credentials.username
