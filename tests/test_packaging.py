"""`pip install .` gives a working `rtp`: every package in the wheel, every imported third-party package
declared, the project found from the working directory, and (e2e) an installed wheel run outside the
checkout validating `rtp send` input with the functions' own validator."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from stack.project import find_project_root
from tests.operate.fake_api import FakeState, fake_api

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# What the wheel ships (rtp_pipeline from handlers/, see pyproject's package-dir) and main.py (the CDK app).
SHIPPED_SOURCES = ("rtp_cli", "stack", "handlers", "main.py")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_wheel_lists_every_package_of_the_tree() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("rtp_cli", "stack")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(SETUPTOOLS["packages"]) == on_disk | {"rtp_pipeline"}
    assert SETUPTOOLS["package-dir"] == {"rtp_pipeline": "handlers/rtp_pipeline"}
    assert "record.schema.json" in SETUPTOOLS["package-data"]["rtp_pipeline"]


def _third_party_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found.update(name.partition(".")[0] for name in names)
    local = {"rtp_cli", "stack", "rtp_pipeline", "transform", "api_errors", "main"}
    return {name for name in found if name not in sys.stdlib_module_names and name not in local}


def test_every_imported_third_party_package_is_declared() -> None:
    """What the CLI, the stack and the functions import is in pyproject's dependencies (not only arriving
    through another package's extras, as jsonschema did through moto[server])."""
    declared = {
        _normalized(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])
        for requirement in PYPROJECT["project"]["dependencies"]
    }
    distributions = packages_distributions()
    sources = [ROOT / "main.py", *(p for top in SHIPPED_SOURCES[:3] for p in (ROOT / top).rglob("*.py"))]
    undeclared: dict[str, str] = {}
    for path in sources:
        for module in _third_party_imports(path):
            names = {_normalized(name) for name in distributions.get(module, [module])}
            if not names & declared:
                undeclared[module] = str(path.relative_to(ROOT))
    assert undeclared == {}


def test_the_declared_check_fails_for_an_undeclared_import(tmp_path: Path) -> None:
    """The scan above sees what a module imports, at any depth (a lazy import inside a function too)."""
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    import fastjsonschema\n    from jsonschema import Draft4Validator\n")
    assert _third_party_imports(module) == {"fastjsonschema", "jsonschema"}


def test_the_project_is_the_checkout_or_the_working_directorys(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "config").mkdir(parents=True)
    (checkout / "cdk.json").write_text("{}")
    assert find_project_root(checkout / "stack", cwd=tmp_path) == checkout
    site = tmp_path / "venv" / "site-packages"  # an installed rtp: no project next to the package
    project = tmp_path / "work" / "project"
    (project / "config").mkdir(parents=True)
    (project / "cdk.json").write_text("{}")
    (project / "data").mkdir()
    assert find_project_root(site / "stack", cwd=project / "data") == project  # nearest parent, as git
    assert find_project_root(site / "stack", cwd=tmp_path) == tmp_path  # none: the working directory


# --- the installed wheel (e2e: builds a wheel and a virtual environment, ~10 s) ---------------------------
def _run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: int = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed_rtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding only the wheel built from this tree (not editable); its dependencies come from
    the project venv's site-packages through a .pth file, so nothing is downloaded. Yields its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: building in the checkout would leave build/ and *.egg-info there
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *SHIPPED_SOURCES):
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8"}
    # The build backend (pyproject's build-system) comes as `make install` gets it for `pip install -e .`
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(source)],
        work,
        env,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (work / "dist").glob("rtp-*.whl")
    venv = work / "venv"
    created = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    installed = _run(
        [*pip, "install", "--no-deps", "--no-index", str(wheel)],
        work,
        env,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # Only now (pip must not see the project's editable rtp): the dependencies, after the venv's own.
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env
    )
    Path(purelib.stdout.strip(), "project-dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    yield venv / "bin"


def _clean_env(home: Path) -> dict[str, str]:
    """No PYTHONPATH, no checkout on the path, no AWS configuration of the machine."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "COLUMNS": "200",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


@pytest.mark.e2e
def test_installed_rtp_runs_outside_the_checkout(installed_rtp: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "anywhere"
    elsewhere.mkdir()
    env = _clean_env(tmp_path)
    where = _run(
        [
            str(installed_rtp / "python"),
            "-c",
            "import rtp_cli, rtp_pipeline.validation as v; "
            "print(rtp_cli.__file__); print(v.__file__); print(v.SCHEMA_PATH.is_file())",
        ],
        elsewhere,
        env,
    )
    cli_file, validation_file, schema_found = where.stdout.split()
    venv = installed_rtp.parent
    assert Path(cli_file).is_relative_to(venv) and Path(validation_file).is_relative_to(venv), where.stdout
    assert schema_found == "True"

    version = _run([str(installed_rtp / "rtp"), "--version"], elsewhere, env)
    assert version.returncode == 0 and version.stdout.strip() == f"rtp {PYPROJECT['project']['version']}"
    assert "(not installed)" not in version.stdout
    helped = _run([str(installed_rtp / "rtp"), "--help"], elsewhere, env)
    assert helped.returncode == 0 and "send" in helped.stdout and "Traceback" not in helped.stderr

    # Outside any project, a command that needs one says what is missing (exit 2), no traceback.
    lost = _run([str(installed_rtp / "rtp"), "send", "--env", "local", "--file", "x.jsonl"], elsewhere, env)
    assert lost.returncode == 2 and f"{elsewhere}/.rtp/local.json not found" in lost.stderr
    assert "Traceback" not in lost.stdout + lost.stderr


@pytest.mark.e2e
def test_installed_rtp_send_validates_each_line_in_a_project(installed_rtp: Path, tmp_path: Path) -> None:
    """In a project directory (cdk.json, config/) elsewhere on disk, with its local environment's state
    pointing at a fake API: bad lines are reported by number with the validator's reasons, good ones sent."""
    project = tmp_path / "my-pipeline"
    shutil.copytree(ROOT / "config", project / "config")
    shutil.copy2(ROOT / "cdk.json", project / "cdk.json")
    lines = [
        {"id": "ok-1", "type": "reading", "data": {"n": 1}},
        {"id": "no-data", "type": "reading"},
        {"id": "feb-30", "type": "reading", "data": {"n": 3}, "timestamp": "2024-02-30T10:00:00Z"},
        {"id": "bad\n", "type": "reading", "data": {"n": 4}},
    ]
    (project / "input.jsonl").write_text(
        "\n".join([*(json.dumps(line) for line in lines), "{not json"]) + "\n", encoding="utf-8"
    )
    with fake_api() as (url, state):
        _write_local_state(project / ".rtp" / "local.json", url)
        sent = _run(
            [str(installed_rtp / "rtp"), "send", "--env", "local", "--file", "../input.jsonl"],
            project / "config",  # a subdirectory: the project is found upwards, as git finds a repository
            _clean_env(tmp_path),
        )
    output = sent.stdout + sent.stderr
    assert "Traceback" not in output
    assert sent.returncode == 1, output  # the command ran and found bad lines
    assert "accepted 1 record(s)" in output
    assert "line 2: data is required" in output
    assert "line 3: timestamp is not a real date and time" in output
    assert "line 4: id does not match the required format" in output  # ECMA-262 `$`: no final newline
    assert "line 5:" in output
    assert set(_stored_ids(state)) == {"ok-1"}


def _write_local_state(path: Path, url: str) -> None:
    path.parent.mkdir(parents=True)
    state = {
        "url": url,
        "region": "us-east-1",
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "secret",
        "aws_endpoint_url": url,
        "pid": os.getpid(),  # alive for the command's duration
        "outputs": {},
    }
    path.write_text(json.dumps(state), encoding="utf-8")


def _stored_ids(state: FakeState) -> list[str]:
    return list(state.records)
