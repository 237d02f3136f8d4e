"""Run benchmarks: `python -m bench` runs every module in bench/ that defines `main(argv) -> int`;
`python -m bench startup --runs 7` runs one, passing the remaining arguments to it."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main(argv: list[str]) -> int:
    names = _modules()
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: python -m bench [{'|'.join(names)}] [ARGS...]")
        return 0
    selected, rest = ([argv[0]], argv[1:]) if argv and argv[0] in names else (names, argv)
    status = 0
    for name in selected:
        module = importlib.import_module(f"bench.{name}")
        if hasattr(module, "main"):
            print(f"== bench.{name}", flush=True)
            status = max(status, int(module.main(rest) or 0))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
