"""Options shared by every command, so `--env` and `--profile` read the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

EnvOption = Annotated[
    str,
    typer.Option(
        "--env", "-e", envvar="RTP_ENV", help="Environment: config/NAME.yaml (`local` is embedded)."
    ),
]
ProfileOption = Annotated[
    str | None, typer.Option("--profile", help="AWS profile (default: the standard credential chain).")
]
