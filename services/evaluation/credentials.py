"""Credential references -> secrets, resolved at run time and never stored or logged.

A submission names ``credential_ref`` (e.g. ``labs/acme/eval-api-key``); the
secret is delivered out of band into the agency's secret store, which here is
either an environment variable ``<prefix><REF>`` (upper case, every character
other than a letter or digit replaced by ``_``) or a file ``<secrets_dir>/<ref>``
(e.g. a mounted Kubernetes secret). The environment wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr


class CredentialUnavailable(Exception):
    """The reference resolves to nothing usable. The message names the ref, never a secret."""


def env_name(prefix: str, ref: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9]", "_", ref).upper()


def resolve_credential(
    ref: str,
    *,
    secrets_dir: Path,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> SecretStr:
    environ = os.environ if environ is None else environ
    from_env = environ.get(env_name(env_prefix, ref), "").strip()
    if from_env:
        return SecretStr(from_env)
    parts = Path(ref).parts
    if ".." in parts or Path(ref).is_absolute():
        raise CredentialUnavailable(f"credential_ref {ref!r} may not leave the secrets directory")
    path = secrets_dir / ref
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise CredentialUnavailable(
            f"credential_ref {ref!r}: no ${env_name(env_prefix, ref)} and no readable file "
            f"{path} ({type(exc).__name__})"
        ) from None
    if not secret:
        raise CredentialUnavailable(f"credential_ref {ref!r}: the secret file {path} is empty")
    return SecretStr(secret)


def redact(text: str, secret: SecretStr | None) -> str:
    """``text`` with every occurrence of the secret replaced (defence in depth for errors)."""
    value = secret.get_secret_value() if secret is not None else ""
    return text.replace(value, "***") if value else text
