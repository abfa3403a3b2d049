"""The demo lab model server: POST /v1/chat/completions with scripted replies.

The request's ``model`` names a profile (profiles.yaml). Every response carries
``usage`` (whitespace token counts), so Inspect never falls back to tiktoken,
which would try to download its encoding. A bearer API key is required, like a
lab's real endpoint; the evaluation service resolves it from its secret store.

It is a plain ASGI app served by uvicorn: two JSON routes need no framework.

GET /stats reports the chat requests per profile and the SHA-256 of every bearer
token presented to /v1 (right or wrong), so a test can tell whether some secret
was ever sent here without the server echoing secrets.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PROFILES = Path(__file__).with_name("profiles.yaml")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class Rule:
    when: re.Pattern[str]
    reply: str


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    rules: tuple[Rule, ...] = ()
    default: str = ""
    delay_s: float = 0.0
    status: int = 200
    # An error body that quotes the request, as real endpoints do ("... your prompt: ...").
    echo: bool = False

    def reply_to(self, prompt: str) -> str:
        for rule in self.rules:
            if rule.when.search(prompt):
                return rule.reply
        return self.default


def load_profiles(path: Path = DEFAULT_PROFILES) -> dict[str, Profile]:
    """Profiles from a YAML file; ``extends`` copies a profile defined earlier in the file."""
    document = yaml.safe_load(path.read_text())
    raw: dict[str, dict[str, Any]] = document["profiles"]
    profiles: dict[str, Profile] = {}
    for name, spec in raw.items():
        base = profiles[spec["extends"]] if "extends" in spec else Profile(name=name)
        rules = base.rules
        if "rules" in spec:
            rules = tuple(
                Rule(re.compile(r["when"], re.IGNORECASE), str(r["reply"])) for r in spec["rules"]
            )
        profiles[name] = Profile(
            name=name,
            description=str(spec.get("description", base.description)),
            rules=rules,
            default=str(spec.get("default", base.default)),
            delay_s=float(spec.get("delay_s", base.delay_s)),
            status=int(spec.get("status", base.status)),
            echo=bool(spec.get("echo", base.echo)),
        )
    return profiles


def tokens(text: str) -> int:
    return len(text.split())


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def completion(profile: Profile, body: dict[str, Any]) -> dict[str, Any]:
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    answer = profile.reply_to(last_user_text(messages))
    prompt_tokens = sum(tokens(str(m.get("content", ""))) for m in messages)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": profile.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens(answer),
            "total_tokens": prompt_tokens + tokens(answer),
        },
    }


def error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


@dataclass
class DemoModelServer:
    """The ASGI application. ``requests`` counts chat requests per profile and
    ``bearer_sha256`` holds the digests of the bearer tokens presented (GET /stats)."""

    api_key: str
    profiles: dict[str, Profile]
    requests: Counter[str] = field(default_factory=Counter)
    bearer_sha256: set[str] = field(default_factory=set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        if method == "GET" and path == "/health":
            await self._json(send, 200, {"status": "ok"})
        elif method == "GET" and path == "/stats":
            stats = {"requests": dict(self.requests), "bearer_sha256": sorted(self.bearer_sha256)}
            await self._json(send, 200, stats)
        elif not self._authorised(scope):
            await self._json(send, 401, error("invalid API key", "invalid_api_key"))
        elif method == "GET" and path == "/v1/models":
            models = [
                {"id": name, "object": "model", "owned_by": "demo-lab"} for name in self.profiles
            ]
            await self._json(send, 200, {"object": "list", "data": models})
        elif method == "POST" and path == "/v1/chat/completions":
            await self._chat(receive, send)
        else:
            await self._json(send, 404, error(f"no route {method} {path}", "not_found"))

    def _authorised(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode(errors="replace")
        if given.startswith("Bearer "):
            token = given.removeprefix("Bearer ").encode()
            self.bearer_sha256.add(hashlib.sha256(token).hexdigest())
        return hmac.compare_digest(given, f"Bearer {self.api_key}")

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            body = json.loads(await self._body(receive))
        except json.JSONDecodeError:
            await self._json(send, 400, error("body is not JSON", "invalid_request_error"))
            return
        profile = self.profiles.get(str(body.get("model")))
        if profile is None:
            await self._json(
                send, 404, error(f"unknown model {body.get('model')!r}", "model_not_found")
            )
            return
        self.requests[profile.name] += 1
        if profile.delay_s:
            await asyncio.sleep(profile.delay_s)
        if profile.status != 200:
            message = "scripted failure"
            if profile.echo:
                messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
                quoted = " | ".join(str(m.get("content", "")) for m in messages)
                message = f"scripted failure; the request was: {quoted}"
            kind = "server_error" if profile.status >= 500 else "content_filter"
            await self._json(send, profile.status, error(message, kind))
            return
        await self._json(send, 200, completion(profile, body))

    @staticmethod
    async def _body(receive: Receive) -> bytes:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
