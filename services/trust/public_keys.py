"""Ed25519 public keys as operators hand them over: PEM, OpenSSH or base64 of the raw bytes.

A key is refused unless it is a canonical encoding of a curve point of large
order. A small-order key (there are eight such points, e.g. the 32 bytes
``01 00 .. 00``) lets anyone produce signatures that verify for it, so a sender
registered with one could later deny what it signed; OpenSSL does not refuse
them at verification, so the registry does at registration.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
    load_ssh_public_key,
)

KEY_BYTES = 32

# edwards25519 (RFC 8032 section 5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p).
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

_Point = tuple[int, int]


def parse_public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 public key in ``text``; ValueError saying what is wrong.

    Accepts a PEM ``PUBLIC KEY`` block, an OpenSSH ``ssh-ed25519 AAAA...`` line, or the
    base64 (standard or url-safe, padding optional) of the 32 raw bytes.
    """
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode())
        except ValueError as exc:
            raise ValueError(f"not a PEM public key: {exc}") from exc
        raw = _raw(key, "the PEM key")
    elif text.startswith("ssh-"):
        try:
            key = load_ssh_public_key(text.encode())
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not an OpenSSH public key: {exc}") from exc
        raw = _raw(key, "the OpenSSH key")
    else:
        padded = text + "=" * (-len(text) % 4)
        try:
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"neither PEM, OpenSSH nor base64: {exc}") from exc
        if len(raw) != KEY_BYTES:
            raise ValueError(f"an Ed25519 public key has {KEY_BYTES} bytes, not {len(raw)}")
    problem = public_key_problem(raw)
    if problem is not None:
        raise ValueError(problem)
    return raw


def _raw(key: object, what: str) -> bytes:
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{what} is not an Ed25519 public key ({type(key).__name__})")
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_problem(raw: bytes) -> str | None:
    """Why ``raw`` can't be registered as an Ed25519 public key, or None."""
    if len(raw) != KEY_BYTES:
        return f"an Ed25519 public key has {KEY_BYTES} bytes, not {len(raw)}"
    point = _decode(raw)
    if point is None:
        return "the bytes are not a canonical encoding of a point on the Ed25519 curve"
    eight = _double(_double(_double(point)))
    if eight == (0, 1):
        return "the key is a small-order point: anyone could forge signatures that verify for it"
    return None


def _decode(raw: bytes) -> _Point | None:
    """RFC 8032 section 5.1.3 point decoding; None for a non-canonical or off-curve input."""
    encoded = int.from_bytes(raw, "little")
    sign, y = encoded >> 255, encoded & ((1 << 255) - 1)
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        if (v * x * x + u) % _P != 0:
            return None
        x = x * _SQRT_M1 % _P
    if x == 0 and sign:
        return None
    if x % 2 != sign:
        x = _P - x
    return x, y


def _double(point: _Point) -> _Point:
    """Affine twisted-Edwards addition of a point to itself (complete: d is a non-square)."""
    x, y = point
    t = _D * x * x * y * y % _P
    return (
        2 * x * y * pow(1 + t, -1, _P) % _P,
        (y * y + x * x) * pow(1 - t, -1, _P) % _P,
    )
