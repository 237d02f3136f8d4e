"""The CLI's two consoles. On a terminal: colours, tables, live progress. Piped or in CI: plain text,
and lines are never wrapped at 80 columns, so logs and `grep` see each message whole.

Text that comes from outside the CLI (error messages, file names, API answers, input lines) goes through
`escape` (or `print_error`) before rich sees it: rich reads `[...]` as markup, so a message such as
"must match ^[a-z][a-z0-9-]{1,20}$" would otherwise lose its brackets.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=not Console().is_terminal)
err = Console(stderr=True, soft_wrap=not Console(stderr=True).is_terminal)

__all__ = ["console", "err", "escape", "print_error"]


def print_error(message: str) -> None:
    """`error: <message>` on stderr, the message shown exactly as given."""
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
