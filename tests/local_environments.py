"""The end-to-end fixtures: local environments as processes (rtp_cli/local/testing.py), started once per
session, each with its own state directory, stopped at the end with a check that nothing is left running.

- `local_env` (also `main_stack`): exactly what a user gets from `rtp deploy --env local --detach`.
- `tuned_env`: work queue maxReceiveCount 3 -> 2 and VisibilityTimeout 1 s so retries are quick, processor
  Timeout 2 s, stage throttling 5 rps / burst 5, and a fault-injecting transform loaded with `--transform`
  (tests/fixtures/faulty_transform.py). It carries the retry, dead-letter, timeout and throttling tests.
- `incident_stack`: visibility timeout 3 s and maxReceiveCount 2 (a poison message reaches the DLQ in
  seconds, not minutes; too short for 500-record batches), and the fault-switch transform
  (tests/operate/e2e_transform.py).
- `stopped_stack`: the event source mapping disabled (the processor is stopped) and the stage throttle
  forced low (10 rps, burst 3), for the smoke-test-timeout and 429 tests.

The changed environments are the local environment's own synthesized template with properties changed:
they show the local runtime follows the template it is given. Registered in tests/conftest.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rtp_cli.local.testing import LocalInstance

FAULTY_TRANSFORM = "tests.fixtures.faulty_transform:transform"
SWITCH_TRANSFORM = "tests.operate.e2e_transform:transform"


def _started(
    tmp_path_factory: pytest.TempPathFactory, name: str, base: LocalInstance | None = None, **changes: Any
) -> Iterator[LocalInstance]:
    # Imported here, not with this module: tests/conftest.py registers these fixtures in every pytest process,
    # the fast tier's too (the xdist controller included), and none of those starts an environment.
    from rtp_cli.local.testing import start_local, stop_local, tweak_template, tweaked_assembly

    transform = changes.pop("transform", None)
    template = None
    if base is not None:
        document = json.loads(base.template_path.read_text(encoding="utf-8"))
        tweaked = tweak_template(document, **changes)
        template = tweaked_assembly(base.template_path, tweaked, tmp_path_factory.mktemp(f"{name}-assembly"))
    instance = start_local(tmp_path_factory.mktemp(name), template, transform)
    try:
        yield instance
    finally:
        stop_local(instance)


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInstance]:
    yield from _started(tmp_path_factory, "rtp-local")


@pytest.fixture(scope="session")
def main_stack(local_env: LocalInstance) -> LocalInstance:
    """The `local` template as synthesized: bulk loads, smoke test, CSV."""
    return local_env


@pytest.fixture(scope="session")
def tuned_env(local_env: LocalInstance, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInstance]:
    shipped = json.loads(local_env.template_path.read_text(encoding="utf-8"))
    redriving = [  # the work queue and the replay queue
        r
        for r in shipped["Resources"].values()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
    ]
    assert len(redriving) == 2
    assert {queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] for queue in redriving} == {3}  # shipped
    yield from _started(
        tmp_path_factory,
        "rtp-tuned",
        local_env,
        visibility=1,
        max_receive=2,
        processor_timeout=2,
        throttle=(5, 5),
        transform=FAULTY_TRANSFORM,
    )


@pytest.fixture(scope="session")
def incident_stack(
    local_env: LocalInstance, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalInstance]:
    yield from _started(
        tmp_path_factory, "day2-incident", local_env, visibility=3, max_receive=2, transform=SWITCH_TRANSFORM
    )


@pytest.fixture(scope="session")
def stopped_stack(
    local_env: LocalInstance, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalInstance]:
    yield from _started(tmp_path_factory, "day2-stopped", local_env, esm_enabled=False, throttle=(10, 3))


@pytest.fixture
def rtp() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `rtp` CLI in a subprocess against an instance: rtp(stack, "send", "--file", ...)."""

    from rtp_cli.local.testing import run_rtp

    def run(stack: LocalInstance, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_rtp(list(args), stack.state_dir, check=False, timeout=timeout)

    return run
