"""The CLI's one error type: a command stops with `CliError` (or `fail()`), and the `rtp` application prints
`error: <message>` on stderr and exits with its code, at the top (rtp_cli.app), never with a traceback.

Exit codes (as everywhere in `rtp`): 1 the command ran and found something wrong; 2 a usage, configuration
or credentials error (the default).
"""

from __future__ import annotations

from typing import NoReturn


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def fail(message: str, code: int = 2) -> NoReturn:
    """Stop the command: `error: message` on stderr, exit `code` (2 usage/config, 1 found wrong)."""
    raise CliError(message, code)
