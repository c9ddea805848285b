"""`dlx lab`: the live page in the browser (the extra dlx[lab])."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from dlx.cli.common import RunsDirOpt, app, console, errors


@app.command()
@errors
def lab(
    config: Optional[str] = typer.Argument(
        None,
        help="An example's name or a config file to start from; or a finished run (its folder, id or "
        "'last') to open and scrub through its snapshots.",
        show_default=False,
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="The port (0: any free one)."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="The address to bind (loopback unless you say otherwise). The lab answers only requests "
        "addressed to it, carrying the token in the printed URL.",
    ),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser; print the URL only."),
    max_active: int = typer.Option(4, "--max-active", min=1, max=64, help="Trainings at once, all pages together."),
    runs_dir: Path = RunsDirOpt,
):
    """A live page in the browser: change a knob, press play, watch the network react.

    Every lab run is a normal run folder (dlx runs lists them). Needs the extra:
    pip install 'dlx\\[lab]'. The printed URL carries the server's access token:
    only a page opened from it can drive the lab. Ctrl-C stops the server and its
    runs as Ctrl-C stops dlx train (interrupted, checkpointed, resumable).
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from dlx.core.errors import UsageError

        raise UsageError("dlx lab needs its web server: pip install 'dlx[lab]'") from None
    from dlx.lab.server import is_loopback, serve

    con = console()

    def echo(url: str, token: str) -> None:
        con.print(f"dlx lab: [bold]{escape(url)}[/]  (Ctrl-C stops it)", soft_wrap=True)
        if not is_loopback(host):
            con.print(escape(f"bound to {host}, beyond this machine: only a page opened from this URL can use it"))

    serve(config, host, port, runs_dir, not no_browser, max_active, echo)
