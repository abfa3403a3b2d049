"""``python -m contracts generate [--allow-breaking]`` | ``python -m contracts check``.

generate: (re)write contracts/schemas/ from the models; refuses a breaking change
          unless --allow-breaking (a deliberate break, visible in review).
check:    exit 1 with one line per problem when the committed schemas are
          missing, stale, or the models are not backward compatible with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.schemas import SCHEMA_DIR, check, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts",
        description="Generate or check the committed event JSON Schemas.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write the JSON Schemas from the models")
    gen.add_argument("--allow-breaking", action="store_true", help="write even a breaking change")
    gen.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=argparse.SUPPRESS)
    chk = commands.add_parser("check", help="fail on missing, stale or incompatible schemas")
    chk.add_argument("--dir", type=Path, default=SCHEMA_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.command == "generate":
        refused = generate(args.dir, allow_breaking=args.allow_breaking)
        for problem in refused:
            print(problem, file=sys.stderr)
        if refused:
            print(
                f"refused: {len(refused)} breaking change(s); add a new event type instead, "
                "or pass --allow-breaking for a deliberate break",
                file=sys.stderr,
            )
            return 1
        print(f"schemas written to {args.dir}")
        return 0

    problems = check(args.dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) with the committed schemas", file=sys.stderr)
        return 1
    print("schemas up to date and backward compatible")
    return 0


if __name__ == "__main__":
    sys.exit(main())
