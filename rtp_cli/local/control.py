"""Start and stop the local environment (the service behind `rtp deploy/destroy --env local`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rtp_cli.local.process import pid_alive, stop_pid
from rtp_cli.local.runtime import DEFAULT_API_PORT, DEFAULT_REGION, LocalOptions, remove_state
from rtp_cli.local.template import Template
from rtp_cli.target import LOCAL_ENV, local_state_path, state_dir

if TYPE_CHECKING:
    from rtp_cli.watch import WatchConfig, WatchEvent

START_TIMEOUT_SECONDS = 90
TRANSFORM_CHECK_SECONDS = 60
_TRANSFORM_SPEC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?$")
# Imports the transform as a worker would (same sys.path order), in a throw-away interpreter.
_IMPORT_CHECK = """
import importlib, sys
module_name, _, name = sys.argv[1].partition(":")
try:
    module = importlib.import_module(module_name)
except BaseException as error:
    sys.exit(f"cannot import module {module_name!r}: {type(error).__name__}: {error}")
function = getattr(module, name or "transform", None)
if not callable(function):
    sys.exit(f"module {module_name!r} has no function {name or 'transform'!r}")
"""


class LocalStartError(RuntimeError):
    """The local environment did not come up; the message says why (the server's own error)."""


@dataclass
class Prepared:
    template_path: Path
    stack_name: str
    region: str
    synthesized: bool  # False when the cached cloud assembly was reused
    findings: list[Any]


def prepare(env: str = LOCAL_ENV, template: Path | None = None, use_cache: bool = True) -> Prepared:
    """Synthesize (or reuse) the environment's template. ConfigError for a bad config file."""
    from stack.config import load_config

    config = load_config(env)
    region = config.region or DEFAULT_REGION
    if template is not None:
        prepared = Prepared(template.resolve(), config.stack_name, region, False, [])
    else:
        from rtp_cli.synthcache import synthesize_cached

        result = synthesize_cached(env, use_cache=use_cache)
        fresh = not result.cached
        prepared = Prepared(result.template_path, result.stack_name, region, fresh, result.findings)
    if not prepared.findings:
        # Refuse what the runtime cannot honour before starting anything (the server checks again).
        Template.load(prepared.template_path, prepared.stack_name, region).check_supported()
    return prepared


def check_transform(spec: str) -> str | None:
    """Why `--transform spec` cannot work (None if it imports and names a callable). Checked before
    anything is stopped or started, instead of a worker failing at start-up."""
    if not _TRANSFORM_SPEC.match(spec):
        return f"--transform {spec}: expected module:function (e.g. mypackage.transforms:enrich)"
    handlers = Path(__file__).resolve().parents[2] / "handlers"
    project = handlers.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(handlers), str(project), os.getcwd()]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        completed = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script, one argument
            [sys.executable, "-c", _IMPORT_CHECK, spec],
            env=env,
            cwd=os.getcwd(),
            capture_output=True,
            text=True,
            timeout=TRANSFORM_CHECK_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"--transform {spec}: importing it took more than {TRANSFORM_CHECK_SECONDS} s"
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
        return f"--transform {spec}: {lines[-1] if lines else f'exit code {completed.returncode}'}"
    return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if `port` cannot be bound on `host` now (0 means any free port: never in use)."""
    if port == 0:
        return False
    try:
        with socket.create_server((host, port)):
            return False
    except OSError:
        return True


def busy_port_problem(api_port: int, aws_port: int, running: dict[str, Any] | None) -> str | None:
    """A port another process holds: checked before the running local environment is stopped, so a
    busy port leaves it running. The running environment's own ports are fine: they are freed first."""
    own = set((running or {}).get("ports", {}).values())
    for option, port in (("--port", api_port), ("--aws-port", aws_port)):
        if port in own:
            continue
        if port_in_use(port):
            return (
                f"{option} {port}: 127.0.0.1:{port} is already in use by another process "
                f"(choose another {option}, or 0 for any free port); nothing was stopped or started"
            )
    if api_port and api_port == aws_port:
        return f"--port and --aws-port are both {api_port}: they need two different ports"
    return None


def running_state() -> dict[str, Any] | None:
    path = local_state_path()
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    pid = state.get("pid")
    if isinstance(pid, int) and pid_alive(pid):
        return state
    return None


def stop_local() -> dict[str, Any] | None:
    """Stop the running local environment, if any; return its state. Leaves no process or state file."""
    path = local_state_path()
    try:
        state: dict[str, Any] | None = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        state = None
    pid = state.get("pid") if state else None
    if isinstance(pid, int) and pid != os.getpid():
        stop_pid(pid, timeout=15)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return state


def serve_command(
    prepared: Prepared, port: int, aws_port: int, transform: str | None, state: Path
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "rtp_cli.local.serve",
        "--template",
        str(prepared.template_path),
        "--stack-name",
        prepared.stack_name,
        "--region",
        prepared.region,
        "--port",
        str(port),
        "--aws-port",
        str(aws_port),
        "--state",
        str(state),
    ]
    if transform:
        command += ["--transform", transform]
    return command


def start_detached(
    prepared: Prepared,
    port: int = DEFAULT_API_PORT,
    aws_port: int = 0,
    transform: str | None = None,
    timeout: float = START_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Start the server as a background process (own session); return its state once it is serving."""
    state_path = local_state_path()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    remove_state(state_path)
    log_path = state_dir() / "local.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            serve_command(prepared, port, aws_port, transform, state_path),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=os.getcwd(),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise LocalStartError(_tail(log_path) or f"the local server exited with code {code}")
        try:
            state: dict[str, Any] = json.loads(state_path.read_text(encoding="utf-8"))
            if state.get("pid") == process.pid:
                state["log_file"] = str(log_path)
                return state
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    stop_pid(process.pid)
    raise LocalStartError(f"the local server did not start within {timeout:.0f}s; see {log_path}")


def start_foreground(
    prepared: Prepared,
    port: int,
    aws_port: int,
    transform: str | None,
    echo: TextIO | None,
    on_ready: Callable[[dict[str, Any]], None],
    *,
    watch: WatchConfig | None = None,
    watch_report: Callable[[WatchEvent], None] | None = None,
) -> int:
    """Serve `prepared` in this process until Ctrl-C (with `watch`: reloading changed code, rtp_cli.watch).
    The one place the CLI builds LocalOptions (the detached server builds its own from its argv)."""
    from rtp_cli.local.serve import serve

    options = LocalOptions(
        template_path=prepared.template_path,
        stack_name=prepared.stack_name,
        region=prepared.region,
        port=port,
        aws_port=aws_port,
        transform=transform,
        echo_logs=echo,
        watch=watch,
        watch_report=watch_report,
    )
    return serve(options, local_state_path(), on_ready=on_ready)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    starts = [index for index, line in enumerate(text) if line.startswith("error:")]
    if starts:  # the server's own error message (may span lines), without the "error:" prefix
        return "\n".join(text[starts[-1] :]).removeprefix("error:").strip()
    return "\n".join(text[-lines:])


def curl_example(state: dict[str, Any]) -> str:
    return (
        f'curl --aws-sigv4 "aws:amz:{state["region"]}:execute-api" '
        f'--user "{state["access_key_id"]}:{state["secret_access_key"]}" '
        "-H 'Content-Type: application/json' "
        '-d \'{"records": [{"type": "click", "data": {"page": "/home"}}]}\' '
        f"{state['url']}records"
    )
