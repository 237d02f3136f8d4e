"""The CLI's frame: `rtp --version`, the one error type reported at the top, the approval environments'
typed confirmation, and one definition of the project root."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import rtp_cli.app as cli
from rtp_cli import cdk
from rtp_cli.errors import CliError, fail
from rtp_cli.operate import commands
from rtp_cli.paths import PROJECT_ROOT

runner = CliRunner()


# ---- --version ----------------------------------------------------------------------------------------
def test_version_is_the_installed_distributions() -> None:
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"rtp {metadata.version('rtp')}\n"


def test_version_from_a_checkout_that_was_never_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli.metadata, "version", not_installed)
    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert runner.invoke(cli.app, ["--version"]).stdout == f"rtp {declared} (not installed)\n"
    monkeypatch.setattr(cli, "PROJECT_ROOT", Path("/nonexistent"))
    result = runner.invoke(cli.app, ["--version"])
    assert (result.exit_code, result.stdout) == (0, "rtp unknown (not installed)\n")


# ---- one error type, reported at the top ---------------------------------------------------------------
def _app_failing_with(message: str, code: int) -> typer.Typer:
    """A small app built like `rtp` (its command group class), with one command nested in a sub-app."""
    app = typer.Typer(cls=cli._Rtp)
    nested = typer.Typer()
    app.add_typer(nested, name="nested")

    @app.command()
    def top() -> None:
        fail(message, code)

    @nested.command()
    def inner() -> None:
        raise CliError(message, code)

    return app


@pytest.mark.parametrize("command", [["top"], ["nested", "inner"]])
@pytest.mark.parametrize("code", [1, 2])
def test_a_cli_error_anywhere_is_one_line_and_its_exit_code(command: list[str], code: int) -> None:
    result = CliRunner().invoke(_app_failing_with("the thing is wrong", code), command)
    assert result.exit_code == code
    assert result.stderr == "error: the thing is wrong\n"
    assert not isinstance(result.exception, CliError)  # handled, not a traceback


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),  # one line, printable
        min_size=1,
    )
)
def test_the_message_is_shown_as_written(message: str) -> None:
    """Paths, user input, `[brackets]` and `:colons:` are not rich markup or emoji codes."""
    result = CliRunner().invoke(_app_failing_with(message, 2), ["top"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"


def test_markup_in_user_input_is_no_traceback() -> None:
    """Before the one error type, an --env value with a rich closing tag crashed the error message."""
    result = runner.invoke(cli.app, ["status", "--env", "x[/bold]:smile:"])
    assert result.exit_code == 2
    assert "error: environment name 'x[/bold]:smile:' must match" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ---- the typed confirmation follows cdk.PRODUCTION_ENVIRONMENTS ---------------------------------------
@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    asked: dict[str, list[str]] = {"prompt": [], "confirm": []}
    monkeypatch.setattr(commands.sys.stdin, "isatty", lambda: True)

    def prompt(text: str, **_: Any) -> str:
        asked["prompt"].append(text)
        return "staging"

    def confirm(text: str, **_: Any) -> bool:
        asked["confirm"].append(text)
        return True

    monkeypatch.setattr(commands.typer, "prompt", prompt)
    monkeypatch.setattr(commands.typer, "confirm", confirm)
    return asked


def test_approval_environments_get_the_name_typed_back(
    monkeypatch: pytest.MonkeyPatch, terminal: dict[str, list[str]]
) -> None:
    assert cdk.is_production("prod")  # the one list (rtp_cli.cdk) is what decides
    commands._confirm_destructive("staging", "Purge the dead-letter queue", yes=False)
    assert terminal == {"prompt": [], "confirm": ["Purge the dead-letter queue in staging?"]}

    monkeypatch.setattr(cdk, "PRODUCTION_ENVIRONMENTS", frozenset({"staging"}))
    commands._confirm_destructive("staging", "Purge the dead-letter queue", yes=False)
    assert terminal["prompt"] == [
        "Purge the dead-letter queue in STAGING. Type the environment name to confirm"
    ]
    monkeypatch.setattr(cdk, "PRODUCTION_ENVIRONMENTS", frozenset({"qa"}))
    with pytest.raises(CliError, match="confirmation did not match") as refused:
        commands._confirm_destructive("qa", "Purge", yes=False)  # the terminal typed "staging", not "qa"
    assert refused.value.exit_code == 2


# ---- one project root ---------------------------------------------------------------------------------
def test_project_root_is_defined_once() -> None:
    """stack.project finds the project (a checkout, or the working directory's for an installed rtp);
    rtp_cli.paths re-exports it; nothing else works it out again."""
    assert (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "rtp_cli").is_dir()
    defining = {
        str(path.relative_to(PROJECT_ROOT))
        for package in ("rtp_cli", "stack", "bench")
        for path in (PROJECT_ROOT / package).rglob("*.py")
        if re.search(r"^PROJECT_ROOT\s*[:=]", path.read_text(encoding="utf-8"), re.MULTILINE)
    }
    assert defining == {"stack/project.py"}
