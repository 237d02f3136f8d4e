"""Bad input to the CLI gets the real cause at once, nothing is stopped on the way, and no traceback:
`rtp deploy --env local` with a broken `--transform` or a busy `--port`, error text with `[...]` in it,
`rtp send --file` on a directory, and a bug that reaches `main()`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import rtp_cli.app as cli
from rtp_cli.console import print_error

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def running_local(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in for a running local environment: a live process recorded in the state file, holding a
    port, so a test can see whether `rtp deploy` stopped it."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    state = {
        "env": "local",
        "url": "http://127.0.0.1:1/v1/",
        "region": "us-east-1",
        "access_key_id": "AKIALOCALTEST",
        "secret_access_key": "secret",
        "aws_endpoint_url": "http://127.0.0.1:1",
        "stack_name": "rtp-local",
        "outputs": {},
        "pid": process.pid,
        "ports": {"api": 1, "aws": 2},
    }
    (tmp_path / "state").mkdir(parents=True, exist_ok=True)
    (tmp_path / "state" / "local.json").write_text(json.dumps(state))
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _one_line(output: str) -> str:
    return " ".join(output.split())


# ---- rich markup never eats an error message ---------------------------------------------------------
def test_error_messages_keep_their_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    print_error("must match ^[a-z][a-z0-9-]{1,20}$ and [bold]this[/bold] stays [red]literal[/red]")
    assert "must match ^[a-z][a-z0-9-]{1,20}$ and [bold]this[/bold] stays [red]literal[/red]" in (
        capsys.readouterr().err
    )


def test_an_invalid_environment_name_shows_the_whole_pattern() -> None:
    result = runner.invoke(cli.app, ["deploy", "--env", "../x"])
    assert result.exit_code == 2
    assert "environment name '../x' must match ^[a-z][a-z0-9-]{1,20}$" in _one_line(result.output)


def test_a_file_name_with_brackets_is_shown_as_given() -> None:
    result = runner.invoke(
        cli.app, ["deploy", "--env", "local", "--detach", "--template", "/nowhere/[bold]t[/bold].json"]
    )
    assert result.exit_code == 2
    assert "--template /nowhere/[bold]t[/bold].json: no such file" in _one_line(result.output)


# ---- rtp deploy --env local: --transform is checked before anything is stopped or started ------------
@pytest.mark.parametrize(
    ("spec", "cause"),
    [
        ("nosuch:fn", "cannot import module 'nosuch': ModuleNotFoundError: No module named 'nosuch'"),
        ("tests.fixtures.faulty_transform:nosuch", "has no function 'nosuch'"),
        ("not a spec", "expected module:function"),
    ],
)
def test_a_broken_transform_fails_at_once_and_leaves_the_running_environment(
    running_local: subprocess.Popen[bytes], tmp_path: Path, spec: str, cause: str
) -> None:
    started = time.monotonic()
    result = runner.invoke(cli.app, ["deploy", "--env", "local", "--detach", "--transform", spec])
    assert result.exit_code == 2, result.output
    assert cause in _one_line(result.output)
    assert time.monotonic() - started < 30  # before: a 90 s wait, then a pointer to an empty log
    assert running_local.poll() is None  # the running environment was not stopped
    assert json.loads((tmp_path / "state" / "local.json").read_text())["pid"] == running_local.pid


def test_a_worker_that_dies_at_start_gives_its_cause_at_once(template_paths: Any, tmp_path: Path) -> None:
    """The transform imports fine on its own (the pre-check passes) but the processor's execution
    environment fails to start: the command ends with that cause, not a timeout."""
    env = {**os.environ, "RTP_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("RTP_LOCAL_TRANSFORM", None)
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtp_cli.app",
            "deploy",
            "--env",
            "local",
            "--detach",
            "--port",
            "0",
            "--template",
            str(template_paths["local"]),
            "--transform",
            "tests.cli.init_failure_transform:transform",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 1, completed.stdout + completed.stderr
    message = _one_line(completed.stderr)
    assert "failed to initialise" in message and "this transform refuses to start" in message, message
    assert "Traceback" not in completed.stderr
    assert elapsed < 60, elapsed
    assert not (tmp_path / "state" / "local.json").exists()


# ---- rtp deploy --env local: a busy port is found before the running environment is stopped -----------
def test_a_busy_port_fails_before_anything_is_stopped(
    running_local: subprocess.Popen[bytes], template_paths: Any
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(
            cli.app,
            [
                "deploy",
                "--env",
                "local",
                "--detach",
                "--port",
                str(port),
                "--template",
                str(template_paths["local"]),
            ],
        )
    assert result.exit_code == 2, result.output
    assert f"--port {port}: 127.0.0.1:{port} is already in use by another process" in _one_line(result.output)
    assert "Errno" not in result.output
    assert running_local.poll() is None  # before: stopped first, then OSError: [Errno 98]


def test_the_running_environment_s_own_port_is_not_busy(running_local: subprocess.Popen[bytes]) -> None:
    from rtp_cli.local.control import busy_port_problem, running_state

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        state = running_state()
        assert state is not None
        assert busy_port_problem(port, 0, state) is not None
        state["ports"] = {"api": port, "aws": 2}
        assert busy_port_problem(port, 0, state) is None  # it is freed when that environment stops


# ---- rtp send --file ---------------------------------------------------------------------------------
def test_send_file_that_is_a_directory_says_so(
    running_local: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    result = runner.invoke(cli.app, ["send", "--env", "local", "--file", str(tmp_path)])
    assert result.exit_code == 2
    assert f"--file {tmp_path}: is a directory" in _one_line(result.output)


# ---- the last line of defence --------------------------------------------------------------------------
def test_a_bug_reaching_main_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("boom [x]")

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.delenv("RTP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    error = _one_line(capsys.readouterr().err)
    assert "error: unexpected RuntimeError: boom [x] (this is a bug in rtp" in error
    monkeypatch.setenv("RTP_DEBUG", "1")
    with pytest.raises(RuntimeError, match=r"boom \[x\]"):
        cli.main()


@pytest.mark.process
def test_a_corrupt_state_file_gives_no_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "local.json").write_text("[1, 2]")  # JSON, but not the object rtp wrote
    env = {**os.environ, "RTP_STATE_DIR": str(state), "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "rtp_cli.app", "status", "--env", "local"]
    completed = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr and "error:" in completed.stderr
