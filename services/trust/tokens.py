"""Callers of the agency's and the labs' HTTP endpoints: bearer tokens from a file.

A token file holds one token per line (``#`` starts a comment). Tokens are kept
only as SHA-256 digests and a presented token is compared in constant time
against every entry, so neither the memory nor the timing of a check tells
which token matched. An empty file (or none) lets nobody in. This module uses
only the standard library, so the lab's decision API can take it too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path
from typing import Self

MIN_TOKEN_CHARS = 16


class CallerTokens:
    """The accepted caller tokens, as SHA-256 digests (none: nobody is accepted)."""

    def __init__(self, tokens: list[str]) -> None:
        if any(len(t) < MIN_TOKEN_CHARS for t in tokens):
            raise ValueError(f"caller tokens must be at least {MIN_TOKEN_CHARS} characters")
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    @classmethod
    def from_file(cls, path: Path | None) -> Self:
        if path is None:
            return cls([])
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls([s for line in lines if (s := line.strip()) and not s.startswith("#")])

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, token: str) -> bool:
        presented = hashlib.sha256(token.encode()).digest()
        found = False
        for digest in self._digests:  # every entry: timing does not tell which one matched
            found |= hmac.compare_digest(presented, digest)
        return found

    def admits(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header carries an accepted token."""
        token = presented_token(authorization)
        return token is not None and self.accepts(token)


def presented_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` or of ``Basic base64(user:token)`` (a browser's
    own prompt: any user name, the token as password); else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None
