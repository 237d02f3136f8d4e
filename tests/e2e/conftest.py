"""End-to-end fixtures: real `rtp deploy --env local --detach` processes, real HTTP on 127.0.0.1.

Two instances per session (each started once, stopped at the end, with a check that nothing is left
running):

- `local_env`: exactly what a user gets from `rtp deploy --env local --detach` (the shipped template).
- `tuned_env`: the same cloud assembly with properties changed in the synthesized template (work queue
  maxReceiveCount 3 -> 2 and VisibilityTimeout -> 1 s so retries are quick, processor Timeout -> 2 s,
  stage throttling 5 rps / burst 5) and a fault-injecting transform loaded with `--transform`. It shows
  the local runtime follows the template it is given, and carries the retry, dead-letter, timeout and
  throttling tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parents[2]
RTP = [sys.executable, "-m", "rtp_cli.app"]
FAULTY_TRANSFORM = "tests.fixtures.faulty_transform:transform"


@dataclass
class LocalInstance:
    state: dict[str, Any]
    state_dir: Path

    @property
    def url(self) -> str:
        return str(self.state["url"])

    @property
    def region(self) -> str:
        return str(self.state["region"])

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.state["access_key_id"], self.state["secret_access_key"])

    def output(self, key: str) -> str:
        return str(self.state["outputs"][key])

    def aws(self, service: str) -> Any:
        make: Any = boto3.client
        return make(
            service,
            endpoint_url=self.state["aws_endpoint_url"],
            region_name=self.region,
            aws_access_key_id=self.state["access_key_id"],
            aws_secret_access_key=self.state["secret_access_key"],
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        *,
        sign: bool = True,
        credentials: Credentials | None = None,
        retry_throttled: bool = True,
    ) -> requests.Response:
        """A SigV4-signed (botocore SigV4Auth) request; retries 429 like a well-behaved API client."""
        url = self.url + path.lstrip("/")
        data = body.encode() if isinstance(body, str) else body
        for attempt in range(8):
            prepared = AWSRequest(method=method, url=url, data=data, headers=dict(headers or {}))
            if sign:
                SigV4Auth(credentials or self.credentials, "execute-api", self.region).add_auth(prepared)
            response = requests.request(method, url, data=data, headers=dict(prepared.headers), timeout=30)
            if response.status_code != 429 or not retry_throttled:
                return response
            time.sleep(0.2 * 2**attempt)
        return response

    def post_records(
        self, records: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> requests.Response:
        return self.request(
            "POST",
            "records",
            json.dumps({"records": records}),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def wait_for(self, check: Callable[[], Any], timeout: float = 20, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")

    def record_status(self, record_id: str) -> dict[str, Any] | None:
        response = self.request("GET", f"records/{record_id}")
        return response.json() if response.status_code == 200 else None

    def wait_processed(self, record_id: str, timeout: float = 20) -> dict[str, Any]:
        result: dict[str, Any] = self.wait_for(lambda: self.record_status(record_id), timeout)
        return result


def rtp(
    args: list[str], state_dir: Path, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTP_STATE_DIR": str(state_dir), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("RTP_LOCAL_TRANSFORM", None)
    completed = subprocess.run(
        [*RTP, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"rtp {' '.join(args)} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


def _pid_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _start(state_dir: Path, extra: list[str]) -> Iterator[LocalInstance]:
    state_dir.mkdir(parents=True, exist_ok=True)
    started = rtp(["deploy", "--env", "local", "--detach", "--port", "0", *extra], state_dir)
    state = json.loads((state_dir / "local.json").read_text())
    assert "is serving" in started.stdout and state["url"] in started.stdout
    pid = int(state["pid"])
    workers = _children(pid)
    assert workers, "the runtime should have started one worker process per function"
    try:
        yield LocalInstance(state, state_dir)
    finally:
        stopped = rtp(["destroy", "--env", "local"], state_dir, check=False)
        assert stopped.returncode == 0, stopped.stderr
        assert _pid_gone(pid), f"local runtime pid {pid} still running after rtp destroy"
        assert all(_pid_gone(worker) for worker in workers), "worker processes left running"
        assert not (state_dir / "local.json").exists()


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInstance]:
    yield from _start(tmp_path_factory.mktemp("rtp-local"), [])


def tune_template(document: dict[str, Any]) -> dict[str, Any]:
    """Change properties in the synthesized template (what the tuned instance must then follow)."""
    for resource in document["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in props:
            assert props["RedrivePolicy"]["maxReceiveCount"] == 3  # the shipped value
            props["RedrivePolicy"]["maxReceiveCount"] = 2
            props["VisibilityTimeout"] = 1
        if resource["Type"] == "AWS::Lambda::Function" and props.get("Handler") == "queue_processor.handler":
            props["Timeout"] = 2
        if resource["Type"] == "AWS::ApiGateway::Stage":
            for setting in props["MethodSettings"]:
                setting["ThrottlingRateLimit"] = 5
                setting["ThrottlingBurstLimit"] = 5
    return document


@pytest.fixture(scope="session")
def tuned_env(local_env: LocalInstance, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInstance]:
    assembly = tmp_path_factory.mktemp("tuned-assembly") / "cdk.out"
    shutil.copytree(Path(local_env.state["template"]).parent, assembly)
    template = assembly / Path(local_env.state["template"]).name
    template.write_text(json.dumps(tune_template(json.loads(template.read_text()))))
    yield from _start(
        tmp_path_factory.mktemp("rtp-tuned"), ["--template", str(template), "--transform", FAULTY_TRANSFORM]
    )
