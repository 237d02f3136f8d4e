"""The local environment as one object: emulation + resources + functions + API + event source mapping.

`LocalEnvironment.start()` brings everything up from a synthesized template and returns the state that
`.rtp/local.json` records; `stop()` tears it all down (worker processes, pollers, servers). The
foreground command and the detached server process (`python -m rtp_cli.local.serve`) both use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import string
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import boto3
from botocore.config import Config as BotoConfig

from rtp_cli.local.esm import EventSourcePoller, mapping_specs
from rtp_cli.local.functions import FunctionRuntime, function_specs, prespawn, python_function_count
from rtp_cli.local.gateway import LocalApi
from rtp_cli.local.iam import RoleCheck
from rtp_cli.local.logs import LogShipper
from rtp_cli.local.resources import provision
from rtp_cli.local.template import Note, Template, TemplateError

if TYPE_CHECKING:
    from rtp_cli.watch import LocalWatcher, WatchConfig, WatchEvent

DEFAULT_API_PORT = 8765
DEFAULT_REGION = "us-east-1"


@dataclass
class LocalOptions:
    template_path: Path
    stack_name: str
    env_name: str = "local"
    region: str = DEFAULT_REGION
    host: str = "127.0.0.1"
    port: int = DEFAULT_API_PORT
    aws_port: int = 0
    transform: str | None = None
    echo_logs: TextIO | None = None
    access_key_id: str = ""
    secret_access_key: str = ""
    watch: WatchConfig | None = None  # `--watch`: reload changed code without a restart (rtp_cli.watch)
    watch_report: Callable[[WatchEvent], None] | None = None


def new_credentials() -> tuple[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    key = "AKIALOCAL" + "".join(secrets.choice(alphabet) for _ in range(11))
    secret = secrets.token_urlsafe(30)[:40]
    return key, secret


@dataclass
class LocalEnvironment:
    options: LocalOptions
    notes: list[Note] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    _moto: Any = None
    _shipper: LogShipper | None = None
    _functions: FunctionRuntime | None = None
    _api: LocalApi | None = None
    _pollers: list[EventSourcePoller] = field(default_factory=list)
    _workers: list[Any] = field(default_factory=list)
    _watcher: LocalWatcher | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> dict[str, Any]:
        started = time.monotonic()
        opts = self.options
        if not opts.access_key_id:
            opts.access_key_id, opts.secret_access_key = new_credentials()
        template = Template.load(opts.template_path, opts.stack_name, opts.region)
        self.notes = template.check_supported()  # refuses anything it cannot honour, before starting
        # Workers preload the runtime libraries while the emulation and the resources come up.
        self._workers = prespawn(python_function_count(template))
        from rtp_cli.local.emulation import start_emulation  # heavy import (moto): only when we start

        self._moto = start_emulation(opts.host, opts.aws_port, opts.access_key_id, opts.secret_access_key)
        try:
            return self._start(template, started)
        except BaseException:
            self.stop()
            raise

    def _start(self, template: Template, started: float) -> dict[str, Any]:
        opts = self.options
        host, aws_port = self._moto.get_host_and_port()
        endpoint = f"http://{host}:{aws_port}"
        session = boto3.Session(
            aws_access_key_id=opts.access_key_id,
            aws_secret_access_key=opts.secret_access_key,
            region_name=opts.region,
        )
        config = BotoConfig(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=32)

        def client(service: str) -> Any:
            make: Any = session.client
            return make(service, endpoint_url=endpoint, config=config)

        physical = provision(template, client)
        from rtp_cli.local.emulation import InProcessLogs  # moto runs in this process (start_emulation)

        self._shipper = LogShipper(InProcessLogs(client("logs")), echo=opts.echo_logs)
        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback for HOME
            "LANG": "C.UTF-8",
            "TMPDIR": os.environ.get("TMPDIR", "/tmp"),  # noqa: S108 - Lambda's /tmp
            "AWS_REGION": opts.region,
            "AWS_DEFAULT_REGION": opts.region,
            "AWS_ACCESS_KEY_ID": opts.access_key_id,
            "AWS_SECRET_ACCESS_KEY": opts.secret_access_key,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_EXECUTION_ENV": "AWS_Lambda_rtp_local",
            # X-Ray needs the AWS daemon; locally the Powertools tracer is a no-op.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        if opts.transform:
            base_env["RTP_LOCAL_TRANSFORM"] = opts.transform
        specs = function_specs(template)
        if opts.watch is not None:
            from rtp_cli.watch import LocalWatcher

            self._watcher = LocalWatcher(opts.watch, template, opts.watch_report)
            specs = self._watcher.initial_specs(specs)  # serve the watched files as they are now
        # Every invocation's AWS calls are checked against the function's role in the template.
        self._functions = FunctionRuntime(specs, base_env, self._shipper, RoleCheck(template).refused)
        if self._watcher is not None:
            self._watcher.attach(self._functions)
        self._api = LocalApi(
            template,
            self._functions,
            self._shipper,
            access_key=opts.access_key_id,
            secret_key=opts.secret_access_key,
            host=opts.host,
            port=opts.port,
        )
        self._functions.warm(self._workers)
        self._workers = []
        sqs = client("sqs")
        self._pollers = [
            EventSourcePoller(spec, sqs, self._functions, opts.region) for spec in mapping_specs(template)
        ]
        for poller in self._pollers:
            poller.start()
        self._api.admin = self._admin
        self._api.start()
        if self._watcher is not None:
            self._watcher.start()
        outputs = self._outputs(template, self._api.url)
        self.state = {
            "env": opts.env_name,
            "url": self._api.url,
            "region": opts.region,
            "access_key_id": opts.access_key_id,
            "secret_access_key": opts.secret_access_key,
            "aws_endpoint_url": endpoint,
            "stack_name": opts.stack_name,
            "outputs": outputs,
            "pid": os.getpid(),
            "ports": {"api": self._api.port, "aws": aws_port},
            "template": str(opts.template_path),
            "transform": opts.transform,
            "watch": self._watcher.describe() if self._watcher is not None else None,
            "api_id": self._api.model.api_id,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "startup_seconds": round(time.monotonic() - started, 2),
            "resources": physical,
            "functions": {lid: spec.name for lid, spec in specs.items()},
            "event_source_mappings": [
                {
                    "function": p.spec.function,
                    "queue": p.spec.queue_url,
                    "batch_size": p.spec.batch_size,
                    "window_seconds": p.spec.window_seconds,
                    "concurrency": p.spec.concurrency,
                }
                for p in self._pollers
            ],
            "aws_only": _aws_only(self.notes),
        }
        return self.state

    @staticmethod
    def _outputs(template: Template, api_url: str) -> dict[str, str]:
        outputs: dict[str, str] = {}
        endpoint = None
        for stage in template.of_type("AWS::ApiGateway::Stage"):
            api = template.referenced_logical_id(template.props(stage)["RestApiId"])
            endpoint = (
                f"https://{template.refs.get(api or '', '')}.execute-api.{template.region}.amazonaws.com/"
                f"{template.refs[stage]}/"
            )
        for key, output in template.document.get("Outputs", {}).items():
            try:
                value = str(template.resolve(output["Value"]))
            except TemplateError as error:
                value = f"(not available locally: {error})"
            outputs[key] = api_url if value == endpoint else value
        return outputs

    def _admin(self, name: str, body: bytes = b"") -> Any:
        if name == "health":
            return {"status": "ok", "pid": os.getpid()}
        if name == "queues":
            return queue_ages(self.options.region)
        if name == "invoke":
            return self.invoke(body)
        if name == "aws-calls":  # per AWS operation: calls and the emulation's CPU (awsserver.CallStats)
            return self._moto.calls.snapshot()
        if name == "watch":
            return self._watcher.status() if self._watcher is not None else {"watching": False}
        return None

    def invoke(self, body: bytes) -> dict[str, Any]:
        """`rtp invoke` on local: one event through the same function runtime the API and the event
        source mapping use, with the invocation's log lines. Body: {"function": name, "event": ...}."""
        assert self._functions is not None
        try:
            request = json.loads(body or b"{}")
            name = str(request["function"])
            event = request["event"]
        except (ValueError, KeyError, TypeError) as error:
            return {"error": f"the request must be JSON with `function` and `event` ({error})"}
        logical_id = self._functions.function_id(name)
        if logical_id is None:
            return {"error": f"no function {name!r} in this environment"}
        try:
            invocation = self._functions.invoke(logical_id, event, capture=True)
        except RuntimeError as error:  # the environment could not start (e.g. the handler does not import)
            return {"error": str(error)}
        return {
            "function": logical_id,
            "functionName": self._functions.specs[logical_id].name,
            "requestId": invocation.request_id,
            "ok": invocation.ok,
            "result": invocation.result,
            "errorType": invocation.error_type,
            "errorMessage": invocation.error_message,
            "durationMs": round(invocation.duration_ms, 2),
            "initMs": round(invocation.init_ms, 2),
            "coldStart": invocation.cold_start,
            "refusedByRole": invocation.refused_by_role,
            "logs": invocation.logs,
        }

    def wait(self) -> None:
        while not self._stopped.wait(0.5):
            pass

    def request_stop(self) -> None:
        self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                self._watcher.stop()
        for poller in self._pollers:
            with contextlib.suppress(Exception):
                poller.stop()
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.stop()
        if self._functions is not None:
            with contextlib.suppress(Exception):
                self._functions.close()
        if self._shipper is not None:
            with contextlib.suppress(Exception):
                self._shipper.close()
        for worker in self._workers:
            with contextlib.suppress(Exception):
                worker.process.kill()
        if self._watcher is not None:
            self._watcher.close()
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
            from rtp_cli.local.emulation import release_credentials

            release_credentials()


def _aws_only(notes: list[Note]) -> list[dict[str, Any]]:
    """Resource types that exist only in AWS, with how many the template has and why."""
    grouped: dict[str, dict[str, Any]] = {}
    for note in notes:
        if note.message.startswith("AWS-only"):
            entry = grouped.setdefault(
                note.type, {"type": note.type, "count": 0, "reason": note.message[10:]}
            )
            entry["count"] += 1
    return sorted(grouped.values(), key=lambda entry: str(entry["type"]))


def queue_ages(region: str) -> dict[str, Any]:
    """Per queue URL: message count and age of the oldest message, read from the in-process emulation
    without receiving (receiving would count as a delivery attempt and move messages toward the DLQ)."""
    from moto.sqs.models import sqs_backends

    from rtp_cli.local.emulation import all_messages
    from rtp_cli.local.template import ACCOUNT_ID

    now_ms = time.time() * 1000
    out: dict[str, Any] = {}
    backend = sqs_backends[ACCOUNT_ID][region]
    for name, queue in list(backend.queues.items()):
        stamps: list[float] = [float(m.sent_timestamp or 0) for m in all_messages(queue) if m.sent_timestamp]
        out[name] = {
            "messages": len(stamps),
            "oldest_age_seconds": round((now_ms - min(stamps)) / 1000, 1) if stamps else None,
        }
    return out


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)  # holds the local secret key
    tmp.replace(path)


def remove_state(path: Path, pid: int | None = None) -> None:
    """Remove the state file (only if it is ours, when pid is given)."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, OSError):
        if pid is not None and json.loads(path.read_text(encoding="utf-8")).get("pid") != pid:
            return
        path.unlink()


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if not isinstance(error, TemplateError) else str(error)


if __name__ == "__main__":  # pragma: no cover - use `python -m rtp_cli.local.serve`
    sys.exit("use: python -m rtp_cli.local.serve")
