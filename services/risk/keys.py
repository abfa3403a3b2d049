"""Ed25519 private keys in files: the service's audit key and a reviewer's signing key.

PKCS#8 PEM, written readable by the owner only, never overwritten. In production the
service key comes from the agency's secret store (mounted as this file); a reviewer's
key stays on the reviewer's machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from services.risk.audit import ServiceKey


class KeyFileError(Exception):
    """A key file that is missing or holds no Ed25519 private key."""


def generate(path: Path) -> Ed25519PrivateKey:
    """A new key written to ``path`` (mode 0600; refuses to overwrite), and its public
    key in PEM next to it (``path`` with the suffix ``.pub``)."""
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; a key file is never overwritten") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path(path).write_text(public_pem(key))
    return key


def public_path(path: Path) -> Path:
    return path.with_suffix(".pub")


def public_pem(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def load(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise KeyFileError(f"no key file {path}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} does not hold an Ed25519 private key")
    return key


def service_key(path: Path, key_id: str) -> ServiceKey:
    """The audit log's signing key, or KeyFileError saying how to make one."""
    try:
        return ServiceKey(key_id, load(path))
    except KeyFileError as exc:
        raise KeyFileError(
            f"the risk service signs its audit log with an Ed25519 key: {exc}. Create one "
            "with `python -m services.risk.cli audit keygen` (or mount the secret there; "
            "FR_RISK_SERVICE_KEY_FILE names the file)"
        ) from None
