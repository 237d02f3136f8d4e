"""Run the template's Lambda functions locally: one worker process per execution environment.

Design (why processes): the handlers are written for Lambda, where each function has its own execution
environment: its own environment variables (TABLE_NAME, QUEUE_URL, POWERTOOLS_SERVICE_NAME... differ per
function) and its own module-level state (settings, boto3 clients and Powertools objects are created
once at import and reused). Running all three handlers in one interpreter would share `os.environ`,
`sys.modules` (`rtp_pipeline.settings.current_settings` is cached on first use) and the transform, so a
function could silently read another's configuration. Instead each execution environment is a child
Python process (`rtp_cli.local.worker`) whose environment *is* the function's resolved template
environment, which imports the handler once (the cold start) and then serves invocations one at a time
over a pipe, exactly as a Lambda execution environment does. Like Lambda:

- concurrency = number of environments; a function scales up to `ReservedConcurrentExecutions` (or a
  local cap) on demand, and idle environments are reused (warm starts);
- the function `Timeout` is enforced: on expiry the environment is killed ("Task timed out after N
  seconds") and the next invocation gets a fresh one;
- stdout/stderr (Powertools JSON logs, EMF metrics, tracebacks) plus START/END/REPORT lines go to the
  function's log group from `LoggingConfig.LogGroup` (or `/aws/lambda/<name>`), one stream per
  environment, in the local CloudWatch Logs;
- boto3 inside the handler reaches the local emulation through `AWS_ENDPOINT_URL` and the local
  credentials, with no code change.

Code comes from the synthesized cloud assembly's staged asset (`asset.<hash>` next to the template), so
what runs locally is byte for byte what `cdk deploy` would upload.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rtp_cli.local.logs import LogShipper
from rtp_cli.local.template import Template, TemplateError
from rtp_cli.local.worker import END_OF_OUTPUT, read_frame, write_frame
from rtp_cli.paths import PROJECT_ROOT

LOCAL_CONCURRENCY_CAP = 4  # environments per function when the template does not reserve concurrency
RETIRE_GRACE_SECONDS = 2.0  # a retired environment exits on its own (end of input) or is killed after this


class InitError(RuntimeError):
    """A function's handler failed to initialise in a new environment (syntax error, import error, an
    exception at import time). Carries the worker's description: type, message, file/line, traceback."""

    def __init__(self, spec: FunctionSpec, frame: dict[str, Any] | None) -> None:
        frame = frame or {}
        self.logical_id = spec.logical_id
        self.handler = spec.handler
        self.error_type = str(frame.get("errorType") or "Runtime.ExitError")
        self.error_message = str(frame.get("errorMessage") or "the execution environment exited")
        self.location: dict[str, Any] | None = frame.get("location")
        self.stack_trace: list[str] = list(frame.get("stackTrace") or [])
        super().__init__(
            f"{spec.logical_id}: handler {spec.handler} failed to initialise: {self.error_message}"
        )


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    runtime: str
    code_dir: Path
    timeout: int
    memory: int
    environment: dict[str, str]
    log_group: str
    max_concurrency: int
    # --watch: a snapshot of the --transform module's location, searched after the code root
    extra_paths: tuple[str, ...] = ()
    role_logical_id: str = (
        ""  # the execution role in the template (rtp_cli.local.iam checks calls against it)
    )


@dataclass
class Invocation:
    request_id: str
    ok: bool
    result: Any = None
    error_type: str = ""
    error_message: str = ""
    timed_out: bool = False
    duration_ms: float = 0.0
    cold_start: bool = False
    function: str = ""  # logical id
    logs: list[str] = field(default_factory=list)  # only when invoked with capture=True
    init_ms: float = 0.0
    refused_by_role: list[str] = field(default_factory=list)  # calls AWS would deny (rtp_cli.local.iam)


# (function, the calls its handler made as the worker summarizes them) -> what its role would refuse
RoleCheckFn = Callable[[FunctionSpec, list[dict[str, Any]]], list[str]]


def function_specs(template: Template, code_dir: Path | None = None) -> dict[str, FunctionSpec]:
    """The Python functions of the template, with code located and environment resolved. `code_dir`
    stands in for every function's staged asset (in-process runs import handlers/, the asset's source)."""
    specs: dict[str, FunctionSpec] = {}
    custom_providers = {
        template.referenced_logical_id(res.get("Properties", {}).get("ServiceToken"))
        for res in template.resources.values()
        if str(res.get("Type", "")).startswith("Custom::")
    }
    for logical_id in template.of_type("AWS::Lambda::Function"):
        props = template.props(logical_id)
        runtime = str(props.get("Runtime", ""))
        if logical_id in custom_providers:
            continue  # custom-resource providers run only inside CloudFormation deployments
        if not runtime.startswith("python3"):
            raise TemplateError(
                f"{logical_id} (AWS::Lambda::Function): runtime {runtime} is not implemented locally"
            )
        resolved = template.resolve({k: v for k, v in props.items() if k not in ("Role", "Layers", "Code")})
        code = code_dir or _code_dir(template, logical_id, props.get("Code", {}))
        variables = {str(k): str(v) for k, v in resolved.get("Environment", {}).get("Variables", {}).items()}
        name = template.refs[logical_id]
        log_group = resolved.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{name}"
        reserved = resolved.get("ReservedConcurrentExecutions")
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=template.attrs[(logical_id, "Arn")],
            handler=str(resolved["Handler"]),
            runtime=runtime,
            code_dir=code,
            timeout=int(resolved.get("Timeout", 3)),
            memory=int(resolved.get("MemorySize", 128)),
            environment=variables,
            log_group=str(log_group),
            max_concurrency=int(reserved) if reserved else LOCAL_CONCURRENCY_CAP,
            role_logical_id=template.referenced_logical_id(props.get("Role")) or "",
        )
    return specs


def lambda_variables(spec: FunctionSpec, log_stream: str) -> dict[str, str]:
    """The variables the Lambda runtime defines for a function's environment (the context reads them)."""
    return {
        "_HANDLER": spec.handler,
        "LAMBDA_TASK_ROOT": str(spec.code_dir),
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "RTP_LOCAL_FUNCTION_ARN": spec.arn,
    }


def python_function_count(template: Template) -> int:
    """How many functions the runtime will serve (a template-only count, before any resource exists)."""
    providers = {
        template.referenced_logical_id(res.get("Properties", {}).get("ServiceToken"))
        for res in template.resources.values()
        if str(res.get("Type", "")).startswith("Custom::")
    }
    return sum(
        1
        for lid, res in template.of_type("AWS::Lambda::Function").items()
        if lid not in providers and str(res.get("Properties", {}).get("Runtime", "")).startswith("python3")
    )


def _code_dir(template: Template, logical_id: str, code: dict[str, Any]) -> Path:
    key = code.get("S3Key")
    if isinstance(key, str) and key.endswith(".zip") and template.path is not None:
        staged = template.path.parent / f"asset.{key.removesuffix('.zip')}"
        if staged.is_dir():
            return staged
        raise TemplateError(
            f"{logical_id} (AWS::Lambda::Function): code asset {staged} not found next to the template "
            "(serve a template from a complete cloud assembly, e.g. `rtp synth` output)"
        )
    raise TemplateError(
        f"{logical_id} (AWS::Lambda::Function): only asset code (S3Key *.zip) is implemented locally"
    )


class _Worker:
    """A worker process that has preloaded the runtime libraries and waits to become an environment."""

    def __init__(self) -> None:
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - fallback only
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "rtp_cli.local.worker", str(request_read), str(response_write)],
            env=env,
            cwd=str(PROJECT_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(request_read, response_write),
            start_new_session=True,
        )
        os.close(request_read)
        os.close(response_write)
        self.requests = os.fdopen(request_write, "wb")
        self.responses = os.fdopen(response_read, "rb")
        self._preloaded: bool | None = None

    def wait_preloaded(self) -> bool:
        """Block until the worker has preloaded (once; a spare worker has already been waited for)."""
        if self._preloaded is None:
            hello = read_frame(self.responses)
            self._preloaded = bool(hello and hello.get("preloaded"))
        return self._preloaded

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.requests.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        for stream in (self.responses, self.process.stdout):
            with contextlib.suppress(OSError, AttributeError):
                stream.close()  # type: ignore[union-attr]


def prespawn(count: int) -> list[_Worker]:
    """Start `count` generic workers now (they preload while the emulation and resources come up)."""
    return [_Worker() for _ in range(count)]


class _Environment:
    """One execution environment: a worker process configured as one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        base_env: dict[str, str],
        shipper: LogShipper,
        label: str,
        worker: _Worker | None = None,
        generation: int = 0,
    ) -> None:
        self.spec = spec
        self.generation = generation
        self.stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"
        self.shipper = shipper
        self.label = label
        self.modules: set[str] = set()  # source files of the project's modules this environment loaded
        self._capture: list[str] | None = None
        self._capture_id = ""
        self._output_done = threading.Event()
        worker = worker or _Worker()
        self.process = worker.process
        self.requests = worker.requests
        self.responses = worker.responses
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True)
        self._reader.start()
        if not worker.wait_preloaded():
            self.kill()
            raise RuntimeError(f"{spec.logical_id}: the execution environment failed to start")
        env = {
            **base_env,
            **spec.environment,
            **lambda_variables(spec, self.stream),
            # the code root, then the project (so --transform can name a module of the working tree)
            "PYTHONPATH": os.pathsep.join(
                [str(spec.code_dir), *spec.extra_paths, str(PROJECT_ROOT), os.getcwd()]
            ),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "TZ": "UTC",
        }
        write_frame(self.requests, {"env": env})
        self.started = time.monotonic()
        hello = read_frame(self.responses)
        if not hello or not hello.get("ready"):
            self.kill()
            raise InitError(spec, hello)
        self.init_ms = float(hello.get("initMs", 0))
        self.modules = set(hello.get("modules") or [])

    def _pump(self, stdout: IO[bytes]) -> None:
        for raw in iter(stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(END_OF_OUTPUT):
                if line.removeprefix(END_OF_OUTPUT) == self._capture_id:
                    self._output_done.set()
                continue
            if line:
                self.log(line)
        self._output_done.set()  # the process is gone: nothing more will come

    def log(self, message: str) -> None:
        self.shipper.emit(self.spec.log_group, self.stream, message, self.label)
        capture = self._capture
        if capture is not None:
            capture.append(message)

    def capture(self, request_id: str) -> None:
        """Keep this invocation's log lines (START ... REPORT) for `rtp invoke`."""
        self._output_done.clear()
        self._capture_id = request_id
        self._capture = []

    def wait_output(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until the worker's end-of-output marker for this invocation."""
        self._output_done.wait(timeout)

    def captured(self) -> list[str]:
        lines, self._capture, self._capture_id = self._capture or [], None, ""
        return lines

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.requests.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.responses.close()

    def retire(self) -> None:
        """End of input: the worker returns from its loop and exits; killed if it does not in time."""
        with contextlib.suppress(OSError):
            self.requests.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=RETIRE_GRACE_SECONDS)
        self.kill()

    def invoke(self, event: Any, request_id: str) -> tuple[Any, bool]:
        """Send one event; return (response frame, timed_out)."""
        deadline = time.time() + self.spec.timeout
        box: dict[str, Any] = {}

        def receive() -> None:
            box["frame"] = read_frame(self.responses)

        write_frame(self.requests, {"event": event, "requestId": request_id, "deadline": deadline})
        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        receiver.join(timeout=self.spec.timeout)
        if receiver.is_alive():
            return None, True
        frame = box.get("frame")
        if isinstance(frame, dict) and frame.get("modules"):
            self.modules = set(frame["modules"])
        return frame, False


@dataclass
class _Pool:
    spec: FunctionSpec
    idle: list[_Environment] = field(default_factory=list)
    live: set[_Environment] = field(default_factory=set)  # every running environment, idle or busy
    busy: int = 0
    generation: int = 0  # bumped when new code or configuration replaces the environments
    condition: threading.Condition = field(default_factory=threading.Condition)


@dataclass
class Replacement:
    """New environments for one function: at least one initialised (the new code loads), the others
    still starting. Committed: they serve, and late ones join as they become ready. Discarded: killed."""

    logical_id: str
    spec: FunctionSpec
    environments: list[_Environment]
    init_ms: float
    state: str = "prepared"  # prepared | committed | discarded
    generation: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)


class FunctionRuntime:
    """Invoke the template's functions by logical id; scales environments like Lambda, up to a cap.

    For `--watch`, `prepare` + `commit` replace a function's code or configuration without a restart:
    new environments are started (and must initialise) first; on commit, new invocations go to them,
    idle old environments are retired, and busy ones finish their invocation before they are retired.
    Nothing queued or in flight is lost, and a failed `prepare` leaves the old environments serving."""

    def __init__(
        self,
        specs: dict[str, FunctionSpec],
        base_env: dict[str, str],
        shipper: LogShipper,
        role_check: RoleCheckFn | None = None,
    ) -> None:
        self.specs = specs
        self._role_check = role_check
        self._base_env = base_env
        self._shipper = shipper
        self._pools = {lid: _Pool(spec) for lid, spec in specs.items()}
        self._labels = {lid: _label(spec) for lid, spec in specs.items()}
        self._closed = False
        self._spares: list[_Worker] = []
        self._spare_target = 0
        self._spares_pending = 0
        self._spare_lock = threading.Lock()

    # ---- preloaded spare workers (a new environment then only pays for its handler's import) ----------
    def keep_spares(self, count: int) -> None:
        with self._spare_lock:
            self._spare_target = count
        self._refill()

    def _refill(self) -> None:
        with self._spare_lock:
            missing = self._spare_target - len(self._spares) - self._spares_pending
            if self._closed or missing <= 0:
                return
            self._spares_pending += missing
        for _ in range(missing):
            threading.Thread(target=self._spawn_spare, name="rtp-spare-worker", daemon=True).start()

    def _spawn_spare(self) -> None:
        worker: _Worker | None = None
        try:
            worker = _Worker()
            ready = worker.wait_preloaded()
        except Exception:
            ready = False
        with self._spare_lock:
            self._spares_pending -= 1
            keep = ready and not self._closed and worker is not None
            if keep and worker is not None:
                self._spares.append(worker)
        if not keep and worker is not None:
            worker.discard()

    def _take_worker(self) -> _Worker | None:
        with self._spare_lock:
            worker = self._spares.pop() if self._spares else None
        if worker is not None:
            self._refill()
        return worker

    def _new_environment(self, logical_id: str, spec: FunctionSpec, generation: int) -> _Environment:
        return _Environment(
            spec, self._base_env, self._shipper, self._labels[logical_id], self._take_worker(), generation
        )

    # ---- start-up ------------------------------------------------------------------------------------
    def warm(self, workers: list[_Worker] | None = None) -> None:
        """Start one environment per function in parallel (the first requests then skip the cold start),
        using prespawned workers when given."""
        errors: list[BaseException] = []
        spare = list(workers or [])
        assigned = {lid: (spare.pop() if spare else None) for lid in self._pools}
        for worker in spare:  # more workers than functions: not needed
            worker.process.kill()

        def start(lid: str) -> None:
            try:
                pool = self._pools[lid]
                env = _Environment(pool.spec, self._base_env, self._shipper, self._labels[lid], assigned[lid])
                with pool.condition:
                    pool.idle.append(env)
                    pool.live.add(env)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=start, args=(lid,)) for lid in self._pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    # ---- invocations ---------------------------------------------------------------------------------
    def function_id(self, name: str) -> str | None:
        """The logical id for a logical id or a function name."""
        if name in self._pools:
            return name
        return next((lid for lid, pool in self._pools.items() if pool.spec.name == name), None)

    def invoke(self, logical_id: str, event: Any, *, capture: bool = False) -> Invocation:
        pool = self._pools[logical_id]
        request_id = str(uuid.uuid4())
        cold = False
        with pool.condition:
            # Concurrency counts invocations, so environments still finishing old code count too.
            while pool.busy >= pool.spec.max_concurrency:
                pool.condition.wait()
            env = pool.idle.pop() if pool.idle else None
            pool.busy += 1
            spec, generation = pool.spec, pool.generation
        try:
            if env is None or not env.alive():
                if env is not None:
                    with pool.condition:
                        pool.live.discard(env)
                env = self._new_environment(logical_id, spec, generation)
                with pool.condition:
                    pool.live.add(env)
                cold = True
            return self._run(env, event, request_id, cold, capture)
        finally:
            retire = None
            with pool.condition:
                pool.busy -= 1
                if env is not None and env.alive() and not self._closed and env.generation == pool.generation:
                    pool.idle.append(env)
                elif env is not None:
                    pool.live.discard(env)
                    retire = env
                pool.condition.notify()
            if retire is not None:
                if self._closed or not retire.alive():
                    retire.kill()
                else:
                    _in_background(retire.retire)

    def _run(self, env: _Environment, event: Any, request_id: str, cold: bool, capture: bool) -> Invocation:
        spec = env.spec  # an environment finishing old code keeps its own configuration
        if capture:
            env.capture(request_id)
        if cold:
            env.log(f"INIT_REPORT Init Duration: {env.init_ms:.2f} ms")
        env.log(f"START RequestId: {request_id} Version: $LATEST")
        started = time.monotonic()
        frame, timed_out = env.invoke(event, request_id)
        duration = (time.monotonic() - started) * 1000
        refused = self._refused(spec, frame)
        for line in refused:
            env.log(f"{_now()} {request_id} IAM: in AWS this function's role would refuse {line}")
        if capture and not timed_out:
            env.wait_output(2.0)  # every line the handler printed, before END
        env.log(f"END RequestId: {request_id}")
        if timed_out:
            env.log(f"{_now()} {request_id} Task timed out after {spec.timeout:.2f} seconds")
            env.kill()
            invocation = Invocation(
                request_id,
                False,
                error_type="Sandbox.Timedout",
                timed_out=True,
                error_message=f"Task timed out after {spec.timeout:.2f} seconds",
            )
        else:
            env.log(
                f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\t"
                f"Memory Size: {spec.memory} MB" + (f"\tInit Duration: {env.init_ms:.2f} ms" if cold else "")
            )
            if frame is None:  # the process died mid-invocation
                env.kill()
                invocation = Invocation(
                    request_id,
                    False,
                    error_type="Runtime.ExitError",
                    error_message="the execution environment exited",
                )
            elif frame.get("ok"):
                invocation = Invocation(request_id, True, result=frame.get("result"))
            else:
                invocation = Invocation(
                    request_id,
                    False,
                    error_type=str(frame.get("errorType", "")),
                    error_message=str(frame.get("errorMessage", "")),
                )
        invocation.duration_ms = duration
        invocation.cold_start = cold
        invocation.function = spec.logical_id
        invocation.init_ms = env.init_ms if cold else 0.0
        invocation.refused_by_role = refused
        if capture:
            invocation.logs = env.captured()
        return invocation

    def _refused(self, spec: FunctionSpec, frame: Any) -> list[str]:
        if self._role_check is None or not isinstance(frame, dict) or not frame.get("calls"):
            return []
        return self._role_check(spec, frame["calls"])

    # ---- replacing code or configuration (--watch) ---------------------------------------------------
    def prepare(self, logical_id: str, spec: FunctionSpec) -> Replacement:
        """Start as many new environments as the function runs now (at least one), in parallel, and
        return as soon as one has initialised: the new code loads (the rest are only capacity, and join
        once committed). Raises InitError, with nothing changed, if the new code does not load."""
        pool = self._pools[logical_id]
        with pool.condition:
            count = max(1, min(len(pool.live), spec.max_concurrency))
        replacement = Replacement(logical_id, spec, [], 0.0)
        outcome = threading.Condition()
        errors: list[BaseException] = []
        finished = [0]

        def start() -> None:
            try:
                env = self._new_environment(logical_id, spec, generation=-1)
            except BaseException as error:
                with outcome:
                    errors.append(error)
                    finished[0] += 1
                    outcome.notify_all()
                return
            with replacement.lock:
                state = replacement.state
                if state == "prepared":
                    replacement.environments.append(env)
                    replacement.init_ms = max(replacement.init_ms, env.init_ms)
            if state == "committed":
                self._adopt(pool, env, replacement.generation)
            elif state == "discarded":
                env.kill()
            with outcome:
                finished[0] += 1
                outcome.notify_all()

        for _ in range(count):
            threading.Thread(target=start, name="rtp-reload", daemon=True).start()
        with outcome:
            outcome.wait_for(lambda: bool(replacement.environments) or bool(errors) or finished[0] == count)
            failed = errors[0] if errors and not replacement.environments else None
        if failed is not None or not replacement.environments:
            self.discard([replacement])
            raise failed or RuntimeError(f"{logical_id}: no new execution environment started")
        return replacement

    def _adopt(self, pool: _Pool, env: _Environment, generation: int) -> None:
        """A new environment that became ready after its replacement was committed."""
        with pool.condition:
            keep = (
                not self._closed
                and pool.generation == generation
                and len(pool.live) < pool.spec.max_concurrency
            )
            if keep:
                env.generation = generation
                pool.idle.append(env)
                pool.live.add(env)
                pool.condition.notify()
        if not keep:
            env.kill()

    def commit(self, replacements: list[Replacement]) -> None:
        """Route new invocations to the prepared environments; retire the old ones once they are idle."""
        for replacement in replacements:
            pool = self._pools[replacement.logical_id]
            with pool.condition, replacement.lock:
                pool.generation += 1
                pool.spec = replacement.spec
                self.specs[replacement.logical_id] = replacement.spec
                old, pool.idle = pool.idle, []
                for env in old:
                    pool.live.discard(env)
                replacement.state, replacement.generation = "committed", pool.generation
                for env in replacement.environments:
                    env.generation = pool.generation
                    pool.idle.append(env)
                    pool.live.add(env)
                pool.condition.notify_all()
            for env in old:
                _in_background(env.retire)

    @staticmethod
    def discard(replacements: list[Replacement]) -> None:
        for replacement in replacements:
            with replacement.lock:
                replacement.state = "discarded"
                environments, replacement.environments = replacement.environments, []
            for env in environments:
                env.kill()

    def modules(self, logical_id: str) -> set[str]:
        """Source files of the project's modules the function's current environments have loaded."""
        pool = self._pools[logical_id]
        with pool.condition:
            found: set[str] = set()
            for env in pool.live:
                if env.generation == pool.generation:
                    found |= env.modules
            return found

    def paths_in_use(self) -> set[str]:
        """Code roots referenced by a function's configuration or by a running environment."""
        used: set[str] = set()
        for pool in self._pools.values():
            with pool.condition:
                specs = [pool.spec, *(env.spec for env in pool.live)]
            for spec in specs:
                used.add(str(spec.code_dir))
                used.update(spec.extra_paths)
        return used

    def describe(self) -> dict[str, dict[str, Any]]:
        out = {}
        for lid, pool in self._pools.items():
            with pool.condition:
                out[lid] = {
                    "name": pool.spec.name,
                    "generation": pool.generation,
                    "environments": len(pool.live),
                    "busy": pool.busy,
                    "code": str(pool.spec.code_dir),
                }
        return out

    def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            with pool.condition:
                for env in pool.idle:
                    env.kill()
                    pool.live.discard(env)
                pool.idle.clear()
        with self._spare_lock:
            spares, self._spares = self._spares, []
        for worker in spares:
            worker.discard()


def _in_background(work: Any) -> None:
    threading.Thread(target=work, name="rtp-retire", daemon=True).start()


def _label(spec: FunctionSpec) -> str:
    return spec.environment.get("POWERTOOLS_SERVICE_NAME") or spec.handler.split(".")[0]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
