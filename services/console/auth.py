"""Who may see the console: holders of a token from ``FR_CONSOLE_TOKENS_FILE``.

A token is presented as ``Authorization: Bearer <token>`` (scripts) or as the
password of HTTP basic auth, any user name (a browser's own prompt, or a URL's
``user:token@``). Tokens are kept as SHA-256 digests and compared in constant time
against every entry; no file means nobody is let in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path

MIN_TOKEN_CHARS = 16


class Tokens:
    def __init__(self, tokens: list[str]) -> None:
        if any(len(t) < MIN_TOKEN_CHARS for t in tokens):
            raise ValueError(f"console tokens must be at least {MIN_TOKEN_CHARS} characters")
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    @classmethod
    def from_file(cls, path: Path | None) -> Tokens:
        if path is None:
            return cls([])
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls([s for line in lines if (s := line.strip()) and not s.startswith("#")])

    def accepts(self, token: str) -> bool:
        presented = hashlib.sha256(token.encode()).digest()
        found = False
        for digest in self._digests:  # every entry: timing does not tell which one matched
            found |= hmac.compare_digest(presented, digest)
        return found

    def admits(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries an accepted token."""
        token = presented_token(authorization)
        return token is not None and self.accepts(token)


def presented_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` or of ``Basic base64(user:token)``; else None."""
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
