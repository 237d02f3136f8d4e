"""Options shared by commands, so `--env`, `--profile` and a time window read the same everywhere."""

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
# A time window (`rtp records`, `rtp reconcile`): --since is required there; `rtp replay` makes it optional.
SinceOption = Annotated[
    str, typer.Option("--since", help="Start of the window: RFC 3339 or a duration before now (30m, 1h, 2d).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="End of the window, same forms (default: now).")
]
