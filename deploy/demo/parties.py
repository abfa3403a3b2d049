"""The parties of the scenario and the commands they type.

Whatever a person does is the command they would type: ``frontier-review`` for the
agency's operator and its reviewers, ``frontier-lab`` for the lab, each run as a
process with that party's own environment (its own Kafka credentials file; the lab
has no database and no operator credentials). The scenario prints each command
and what it answered.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO = ROOT / ".local" / "demo"


# Commands print for a wide terminal without colours: their lines are shown as they are.
PLAIN = {"COLUMNS": "200", "NO_COLOR": "1"}


class CommandFailed(Exception):
    """A command a party typed did not do what it should (the message quotes it)."""


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in (self.out + self.err).splitlines() if line.strip()]


def shown(argument: str | Path) -> str:
    """Paths under the checkout relative to it, so that commands read as typed there."""
    text = str(argument)
    if text.startswith(f"{ROOT}/"):
        return text.removeprefix(f"{ROOT}/")
    return text


@dataclass
class Party:
    """Someone who types commands: a name for the prompt, and their environment."""

    name: str
    env: dict[str, str]
    console: Console
    timeout_s: float = 180.0
    commands: list[str] = field(default_factory=list)

    def run(
        self,
        program: str,
        *args: str | Path,
        expect: int | None = 0,
        show: int = 4,
        quiet: bool = False,
    ) -> Ran:
        """Run ``program`` (a console script of this checkout) and print the command and its
        first ``show`` lines of output (``quiet``: neither; for the scenario's own look-ups);
        CommandFailed if it does not exit with ``expect``."""
        line = " ".join(shlex.quote(shown(a)) for a in (program, *args))
        if quiet:
            show = 0
        else:
            self.commands.append(line)
            self.console.print(
                f"  [dim]{escape(self.name)} $[/dim] {escape(line)}",
                highlight=False,
                soft_wrap=True,
            )
        try:
            done = subprocess.run(
                [str(BIN / program), *map(str, args)],
                env=self.env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"`{line}` did not finish within {self.timeout_s:.0f} s") from None
        ran = Ran(done.returncode, done.stdout, done.stderr)
        for text in ran.lines[:show]:
            self.console.print(f"    [dim]{escape(text)}[/dim]", highlight=False, soft_wrap=True)
        if len(ran.lines) > show > 0:
            self.console.print(f"    [dim]... ({len(ran.lines) - show} more lines)[/dim]")
        if expect is not None and ran.code != expect:
            output = "\n".join(ran.lines[-30:])
            raise CommandFailed(f"`{line}` exited {ran.code}, not {expect}:\n{output}")
        return ran


def environment(credentials: Path | None, *, database: bool = True) -> dict[str, str]:
    """This process's environment for a party with its own Kafka ``credentials``:
    never the operator's, and without the database for parties outside the agency."""
    env = {k: v for k, v in os.environ.items() if k != "FR_KAFKA_OPERATOR_CREDENTIALS_FILE"}
    if not database:
        env.pop("FR_DATABASE_URL", None)
    if credentials is not None:
        env["FR_KAFKA_CREDENTIALS_FILE"] = str(credentials)
    return env | PLAIN


def operator_environment() -> dict[str, str]:
    """The agency's operator: the operator's principal (the super user) and the database."""
    env = dict(os.environ)
    operator = env.get("FR_KAFKA_OPERATOR_CREDENTIALS_FILE")
    if operator:
        env["FR_KAFKA_CREDENTIALS_FILE"] = operator
    return env | PLAIN
