"""The CLI's two consoles. On a terminal: colours, tables, live progress. Piped or in CI: plain text,
and lines are never wrapped at 80 columns, so logs and `grep` see each message whole."""

from __future__ import annotations

from rich.console import Console

console = Console(soft_wrap=not Console().is_terminal)
err = Console(stderr=True, soft_wrap=not Console(stderr=True).is_terminal)
