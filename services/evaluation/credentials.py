"""Credential references -> secrets, resolved at run time and never stored or logged.

A submission names ``credential_ref`` (e.g. ``labs/acme/eval-api-key``); the
secret is delivered out of band into the agency's secret store, which here is
either an environment variable ``<prefix><REF>`` (upper case, every character
other than a letter or digit replaced by ``_``) or a file ``<secrets_dir>/<ref>``
(e.g. a mounted Kubernetes secret). The environment wins.

A lab may only use its own secrets: the worker sends the secret to the endpoint
the lab names, so a ref outside ``labs/<lab_id>/`` would hand another lab's key
to the submitter. Intake refuses such refs too, but this module does not rely on
it: a foreign ref is refused before anything is looked up, by the same rule
(``services.trust.credentials``), so the two checks can't drift apart.

The environment-variable name is ambiguous across labs: ``labs/acme/eval-api-key``
and ``labs/acme-eval/api-key`` both map to ``..._LABS_ACME_EVAL_API_KEY``. So the
environment is consulted only for lab ids made of letters and digits, whose
variables no other lab's ref can name; other labs' secrets come from files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from services.trust.credentials import check_credential_ref


class CredentialUnavailable(Exception):
    """The reference resolves to nothing usable. The message names the ref, never a secret
    or where the store keeps it; ``detail`` (for the service log) says what was tried."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class CredentialNotOwned(Exception):
    """The reference names a secret outside the submitting lab's namespace: never looked up."""


def env_name(prefix: str, ref: str) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9]", "_", ref).upper()


def env_lookup_allowed(lab_id: str) -> bool:
    """Only then is ``<prefix>LABS_<LAB>_...`` a name no other lab's ref maps to."""
    return lab_id.isascii() and lab_id.isalnum()


def resolve_credential(
    ref: str,
    *,
    lab_id: str,
    secrets_dir: Path,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> SecretStr:
    """The secret ``ref`` of lab ``lab_id``; raises CredentialNotOwned / CredentialUnavailable."""
    refusal = check_credential_ref(ref, lab_id)
    if refusal is not None:
        raise CredentialNotOwned(f"{refusal.detail}; not looked up")
    if env_lookup_allowed(lab_id):
        variable = env_name(env_prefix, ref)
        environ = os.environ if environ is None else environ
        from_env = environ.get(variable, "").strip()
        if from_env:
            return SecretStr(from_env)
        tried = f"no ${variable} and "
    else:
        tried = "(the environment is not used for lab ids with '-', '.' or '_') "
    path = secrets_dir / ref
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise CredentialUnavailable(
            f"credential_ref {ref!r} is not in the agency's secret store",
            f"{tried}no readable file {path} ({type(exc).__name__})",
        ) from None
    if not secret:
        raise CredentialUnavailable(
            f"credential_ref {ref!r} is empty in the agency's secret store",
            f"the secret file {path} is empty",
        )
    return SecretStr(secret)


def redact(text: str, secret: SecretStr | None) -> str:
    """``text`` with every occurrence of the secret replaced (defence in depth for errors)."""
    value = secret.get_secret_value() if secret is not None else ""
    return text.replace(value, "***") if value else text
