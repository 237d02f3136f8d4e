"""`python -m rtp_cli.day2 ...`: the day-2 commands on their own (the same ones `rtp` mounts)."""

from __future__ import annotations

import typer

from rtp_cli.day2.commands import register

app = typer.Typer(help="rtp day-2 commands: send, show, logs, dlq.", no_args_is_help=True)
register(app)

if __name__ == "__main__":
    app()
