"""``python -m services.evaluation.demo_model [--host H] [--port P] [--profiles FILE]``.

The API key comes from $DEMO_LAB_API_KEY or --api-key-file (never the command line,
where it would show in process listings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from services.evaluation.demo_model.server import DEFAULT_PROFILES, DemoModelServer, load_profiles

app = typer.Typer(add_completion=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8900,
    profiles: Annotated[Path, typer.Option(help="Profiles YAML file.")] = DEFAULT_PROFILES,
    api_key_file: Annotated[
        Path | None, typer.Option(help="File holding the API key (else $DEMO_LAB_API_KEY).")
    ] = None,
) -> None:
    """Serve the scripted demo model over the OpenAI chat-completions API."""
    key = api_key_file.read_text().strip() if api_key_file else os.environ.get("DEMO_LAB_API_KEY")
    if not key:
        raise typer.BadParameter("set DEMO_LAB_API_KEY or pass --api-key-file")
    server = DemoModelServer(api_key=key, profiles=load_profiles(profiles))
    uvicorn.run(
        server,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,  # stalled replies must not hold up a stop
    )


if __name__ == "__main__":
    app()
