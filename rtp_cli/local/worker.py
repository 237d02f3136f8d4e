"""One local Lambda execution environment: a child process that imports one function's handler and serves
invocations sent by the runtime over a pipe (see `rtp_cli.local.functions` for why a process).

Run as ``python -m rtp_cli.local.worker REQUEST_FD RESPONSE_FD``. A worker starts generic (it preloads
the runtime libraries), then receives one configuration frame that makes it one function's execution
environment: from then on the process environment *is* the function's environment (its template
variables, resolved, plus what the Lambda runtime sets), and the handler module is imported (cold start). The
handler's stdout/stderr are captured by the parent and shipped to the function's CloudWatch Logs group.
Frames on the pipes are a 4-byte big-endian length followed by UTF-8 JSON.

For `rtp deploy --env local --watch` the worker also reports which of the project's modules it has
loaded (the runtime replaces only the environments whose code changed), describes an init failure with
the file and line at fault, and ends every invocation's output with an `END_OF_OUTPUT` marker line so the
runtime knows it has every log line of that invocation (`rtp invoke` prints them).
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any, BinaryIO

# Written to stdout (after everything the handler printed) when an invocation ends; never shipped.
END_OF_OUTPUT = "\x00rtp-end "


def read_frame(stream: BinaryIO) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    data = stream.read(size)
    return json.loads(data.decode("utf-8"))


def write_frame(stream: BinaryIO, message: Any) -> None:
    data = json.dumps(message, default=str).encode("utf-8")
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


class LocalLambdaContext:
    """The attributes and method of the Lambda Python runtime's context object."""

    def __init__(self, request_id: str, deadline: float) -> None:
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_name = name
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ.get("RTP_LOCAL_FUNCTION_ARN", name)
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    module = importlib.import_module(module_name)
    override = os.environ.get("RTP_LOCAL_TRANSFORM")
    if override and "transform" in sys.modules:
        # `rtp deploy --env local --transform module:function`: iterate on a transform without a redeploy.
        target_module, _, target_name = override.partition(":")
        source = importlib.import_module(target_module)
        replacement = getattr(source, target_name or "transform")
        sys.modules["transform"].transform = replacement  # type: ignore[attr-defined]
        if hasattr(module, "TRANSFORM_VERSION"):  # the processor: records name the transform really run
            from rtp_pipeline.contract import transform_version

            module.TRANSFORM_VERSION = transform_version(source)  # type: ignore[attr-defined]
    return getattr(module, function_name)


PRELOAD = (
    "boto3",
    "botocore.client",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.tracing",
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.batch",
)


def _preload() -> None:
    """Import the runtime's libraries (what the Powertools layer and the Lambda runtime provide) before the
    function is assigned, so a fresh environment only pays for the function's own init."""
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 - a missing library surfaces when the handler imports it
            continue


# What the IAM check (rtp_cli.local.iam.RoleCheck) reads of a call's parameters: the resources it names.
_RESOURCE_PARAMS = ("TableName", "IndexName", "Bucket", "Key", "QueueUrl")


def call_summary(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """One AWS API call, reduced to what the IAM check needs (no payloads cross the pipe)."""
    kept: dict[str, Any] = {name: str(params[name]) for name in _RESOURCE_PARAMS if name in params}
    if "TransactItems" in params:
        kept["TransactItems"] = [
            {kind: {"TableName": body.get("TableName")}}
            for item in params["TransactItems"]
            for kind, body in item.items()
        ]
    if "RequestItems" in params:
        kept["RequestItems"] = {table: {} for table in params["RequestItems"]}
    if "Statements" in params:  # PartiQL: the text names the verb and the table; the values stay behind
        kept["Statements"] = [{"Statement": str(s["Statement"])} for s in params["Statements"]]
    return {"service": service, "operation": operation, "params": kept}


def _record_calls() -> list[dict[str, Any]]:
    """Every API call made through boto3's default session (which `boto3.client()` uses), from now on:
    fired once per call, not per retry, with the caller's parameters."""
    import boto3

    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append(call_summary(model.service_model.service_name, model.name, params))

    boto3.setup_default_session()  # after _configure: the function's region and credentials
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("provide-client-params.*.*", record)
    return calls


def _configure(frame: dict[str, Any]) -> None:
    """Become one function's environment: exactly its environment variables, code root first on sys.path."""
    os.environ.clear()
    os.environ.update(frame["env"])
    os.chdir(frame["env"]["LAMBDA_TASK_ROOT"])
    for path in reversed(frame["env"].get("PYTHONPATH", "").split(os.pathsep)):
        if path:
            sys.path.insert(0, path)  # the code root ends up first, as LAMBDA_TASK_ROOT is in Lambda


def _library_roots() -> tuple[str, ...]:
    import site
    import sysconfig

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    roots.update(value for value in sysconfig.get_paths().values() if value)
    return tuple(sorted({os.path.realpath(root) for root in roots if root}))


def user_modules(search_roots: list[str], library_roots: tuple[str, ...]) -> list[str]:
    """Source files of the loaded modules that come from the code root, --transform's location or the
    working tree: not the standard library, not installed packages (the runtime's own `rtp_cli` neither)."""
    roots = tuple(os.path.realpath(root) + os.sep for root in search_roots if root)
    libraries = tuple(library + os.sep for library in library_roots)
    found = []
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or module.__name__.startswith("rtp_cli") or module.__name__ == "__main__":
            continue
        path = os.path.abspath(source)  # no realpath per module: this runs after every lazy import
        if path.startswith(roots) and not path.startswith(libraries):
            found.append(path)
    return sorted(found)


def describe_init_error(error: BaseException) -> dict[str, Any]:
    """What failed and where: the file and line of a syntax error, or the innermost frame of user code."""
    described: dict[str, Any] = {
        "ready": False,
        "errorType": type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_exception(error)[-12:],
    }
    if isinstance(error, SyntaxError) and error.filename:
        described["location"] = {
            "file": str(Path(error.filename).resolve()),
            "line": error.lineno,
            "column": error.offset,
            "text": (error.text or "").rstrip("\n"),
        }
        described["errorMessage"] = error.msg
    else:
        frames = [
            frame for frame in traceback.extract_tb(error.__traceback__) if "<frozen" not in frame.filename
        ]
        if frames:
            last = frames[-1]
            described["location"] = {
                "file": str(Path(last.filename).resolve()),
                "line": last.lineno,
                "text": (last.line or "").strip(),
            }
    return described


def _end_of_output(request_id: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, f"{END_OF_OUTPUT}{request_id}\n".encode())


def main(argv: list[str]) -> int:
    requests = os.fdopen(int(argv[1]), "rb")
    responses = os.fdopen(int(argv[2]), "wb")
    _preload()
    write_frame(responses, {"preloaded": True})
    configuration = read_frame(requests)
    if configuration is None:
        return 0
    _configure(configuration)
    calls = _record_calls()
    started = time.monotonic()
    search_roots = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    libraries = _library_roots()
    try:
        handler = _load_handler(os.environ["_HANDLER"])
    except Exception as error:
        traceback.print_exc()
        sys.stderr.flush()
        write_frame(responses, describe_init_error(error))
        return 1
    write_frame(
        responses,
        {
            "ready": True,
            "initMs": round((time.monotonic() - started) * 1000, 1),
            "modules": user_modules(search_roots, libraries),
        },
    )
    loaded = len(sys.modules)
    while True:
        request = read_frame(requests)
        if request is None:
            return 0
        context = LocalLambdaContext(request["requestId"], request["deadline"])
        try:
            result = handler(request["event"], context)
            frame: dict[str, Any] = {"ok": True, "result": result}
        except Exception as error:
            # What the Lambda Python runtime prints for an unhandled error, then returns as the result.
            print(f"[ERROR] {type(error).__name__}: {error}", file=sys.stderr)
            traceback.print_exc()
            frame = {
                "ok": False,
                "errorType": type(error).__name__,
                "errorMessage": str(error),
                "stackTrace": traceback.format_exception(error)[-10:],
            }
        if len(sys.modules) != loaded:  # the handler imported something lazily: report it (for --watch)
            loaded = len(sys.modules)
            frame["modules"] = user_modules(search_roots, libraries)
        frame["calls"] = list(calls)  # the first invocation's include what the init called
        calls.clear()
        _end_of_output(request["requestId"])
        write_frame(responses, frame)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
