"""End-to-end fixtures for the day-2 commands: local environments served by the real local runtime
(`python -m rtp_cli.local.serve`, what `rtp deploy --env local --detach` runs), each from the synthesized
`local` template with a few properties changed, each with its own state directory (RTP_STATE_DIR).

- `main_stack`: the template unchanged.
- `incident_stack`: short work-queue visibility timeout and maxReceiveCount 2 (so a poison message reaches
  the DLQ in seconds, not minutes), and the fault-switch transform (tests/operate/e2e_transform.py).
- `stopped_stack`: the event source mapping disabled (Enabled: false: the processor is stopped) and the
  stage throttle forced low, for the smoke-test-timeout and 429 tests.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rtp_cli.local.process import stop_pid
from rtp_cli.target import Target, local_target

ROOT = Path(__file__).resolve().parents[2]


def rtp_argv() -> list[str]:
    """How to run `rtp` as a user does (the console script's module), from this interpreter."""
    return [sys.executable, "-m", "rtp_cli.app"]


@dataclass
class LocalStack:
    state_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "local.json").read_text())

    def target(self) -> Target:
        return local_target(self.state_dir / "local.json")

    def env(self) -> dict[str, str]:
        return {**os.environ, "RTP_STATE_DIR": str(self.state_dir)}


def _of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def tweak(
    template: dict[str, Any],
    *,
    visibility: int | None = None,
    max_receive: int | None = None,
    esm_enabled: bool = True,
    throttle: tuple[float, int] | None = None,
) -> dict[str, Any]:
    out = copy.deepcopy(template)
    for queue in _of_type(out, "AWS::SQS::Queue"):
        props = queue["Properties"]
        if "RedrivePolicy" in props:  # the work queue
            if visibility is not None:
                props["VisibilityTimeout"] = visibility
            if max_receive is not None:
                props["RedrivePolicy"]["maxReceiveCount"] = max_receive
    mappings = _of_type(out, "AWS::Lambda::EventSourceMapping")
    assert mappings, "the template has no event source mapping"
    for mapping in mappings:
        mapping["Properties"]["Enabled"] = esm_enabled
    if throttle is not None:
        stages = _of_type(out, "AWS::ApiGateway::Stage")
        assert stages
        for stage in stages:
            for setting in stage["Properties"].get("MethodSettings", []):
                if "ThrottlingRateLimit" in setting:
                    setting["ThrottlingRateLimit"], setting["ThrottlingBurstLimit"] = throttle
    return out


def start_stack(
    root: Path, template_path: Path, template: dict[str, Any], transform: str | None
) -> LocalStack:
    root.mkdir(parents=True, exist_ok=True)
    # The template's assets are referenced relative to it: write the changed copy next to the original.
    path = template_path.with_name(f"{template_path.stem}.{root.name}.json")
    path.write_text(json.dumps(template))
    state_dir = root / "state"
    log = root / "serve.log"
    argv = [
        sys.executable,
        "-m",
        "rtp_cli.local.serve",
        "--template",
        str(path),
        "--stack-name",
        "rtp-local",
        "--region",
        "us-east-1",
        "--port",
        "0",
        "--state",
        str(state_dir / "local.json"),
    ]
    if transform:
        argv += ["--transform", transform]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (state_dir / "local.json").is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"local runtime did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return LocalStack(state_dir, process, log)


def stop_stack(stack: LocalStack) -> None:
    stop_pid(stack.process.pid, timeout=15)
    stack.process.wait(timeout=5)


@pytest.fixture(scope="session")
def local_template(
    template_paths: dict[str, Path], templates: dict[str, dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    return template_paths["local"], templates["local"]


@pytest.fixture(scope="session")
def main_stack(
    tmp_path_factory: pytest.TempPathFactory, local_template: tuple[Path, dict[str, Any]]
) -> Iterator[LocalStack]:
    """The `local` template as synthesized: bulk loads, smoke test, CSV."""
    path, template = local_template
    stack = start_stack(tmp_path_factory.mktemp("day2-main"), path, tweak(template), None)
    yield stack
    stop_stack(stack)


@pytest.fixture(scope="session")
def incident_stack(
    tmp_path_factory: pytest.TempPathFactory, local_template: tuple[Path, dict[str, Any]]
) -> Iterator[LocalStack]:
    """Visibility timeout 3 s and maxReceiveCount 2 (a poison message reaches the DLQ in seconds, not
    minutes; too short for 500-record batches), and the fault-switch transform."""
    path, template = local_template
    stack = start_stack(
        tmp_path_factory.mktemp("day2-incident"),
        path,
        tweak(template, visibility=3, max_receive=2),
        "tests.operate.e2e_transform:transform",
    )
    yield stack
    stop_stack(stack)


@pytest.fixture(scope="session")
def stopped_stack(
    tmp_path_factory: pytest.TempPathFactory, local_template: tuple[Path, dict[str, Any]]
) -> Iterator[LocalStack]:
    path, template = local_template
    stack = start_stack(
        tmp_path_factory.mktemp("day2-stopped"),
        path,
        tweak(template, esm_enabled=False, throttle=(10, 3)),
        None,
    )
    yield stack
    stop_stack(stack)


@pytest.fixture
def rtp(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `rtp` CLI in a subprocess against a stack: rtp(stack, "send", "--file", ...)."""

    def run(stack: LocalStack, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*rtp_argv(), *args],
            cwd=ROOT,
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def scan(target: Target, prefix: str) -> list[dict[str, Any]]:
    """Every table item whose pk starts with `prefix` (a full scan: fine for a test table)."""
    db = target.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": target.output("TableName"),
        "FilterExpression": "begins_with(pk, :p)",
        "ExpressionAttributeValues": {":p": {"S": prefix}},
    }
    while True:
        page = db.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
