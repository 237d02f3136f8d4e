"""Where the project is: the directory holding `cdk.json`, `config/`, `handlers/` and `.rtp/`.

- Run from a checkout (or installed editable, as `make` does): the checkout this package lives in.
- Installed from a wheel (`pip install .`): the package lives in site-packages, so the project is the
  working directory or its nearest parent holding `cdk.json` and `config/` (as git finds its repository);
  if there is none, the working directory (commands that need a config then say which file is missing).

Standard library only: `rtp --help` imports it.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_MARKERS = ("cdk.json", "config")


def is_project(directory: Path) -> bool:
    return all((directory / marker).exists() for marker in PROJECT_MARKERS)


def find_project_root(package_dir: Path | None = None, cwd: Path | None = None) -> Path:
    checkout = (package_dir or Path(__file__).resolve().parent).parent
    if is_project(checkout):
        return checkout
    try:
        here = (cwd or Path.cwd()).resolve()
    except OSError:  # the working directory was deleted under us
        return checkout
    return next((directory for directory in (here, *here.parents) if is_project(directory)), here)


PROJECT_ROOT = find_project_root()
CONFIG_DIR = PROJECT_ROOT / "config"
HANDLERS_DIR = PROJECT_ROOT / "handlers"
