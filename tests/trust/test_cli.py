"""The registry commands through typer's CliRunner, against the real PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import typer
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from typer.testing import CliRunner, Result

from services.runtime.migrations import migrate
from services.trust import TRUST_SQL
from services.trust.cli import principal_commands
from services.trust.principals import EVALUATOR, LAB
from tests.trust.support import T0, Signer

Invoke = Callable[..., Result]


@pytest.fixture
def cli(database: str, schema: str) -> Callable[..., Invoke]:
    """``cli(kind)(*args)`` runs ``<kind> ...`` as an operator would, clock at T0 + 1 h."""

    @asynccontextmanager
    async def connect() -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
        conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
            database, server_settings={"search_path": schema}
        )
        try:
            await migrate(conn, schema, TRUST_SQL)
            yield conn
        finally:
            await conn.close()

    def for_kind(kind: object = LAB) -> Invoke:
        app = typer.Typer()
        app.add_typer(
            principal_commands(kind, connect=connect, clock=lambda: T0 + timedelta(hours=1)),  # type: ignore[arg-type]
            name="x",
        )

        def invoke(*args: str, input: str | None = None) -> Result:
            return CliRunner().invoke(app, ["x", *args], input=input)

        return invoke

    return for_kind


@pytest.fixture
def lab(cli: Callable[..., Invoke]) -> Invoke:
    return cli(LAB)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def unboxed(text: str) -> str:
    """typer's error panel as one line of words."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def refused(result: Result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_lab_is_registered_listed_and_refused_twice(lab: Invoke) -> None:
    assert "registered lab acme" in ok(lab("register", "acme", "--name", "Acme AI"))
    refused(lab("register", "acme"), "error:", "registered already")
    [row] = json.loads(ok(lab("list", "--json")))
    assert (row["id"], row["name"], row["keys"]) == ("acme", "Acme AI", 0)


def test_keys_are_added_from_a_file_or_inline_and_listed(lab: Invoke, tmp_path: Path) -> None:
    ok(lab("register", "acme"))
    pem, inline = Signer("k-pem"), Signer("k-inline")
    pem_file = tmp_path / "acme.pub"
    pem_file.write_bytes(
        pem.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    assert "added key k-pem" in ok(
        lab("key", "add", "acme", "k-pem", "--public-key", str(pem_file))
    )
    ok(lab("key", "add", "acme", "k-inline", "--public-key", inline.public_base64))
    keys = json.loads(ok(lab("key", "list", "acme", "--json")))
    assert {(k["key_id"], k["state"]) for k in keys} == {("k-pem", "valid"), ("k-inline", "valid")}
    assert "k-pem" in ok(lab("key", "list"))


def test_adding_an_existing_key_id_fails_with_a_message(lab: Invoke) -> None:
    ok(lab("register", "acme"))
    ok(lab("key", "add", "acme", "k1", "--public-key", Signer().public_base64))
    refused(
        lab("key", "add", "acme", "k1", "--public-key", Signer().public_base64),
        "has a key k1 already",
        "choose a new key id",
    )


def test_another_lab_cannot_take_a_key_id(lab: Invoke) -> None:
    ok(lab("register", "acme"))
    ok(lab("register", "other"))
    ok(lab("key", "add", "acme", "k1", "--public-key", Signer().public_base64))
    refused(
        lab("key", "add", "other", "k1", "--public-key", Signer().public_base64),
        "belongs to another lab",
    )


def test_a_revoked_key_stays_revoked(lab: Invoke) -> None:
    ok(lab("register", "acme"))
    signer = Signer()
    ok(lab("key", "add", "acme", "k1", "--public-key", signer.public_base64))
    assert "revoked key k1" in ok(lab("key", "revoke", "acme", "k1", "--reason", "leak", "--yes"))
    refused(lab("key", "revoke", "acme", "k1", "--yes"), "revoked already")
    refused(
        lab("key", "add", "acme", "k1", "--public-key", signer.public_base64), "revocation is final"
    )
    refused(
        lab("key", "add", "acme", "k2", "--public-key", signer.public_base64), "registered already"
    )
    [key] = json.loads(ok(lab("key", "list", "--json")))
    assert key["state"] == "revoked"


def test_revoking_asks_first_and_a_no_changes_nothing(lab: Invoke) -> None:
    ok(lab("register", "acme"))
    ok(lab("key", "add", "acme", "k1", "--public-key", Signer().public_base64))
    result = lab("key", "revoke", "acme", "k1", input="n\n")
    refused(result, "nothing changed")
    [key] = json.loads(ok(lab("key", "list", "--json")))
    assert key["state"] == "valid"


def test_rotation_reports_how_long_the_old_key_stays_valid(lab: Invoke) -> None:
    ok(lab("register", "acme"))
    ok(
        lab(
            "key",
            "add",
            "acme",
            "k1",
            "--public-key",
            Signer().public_base64,
            "--valid-from",
            T0.isoformat(),
        )
    )
    out = ok(
        lab(
            "key",
            "rotate",
            "acme",
            "k2",
            "--public-key",
            Signer().public_base64,
            "--overlap-hours",
            "72",
        )
    )
    assert "added key k2" in out and "key k1 stays valid until 2026-03-04 13:00:00" in out
    keys = {k["key_id"]: k for k in json.loads(ok(lab("key", "list", "--json")))}
    assert keys["k1"]["valid_until"] == (T0 + timedelta(hours=73)).isoformat()


def test_removing_a_lab_revokes_its_keys(lab: Invoke) -> None:
    ok(lab("register", "acme"))
    ok(lab("key", "add", "acme", "k1", "--public-key", Signer().public_base64))
    assert "revoked keys: k1" in ok(lab("remove", "acme", "--reason", "left", "--yes"))
    assert json.loads(ok(lab("list", "--json"))) == []
    assert json.loads(ok(lab("list", "--all", "--json")))[0]["removed_at"] is not None
    refused(lab("register", "acme"), "never registered again")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["key", "add", "acme", "k1", "--public-key", "not-a-key"], "neither PEM"),
        (["key", "add", "acme", "k1", "--public-key", "AAAA"], "32 bytes"),
        (["key", "add", "acme", "k1", "--public-key", "AQ" + "A" * 41], "small-order"),
        (
            [
                "key",
                "add",
                "acme",
                "k1",
                "--public-key",
                Signer().public_base64,
                "--valid-from",
                "soon",
            ],
            "ISO 8601",
        ),
    ],
)
def test_bad_arguments_exit_2_saying_what_is_wrong(
    lab: Invoke, args: list[str], message: str
) -> None:
    result = lab(*args)
    assert result.exit_code == 2
    assert message in unboxed(result.stderr)


def test_a_private_key_file_is_refused_as_the_public_key(lab: Invoke, tmp_path: Path) -> None:
    secret = tmp_path / "lab.key"
    secret.write_bytes(
        Signer().private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    result = lab("key", "add", "acme", "k1", "--public-key", str(secret))
    assert result.exit_code == 2 and "private key" in unboxed(result.stderr)


def test_unknown_principals_and_keys_fail_with_exit_1(lab: Invoke) -> None:
    refused(
        lab("key", "add", "nobody", "k1", "--public-key", Signer().public_base64), "not registered"
    )
    refused(lab("key", "revoke", "nobody", "k1", "--yes"), "not registered")
    ok(lab("register", "acme"))
    refused(lab("key", "revoke", "acme", "k9", "--yes"), "has no key k9")
    refused(lab("remove", "nobody", "--yes"), "not registered")


def test_the_same_commands_serve_evaluators_with_their_own_texts(
    cli: Callable[..., Invoke],
) -> None:
    evaluators = cli(EVALUATOR)
    assert "registered evaluator red-team" in ok(evaluators("register", "red-team"))
    help_text = ok(evaluators("key", "add", "--help"))
    assert "signature.key_id" in help_text and "PEM" in help_text
    assert json.loads(ok(cli(LAB)("list", "--json"))) == []


def test_the_texts_put_the_right_article_before_the_kind(cli: Callable[..., Invoke]) -> None:
    evaluators, labs = cli(EVALUATOR), cli(LAB)
    assert "Register an evaluator;" in unboxed(ok(evaluators("--help")))
    assert "Register a lab;" in unboxed(ok(labs("--help")))
    refused(evaluators("register", "Red Team"), "'Red Team' is not an evaluator id")
