"""Local environments as processes, for the end-to-end tests and the benchmarks (which import nothing from
tests/): started exactly as a user starts one (`rtp deploy --env local --detach`, optionally from a
template with properties changed and a `--transform`), stopped with `rtp destroy --env local`, checking
that the runtime and every worker process are gone. Each environment has its own state directory
(RTP_STATE_DIR), so several run side by side.

The in-process counterpart (handlers imported here, no processes) is `rtp_cli.local.inprocess`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from rtp_cli.target import Target, local_target

ROOT = Path(__file__).resolve().parents[2]


def rtp_argv() -> list[str]:
    """How to run `rtp` as a user does (the console script's module), from this interpreter."""
    return [sys.executable, "-m", "rtp_cli.app"]


def run_rtp(
    args: list[str], state_dir: Path, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, against the environment whose state is in `state_dir`."""
    env = {**os.environ, "RTP_STATE_DIR": str(state_dir), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("RTP_LOCAL_TRANSFORM", None)
    completed = subprocess.run(  # noqa: S603 - our own interpreter and CLI
        [*rtp_argv(), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"rtp {' '.join(args)} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


# --- templates with properties changed ------------------------------------------------------------
def _of_type(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in document["Resources"].values() if r["Type"] == kind]


def tweak_template(
    document: dict[str, Any],
    *,
    visibility: int | None = None,
    max_receive: int | None = None,
    esm_enabled: bool = True,
    throttle: tuple[float, int] | None = None,
    processor_timeout: int | None = None,
) -> dict[str, Any]:
    """A copy of a synthesized template with the work queue's visibility timeout and maxReceiveCount,
    the event source mapping's Enabled, the stage's throttle (rate, burst) and the processor's Timeout
    changed: what the local runtime must then follow."""
    out = copy.deepcopy(document)
    for queue in _of_type(out, "AWS::SQS::Queue"):
        props = queue["Properties"]
        if "RedrivePolicy" in props:  # the work and replay queues
            if visibility is not None:
                props["VisibilityTimeout"] = visibility
            if max_receive is not None:
                props["RedrivePolicy"]["maxReceiveCount"] = max_receive
    mappings = _of_type(out, "AWS::Lambda::EventSourceMapping")
    assert mappings, "the template has no event source mapping"
    for mapping in mappings:
        mapping["Properties"]["Enabled"] = esm_enabled
        if processor_timeout is not None:
            function = mapping["Properties"]["FunctionName"]["Ref"]
            out["Resources"][function]["Properties"]["Timeout"] = processor_timeout
    if throttle is not None:
        stages = _of_type(out, "AWS::ApiGateway::Stage")
        assert stages
        for stage in stages:
            for setting in stage["Properties"].get("MethodSettings", []):
                if "ThrottlingRateLimit" in setting:
                    setting["ThrottlingRateLimit"], setting["ThrottlingBurstLimit"] = throttle
    return out


def tweaked_assembly(template_path: Path, document: dict[str, Any], directory: Path) -> Path:
    """A copy of the template's cloud assembly in `directory` (its assets are referenced relative to
    the template) with `document` as the template; returns the new template's path."""
    shutil.copytree(template_path.parent, directory, dirs_exist_ok=True)
    path = directory / template_path.name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


# --- one running environment ----------------------------------------------------------------------
@dataclass
class LocalInstance:
    state: dict[str, Any]
    state_dir: Path
    workers: tuple[int, ...] = ()  # the worker processes at start (all must be gone after destroy)

    @property
    def url(self) -> str:
        return str(self.state["url"])

    @property
    def region(self) -> str:
        return str(self.state["region"])

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.state["access_key_id"], self.state["secret_access_key"])

    @property
    def template_path(self) -> Path:
        return Path(self.state["template"])

    def output(self, key: str) -> str:
        return str(self.state["outputs"][key])

    def target(self) -> Target:
        return local_target(self.state_dir / "local.json")

    def env(self) -> dict[str, str]:
        """The process environment for a CLI run against this instance."""
        return {**os.environ, "RTP_STATE_DIR": str(self.state_dir)}

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


def start_local(state_dir: Path, template: Path | None = None, transform: str | None = None) -> LocalInstance:
    """`rtp deploy --env local --detach` on a free port (from `template` when given, else the project's
    own synthesis), with its state in `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    extra = [
        *(["--template", str(template)] if template else []),
        *(["--transform", transform] if transform else []),
    ]
    started = run_rtp(["deploy", "--env", "local", "--detach", "--port", "0", *extra], state_dir)
    state = json.loads((state_dir / "local.json").read_text(encoding="utf-8"))
    assert "is serving" in started.stdout and state["url"] in started.stdout
    workers = children(int(state["pid"]))
    assert workers, "the runtime should have started one worker process per function"
    return LocalInstance(state, state_dir, tuple(workers))


def stop_local(instance: LocalInstance) -> None:
    """`rtp destroy --env local`; the runtime and every worker it started must be gone."""
    pid = int(instance.state["pid"])
    stopped = run_rtp(["destroy", "--env", "local"], instance.state_dir, check=False)
    assert stopped.returncode == 0, stopped.stderr
    assert pid_gone(pid), f"local runtime pid {pid} still running after rtp destroy"
    assert all(pid_gone(worker) for worker in instance.workers), "worker processes left running"
    assert not (instance.state_dir / "local.json").exists()


def pid_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def children(pid: int) -> list[int]:
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


def api_client(instance: LocalInstance) -> Any:
    """A SigV4-signing client of the environment's API (rtp_cli.operate.api_client.ApiClient)."""
    from rtp_cli.operate.api_client import ApiClient

    target = instance.target()
    return ApiClient(target.api_url, target.region, target.credentials)


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """`check()`'s first truthy value, polled every `interval` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def delete_dead_letter(target: Target, batch_id: str, timeout: float = 10) -> None:
    """Delete a batch's claim check from the environment's DLQ (a test leaving a shared DLQ as found)."""
    sqs, url = target.client("sqs"), target.output("DeadLetterQueueUrl")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
        ).get("Messages", [])
        mine = [m for m in messages if json.loads(m["Body"]).get("batchId") == batch_id]
        for message in mine:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if mine:
            return


def watched_handlers_copy(
    template_path: Path, stack_name: str, directory: Path
) -> tuple[Any, Path, list[Any]]:
    """For an in-process `rtp deploy --env local --watch` on a copy of handlers/ (a test then edits the
    copy, never the checkout): (the runtime's LocalOptions, the copy, the list its watch events go to)."""
    from rtp_cli.local.runtime import LocalOptions
    from rtp_cli.paths import PROJECT_ROOT
    from rtp_cli.watch import WatchConfig

    handlers = directory / "handlers"
    shutil.copytree(
        PROJECT_ROOT / "handlers", handlers, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    events: list[Any] = []
    options = LocalOptions(
        template_path=template_path,
        stack_name=stack_name,
        port=0,
        watch=WatchConfig(handlers_dir=handlers),
        watch_report=events.append,
    )
    return options, handlers, events
