"""`rtp deploy --env local --watch`: new handler code running in the local environment within a second of a
save, without a restart and without losing queued, in-flight or stored data.

How (the same idea as SAM's `sync --watch` or `cdk watch`, but against the embedded runtime):

- **Detect.** The watched files (everything under `handlers/` that the Lambda asset includes, and the
  `--transform` module) are polled every 50 ms by mtime and size: no new dependency, and a change is seen
  well within the one-second budget. A changed mtime with unchanged content (a `touch`) does nothing.
- **Snapshot.** What runs is never the working tree itself but a copy of it taken at the save (the asset's
  own exclude rules: no `__pycache__`, no `*.pyc`). A half-written or broken file can then never reach an
  environment that starts later (a scale-up, a restart after a timeout): those start from the last good
  snapshot too.
- **Pre-check.** Every changed Python file is compiled (a syntax error is reported with its file, line and
  column before any process starts); then the new environments import the handler, which is the import
  check itself, in processes that serve nothing until they are committed.
- **Replace gracefully.** Only the functions that loaded a changed file (each environment reports the
  project's modules it imported) get new environments: as many as each runs now, all initialised before
  any is used. Then, in one step, new invocations go to them; idle old environments are retired, busy ones
  finish their invocation first (`FunctionRuntime.prepare`/`commit`). If any new environment fails to
  initialise, every prepared one is discarded and the old code keeps serving; the next good save recovers.
- **Stack and config.** A change under `stack/`, to `config/<env>.yaml` or `main.py` (or to the schema the
  stack shares with the handlers) re-synthesizes in a separate process and compares the new template
  with the one being served, resource by resource. Function configuration the runtime can swap the same
  way (environment variables, timeout, memory, handler, reserved concurrency) is applied live; AWS-only
  resources are reported as such; anything else (queues, table, API, event source mapping, ...) needs a
  restart, and then nothing at all is applied: the change set is listed with "restart to apply".
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtp_cli.local.functions import FunctionRuntime, FunctionSpec, InitError, Replacement, function_specs
from rtp_cli.local.template import SUPPORT, Template, TemplateError
from rtp_cli.paths import PROJECT_ROOT

HANDLERS_DIR = PROJECT_ROOT / "handlers"
POLL_SECONDS = 0.05
SETTLE_SECONDS = 0.02  # an editor's save can be several writes: wait until the files stop changing
# Files under handlers/ that the stack reads at synth time too (the API's request model is built from the
# record schema): a change to one of them is a template change, never a code-only reload.
SHARED_WITH_STACK = ("rtp_pipeline/record.schema.json",)
LIVE_FUNCTION_PROPERTIES = frozenset(
    {"Environment", "Timeout", "MemorySize", "Handler", "ReservedConcurrentExecutions", "Description"}
)
EVENTS_KEPT = 50


def stack_inputs(env_name: str) -> tuple[Path, ...]:
    """What shapes the template besides handlers/: the CDK app, the constructs and the env's config."""
    return (PROJECT_ROOT / "main.py", PROJECT_ROOT / "stack", PROJECT_ROOT / "config" / f"{env_name}.yaml")


@dataclass
class SynthOutcome:
    template: Path | None = None
    findings: list[str] = field(default_factory=list)
    error: str = ""


Synthesizer = Callable[[], SynthOutcome]


@dataclass
class WatchConfig:
    handlers_dir: Path = HANDLERS_DIR
    transform: str | None = None  # module:function, as given to --transform
    stack_paths: tuple[Path, ...] = ()  # empty: stack/config are not watched (a fixed --template)
    env_name: str = "local"
    poll_seconds: float = POLL_SECONDS
    spare_workers: int = 2  # preloaded workers kept ready, so a reload only pays for the handler import
    synthesize: Synthesizer | None = None  # default: `python -m rtp_cli.watch synth ENV` (a subprocess)


@dataclass
class WatchEvent:
    """One thing the watcher did, for the console and for `/_rtp/watch` (bench, tests)."""

    kind: str  # reloaded | error | paused | synthesizing | template | restart | info
    message: str
    details: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # watched file -> sha256 of what now runs
    saved_at: float | None = None  # newest mtime among the changed files (time.time() clock)
    serving_at: float | None = None  # when new invocations started going to the new code
    at: float = field(default_factory=time.time)

    @property
    def latency_ms(self) -> float | None:
        if self.saved_at is None or self.serving_at is None:
            return None
        return round((self.serving_at - self.saved_at) * 1000, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "latency_ms": self.latency_ms}


# ---- the files ----------------------------------------------------------------------------------------
def _excluded(relative: Path) -> bool:
    """The asset's exclude rules (stack/functions.py: `**/__pycache__`, `**/*.pyc`)."""
    return "__pycache__" in relative.parts or relative.suffix == ".pyc"


def asset_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not _excluded(path.relative_to(root)) and not path.name.startswith(".#")
    )


def transform_sources(transform: str, roots: list[Path]) -> list[tuple[Path, Path]]:
    """(source file, path relative to the import root) for the --transform module and the `__init__.py`
    of each package above it, found the way the worker's import would (first root that has it)."""
    module = transform.partition(":")[0]
    parts = module.split(".")
    for root in roots:
        candidates = [root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            continue
        if found.name == "__init__.py":  # a package: the whole package directory is the transform
            package = found.parent
            files = [(path, path.relative_to(root)) for path in asset_files(package)]
        else:
            files = [(found, found.relative_to(root))]
        for depth in range(1, len(parts)):
            init = root.joinpath(*parts[:depth], "__init__.py")
            if init.is_file():
                files.append((init, init.relative_to(root)))
        return files
    return []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Snapshot:
    root: Path
    code_dir: Path
    extra_dir: Path | None
    digests: dict[str, str]  # watched source path -> sha256
    origin: dict[str, str]  # snapshot file -> watched source path

    @property
    def extra_paths(self) -> tuple[str, ...]:
        return (str(self.extra_dir),) if self.extra_dir is not None else ()

    def apply(self, spec: FunctionSpec) -> FunctionSpec:
        return dataclasses.replace(spec, code_dir=self.code_dir, extra_paths=self.extra_paths)


class Snapshots:
    """Copies of the watched files, one directory per accepted save, removed once nothing uses them."""

    def __init__(self, handlers_dir: Path, transform_files: list[tuple[Path, Path]]) -> None:
        self.handlers_dir = handlers_dir.resolve()
        self.transform_files = transform_files
        self.base = Path(tempfile.mkdtemp(prefix="rtp-watch-")).resolve()
        self._count = 0
        self.live: dict[Path, Snapshot] = {}

    def sources(self) -> list[Path]:
        return asset_files(self.handlers_dir) + [source for source, _ in self.transform_files]

    def take(self) -> Snapshot:
        self._count += 1
        root = self.base / str(self._count)
        code_dir = root / "code"
        digests: dict[str, str] = {}
        origin: dict[str, str] = {}
        for source in asset_files(self.handlers_dir):
            target = code_dir / source.relative_to(self.handlers_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            digests[str(source)] = _digest(target)
            origin[str(target)] = str(source)
        extra_dir = None
        if self.transform_files:
            extra_dir = root / "extra"
            for source, relative in self.transform_files:
                target = extra_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                digests[str(source)] = _digest(target)
                origin[str(target)] = str(source)
        snapshot = Snapshot(root, code_dir, extra_dir, digests, origin)
        self.live[root] = snapshot
        return snapshot

    def drop(self, snapshot: Snapshot) -> None:
        self.live.pop(snapshot.root, None)
        shutil.rmtree(snapshot.root, ignore_errors=True)

    def prune(self, in_use: set[str], current: Snapshot) -> None:
        for snapshot in list(self.live.values()):
            used = {str(snapshot.code_dir), *snapshot.extra_paths} & in_use
            if snapshot is not current and not used:
                self.drop(snapshot)

    def origin_of(self, path: str) -> str | None:
        for snapshot in self.live.values():
            if path in snapshot.origin:
                return snapshot.origin[path]
        return None

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        self.live.clear()


def _signature(paths: list[Path]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            stat = path.stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


def _stack_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in asset_files(path) if p.suffix in (".py", ".json", ".yaml", ".yml"))
        else:
            files.append(path)
    return files


def compile_errors(snapshot: Snapshot, changed: set[str]) -> list[str]:
    """Compile every changed Python file of the snapshot; messages name the watched file, line, column."""
    problems = []
    for copy, source in snapshot.origin.items():
        if source not in changed or not copy.endswith(".py"):
            continue
        try:
            compile(Path(copy).read_bytes(), source, "exec", dont_inherit=True)
        except SyntaxError as error:
            where = f"{_shown(source)}:{error.lineno}" + (f":{error.offset}" if error.offset else "")
            text = (error.text or "").rstrip("\n")
            message = f"{where}: {type(error).__name__}: {error.msg}"
            if text.strip():
                caret = " " * max(0, (error.offset or 1) - 1 - (len(text) - len(text.lstrip()))) + "^"
                message += f"\n    {text.strip()}\n    {caret}"
            problems.append(message)
        except ValueError as error:  # e.g. source code cannot contain null bytes
            problems.append(f"{_shown(source)}: {error}")
    return problems


_NOT_YOURS = (sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parent), "<frozen")


def _user_frames(stack_trace: list[str]) -> list[str]:
    """Traceback lines without the frames of Python, installed packages and the runtime itself."""
    lines = [line.rstrip() for chunk in stack_trace for line in chunk.splitlines() if line.strip()]
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.lstrip().startswith("File "):
            skipping = any(f'"{prefix}' in line for prefix in _NOT_YOURS)
            if skipping:
                continue
        elif skipping and line.startswith("    "):
            continue
        else:
            skipping = False
        kept.append(line)
    return kept


def _shown(path: str) -> str:
    """A path as the person typing in this directory would write it."""
    with contextlib.suppress(ValueError):
        return os.path.relpath(path) if not os.path.relpath(path).startswith("../..") else path
    return path


# ---- template changes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TemplateChange:
    logical_id: str
    resource_type: str
    action: str  # added | removed | modified
    properties: tuple[str, ...]
    disposition: str  # live | code | aws-only | not-emulated | restart
    reason: str = ""

    def describe(self) -> str:
        props = f" ({', '.join(self.properties)})" if self.properties else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.action} {self.logical_id} [{self.resource_type}]{props} -> {self.disposition}{why}"


_RANK = {"code": 0, "not-emulated": 1, "aws-only": 1, "live": 2, "restart": 3}


def diff_templates(old: dict[str, Any], new: dict[str, Any]) -> list[TemplateChange]:
    """Every resource (and the outputs) that differs between two templates, and what applying it takes
    locally. Resource metadata, deletion policies and dependencies change nothing locally."""
    changes: list[TemplateChange] = []
    old_resources: dict[str, Any] = old.get("Resources", {})
    new_resources: dict[str, Any] = new.get("Resources", {})
    for logical_id in sorted(set(old_resources) | set(new_resources)):
        before, after = old_resources.get(logical_id), new_resources.get(logical_id)
        resource_type = str((after or before or {}).get("Type", "?"))
        support = SUPPORT.get(resource_type)
        aws_only = support is not None and support.mode == "aws-only"
        if before is None or after is None:
            action = "added" if before is None else "removed"
            if aws_only:
                changes.append(TemplateChange(logical_id, resource_type, action, (), "aws-only"))
            else:
                changes.append(
                    TemplateChange(
                        logical_id, resource_type, action, (), "restart", "resources are created at start"
                    )
                )
            continue
        if before.get("Type") != after.get("Type"):
            changes.append(
                TemplateChange(logical_id, resource_type, "modified", ("Type",), "restart", "type changed")
            )
            continue
        old_props, new_props = before.get("Properties", {}), after.get("Properties", {})
        changed = tuple(
            sorted(k for k in set(old_props) | set(new_props) if old_props.get(k) != new_props.get(k))
        )
        if not changed:
            continue
        if aws_only:
            changes.append(TemplateChange(logical_id, resource_type, "modified", changed, "aws-only"))
            continue
        dispositions = [_property_disposition(resource_type, prop) for prop in changed]
        disposition, reason = max(dispositions, key=lambda item: _RANK[item[0]])
        changes.append(TemplateChange(logical_id, resource_type, "modified", changed, disposition, reason))
    old_outputs, new_outputs = old.get("Outputs", {}), new.get("Outputs", {})
    changed_outputs = tuple(
        sorted(k for k in set(old_outputs) | set(new_outputs) if old_outputs.get(k) != new_outputs.get(k))
    )
    if changed_outputs:
        changes.append(
            TemplateChange(
                "Outputs",
                "stack outputs",
                "modified",
                changed_outputs,
                "restart",
                "outputs are resolved and recorded in .rtp/local.json at start",
            )
        )
    return changes


def _property_disposition(resource_type: str, prop: str) -> tuple[str, str]:
    support = SUPPORT.get(resource_type)
    if resource_type == "AWS::Lambda::Function":
        if prop == "Code":
            return "code", "the code watcher serves handlers/ as saved"
        if prop in LIVE_FUNCTION_PROPERTIES:
            return "live", ""
    if support is not None and support.properties.get(prop):
        return "not-emulated", support.properties[prop]
    return "restart", "set when the local environment starts"


# ---- the watcher --------------------------------------------------------------------------------------
class LocalWatcher:
    """Polls the watched files and applies changes to a running `FunctionRuntime` (see module docstring).

    `check()` runs one poll synchronously (tests drive it directly); `start()` polls in a thread."""

    def __init__(
        self,
        config: WatchConfig,
        template: Template,
        report: Callable[[WatchEvent], None] | None = None,
    ) -> None:
        self.config = config
        self.template = template
        self.document: dict[str, Any] = template.document  # what is being served
        self._report = report
        roots = [config.handlers_dir.resolve(), PROJECT_ROOT, Path.cwd()]
        transform_files = transform_sources(config.transform, roots) if config.transform else []
        in_handlers = [s for s, _ in transform_files if s.resolve().is_relative_to(roots[0])]
        self.snapshots = Snapshots(config.handlers_dir, [] if in_handlers else transform_files)
        self.transform_found = bool(transform_files)
        self.current: Snapshot | None = None
        self.runtime: FunctionRuntime | None = None
        self.events: list[WatchEvent] = []
        self._code_signature: dict[str, tuple[int, int]] = {}
        self._stack_signature: dict[str, tuple[int, int]] = {}
        self._failed: dict[str, str] | None = None  # digests of the last save that did not load
        self._apply = threading.Lock()  # one change applied at a time (code or template)
        self._synth_thread: threading.Thread | None = None
        self._synth_again = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- set-up ---------------------------------------------------------------------------------------
    def initial_specs(self, specs: dict[str, FunctionSpec]) -> dict[str, FunctionSpec]:
        """Snapshot 0: the functions start from the watched files as they are now."""
        self.current = self.snapshots.take()
        self._code_signature = _signature(self.snapshots.sources())
        self._stack_signature = _signature(_stack_files(self.config.stack_paths))
        return {lid: self.current.apply(spec) for lid, spec in specs.items()}

    def attach(self, runtime: FunctionRuntime) -> None:
        self.runtime = runtime
        runtime.keep_spares(self.config.spare_workers)

    def describe(self) -> str:
        """What is watched, in one line (the CLI prints it under the endpoint panel)."""
        watched = [_shown(str(self.config.handlers_dir))]
        if self.config.transform:
            module = self.config.transform.partition(":")[0]
            watched.append(module if self.transform_found else f"{module} (source not found: not watched)")
        if self.config.stack_paths:
            watched.append("stack/ and config/ (re-synthesized)")
        return "watching " + ", ".join(watched)

    def start(self) -> None:
        self.events.append(WatchEvent("info", self.describe()))
        self._thread = threading.Thread(target=self._run, name="rtp-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._synth_thread is not None:
            self._synth_thread.join(timeout=1)

    def close(self) -> None:
        self.snapshots.close()

    def status(self) -> dict[str, Any]:
        runtime = self.runtime
        return {
            "functions": runtime.describe() if runtime is not None else {},
            "serving": dict(self.current.digests) if self.current else {},
            "events": [event.to_dict() for event in self.events],
        }

    def _emit(self, event: WatchEvent) -> None:
        self.events = [*self.events[-(EVENTS_KEPT - 1) :], event]
        if self._report is not None:
            with contextlib.suppress(Exception):
                self._report(event)

    def _run(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.check()
            except Exception as error:  # never let the watcher die silently
                self._emit(WatchEvent("error", f"the watcher hit an error: {type(error).__name__}: {error}"))

    # ---- one poll -------------------------------------------------------------------------------------
    def check(self) -> None:
        code = _signature(self.snapshots.sources())
        if code != self._code_signature:
            code = self._settle(code, self.snapshots.sources)
            self._code_signature = code
            with self._apply:
                self._code_changed(code)
        if self.config.stack_paths:
            files = _stack_files(self.config.stack_paths)
            stack = _signature(files)
            if stack != self._stack_signature:
                stack = self._settle(stack, lambda: _stack_files(self.config.stack_paths))
                changed = sorted(
                    _shown(path)
                    for path in set(stack) | set(self._stack_signature)
                    if stack.get(path) != self._stack_signature.get(path)
                )
                self._stack_signature = stack
                self._synthesize(changed or ["stack/config"])

    def _settle(
        self, signature: dict[str, tuple[int, int]], files: Callable[[], list[Path]]
    ) -> dict[str, tuple[int, int]]:
        for _ in range(25):
            time.sleep(SETTLE_SECONDS)
            again = _signature(files())
            if again == signature:
                break
            signature = again
        return signature

    def _code_changed(self, signature: dict[str, tuple[int, int]]) -> None:
        assert self.current is not None and self.runtime is not None
        snapshot = self.snapshots.take()
        changed = {
            path
            for path in set(snapshot.digests) | set(self.current.digests)
            if snapshot.digests.get(path) != self.current.digests.get(path)
        }
        if not changed or snapshot.digests == self._failed:
            self.snapshots.drop(snapshot)  # touched but not changed, or the same broken save again
            return
        saved_at = max((signature[p][0] / 1e9 for p in changed if p in signature), default=time.time())
        shared = sorted(p for p in changed if self._relative(p) in SHARED_WITH_STACK)
        if shared:
            self.snapshots.drop(snapshot)
            self._failed = None
            self._emit(
                WatchEvent(
                    "paused",
                    f"{', '.join(_shown(p) for p in shared)} changed: the stack builds the API's request "
                    "model from it too, so it is a template change; code reloads are paused until it is "
                    "restored or the environment restarts (`rtp deploy --env local`)",
                )
            )
            if self.config.stack_paths:
                self._synthesize([_shown(p) for p in shared])
            return
        problems = compile_errors(snapshot, changed)
        if problems:
            first, *more = problems[0].splitlines()
            self._reject(snapshot, first, [first, *more, *problems[1:]])
            return
        functions = self._affected(changed)
        started = time.monotonic()
        replacements: list[Replacement] = []
        try:
            replacements = self._prepare({lid: snapshot.apply(self.runtime.specs[lid]) for lid in functions})
        except InitError as error:
            self._reject(snapshot, *self._init_error(error))
            return
        except Exception as error:
            self._reject(snapshot, f"could not start the new code: {error}", [])
            return
        self.runtime.commit(replacements)
        serving_at = time.time()
        self.current, self._failed = snapshot, None
        self.snapshots.prune(self.runtime.paths_in_use(), self.current)
        names = [self._name(lid) for lid in functions]
        files = sorted(_shown(p) for p in changed)
        self._emit(
            WatchEvent(
                "reloaded",
                f"{', '.join(names)} now running the new code ({', '.join(files)}; reload "
                f"{(time.monotonic() - started) * 1000:.0f} ms, handler init "
                f"{max(r.init_ms for r in replacements):.0f} ms)",
                functions=functions,
                files={p: snapshot.digests[p] for p in changed if p in snapshot.digests},
                saved_at=saved_at,
                serving_at=serving_at,
            )
        )

    def _reject(self, snapshot: Snapshot, message: str, details: list[str]) -> None:
        self._failed = snapshot.digests
        self.snapshots.drop(snapshot)
        self._emit(
            WatchEvent(
                "error", message, [*details[1:], "the previous code keeps serving; fix it and save again"]
            )
        )

    def _init_error(self, error: InitError) -> tuple[str, list[str]]:
        where = ""
        if error.location:
            source = self.snapshots.origin_of(str(error.location.get("file", "")))
            file = _shown(source) if source else str(error.location.get("file"))
            where = f"{file}:{error.location.get('line')}"
            if error.location.get("column"):
                where += f":{error.location['column']}"
        message = f"{self._name(error.logical_id)} could not load the new code: {error.error_type}: "
        message += error.error_message + (f" ({where})" if where else "")
        details = []
        text = str((error.location or {}).get("text") or "").strip()
        if text:
            details.append(f"    {text}")
        details.extend(self._unsnapshot(line) for line in _user_frames(error.stack_trace)[-6:])
        return message, [message, *details]

    def _unsnapshot(self, text: str) -> str:
        """Tracebacks name the snapshot; show the watched files instead."""
        for snapshot in self.snapshots.live.values():
            for copy, source in snapshot.origin.items():
                if copy in text:
                    text = text.replace(copy, _shown(source))
        return text

    def _prepare(self, specs: dict[str, FunctionSpec]) -> list[Replacement]:
        """Prepare every function in parallel; all or nothing."""
        assert self.runtime is not None
        runtime = self.runtime
        results: dict[str, Replacement] = {}
        errors: list[BaseException] = []

        def prepare(lid: str, spec: FunctionSpec) -> None:
            try:
                results[lid] = runtime.prepare(lid, spec)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=prepare, args=item) for item in specs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            runtime.discard(list(results.values()))
            raise errors[0]
        return [results[lid] for lid in specs]

    def _relative(self, path: str) -> str:
        with contextlib.suppress(ValueError):
            return Path(path).relative_to(self.snapshots.handlers_dir).as_posix()
        return path

    def _affected(self, changed: set[str]) -> list[str]:
        """Functions that loaded a changed file. A file no function has loaded (new, data, or imported
        lazily later) could reach any of them: then every function is replaced."""
        assert self.runtime is not None
        uses: dict[str, set[str]] = {}
        for lid in self.runtime.specs:
            sources = {self.snapshots.origin_of(module) for module in self.runtime.modules(lid)}
            uses[lid] = {source for source in sources if source}
        attributed = set().union(*uses.values()) if uses else set()
        if changed - attributed:
            return sorted(self.runtime.specs)
        return sorted(lid for lid, used in uses.items() if used & changed)

    def _name(self, logical_id: str) -> str:
        assert self.runtime is not None
        spec = self.runtime.specs.get(logical_id)
        label = spec.environment.get("POWERTOOLS_SERVICE_NAME") if spec else None
        return label or logical_id

    # ---- stack/config changes -------------------------------------------------------------------------
    def _synthesize(self, changed: list[str]) -> None:
        if self._synth_thread is not None and self._synth_thread.is_alive():
            self._synth_again = True
            return
        self._emit(WatchEvent("synthesizing", f"{', '.join(changed)} changed: synthesizing the template…"))
        self._synth_thread = threading.Thread(target=self._synth_loop, name="rtp-watch-synth", daemon=True)
        self._synth_thread.start()

    def _synth_loop(self) -> None:
        while True:
            self._synth_again = False
            synthesize = self.config.synthesize or (lambda: synthesize_in_subprocess(self.config.env_name))
            try:
                outcome = synthesize()
            except Exception as error:
                outcome = SynthOutcome(error=f"{type(error).__name__}: {error}")
            if self._stop.is_set():
                return
            with self._apply:
                self.apply_template(outcome)
            if not self._synth_again:
                return

    def apply_template(self, outcome: SynthOutcome) -> list[TemplateChange]:
        """Compare a fresh synth with the served template; apply it live or say a restart is needed."""
        if outcome.error:
            self._emit(WatchEvent("error", f"synthesis failed: {outcome.error}", ["nothing was applied"]))
            return []
        if outcome.findings:
            self._emit(
                WatchEvent(
                    "error",
                    f"the new template has {len(outcome.findings)} cdk-nag finding(s): nothing was applied",
                    list(outcome.findings),
                )
            )
            return []
        assert outcome.template is not None
        document = json.loads(outcome.template.read_text(encoding="utf-8"))
        changes = diff_templates(self.document, document)
        if not changes:
            self._emit(WatchEvent("template", "the template is unchanged: nothing to apply"))
            return changes
        details = [change.describe() for change in changes]
        live = [c for c in changes if c.disposition == "live"]
        specs: dict[str, FunctionSpec] = {}
        if live and not any(c.disposition == "restart" for c in changes):
            try:
                specs = self._live_specs(document, outcome.template, [c.logical_id for c in live])
            except TemplateError as error:
                changes = [*changes, TemplateChange("-", "-", "modified", (), "restart", str(error))]
                details.append(f"cannot be applied live: {error}")
        restart = [c for c in changes if c.disposition == "restart"]
        if restart:
            self._emit(
                WatchEvent(
                    "restart",
                    f"{len(restart)} change(s) need a restart (`rtp deploy --env {self.config.env_name}`; "
                    "local data starts empty): nothing was applied",
                    details,
                )
            )
            return changes
        if specs:
            assert self.runtime is not None
            try:
                replacements = self._prepare(specs)
            except InitError as error:
                message, more = self._init_error(error)
                self._emit(WatchEvent("error", message, [*details, *more[1:], "nothing was applied"]))
                return changes
            self.runtime.commit(replacements)
        self.document = document
        applied = (
            f"applied live to {', '.join(self._name(lid) for lid in specs)}" if specs else "nothing to apply"
        )
        self._emit(WatchEvent("template", f"template changed: {applied}", details, functions=sorted(specs)))
        return changes

    def _live_specs(
        self, document: dict[str, Any], path: Path, logical_ids: list[str]
    ) -> dict[str, FunctionSpec]:
        """New configurations for changed functions, resolved against the running resources; code stays
        what the code watcher serves."""
        assert self.runtime is not None
        fresh = Template(document, path, self.template.stack_name, self.template.region)
        fresh.refs = dict(self.template.refs)
        fresh.attrs = dict(self.template.attrs)
        specs = function_specs(fresh)
        out = {}
        for lid in logical_ids:
            current = self.runtime.specs[lid]
            out[lid] = dataclasses.replace(
                specs[lid], code_dir=current.code_dir, extra_paths=current.extra_paths
            )
        return out


# ---- synthesis in a separate process (jsii/Node must not load into the serving process) ---------------
def synthesize_in_subprocess(env_name: str, timeout: float = 600) -> SynthOutcome:
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "rtp_cli.watch", "synth", env_name],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = "\n".join((completed.stderr or completed.stdout).strip().splitlines()[-8:])
        return SynthOutcome(error=tail or f"the synthesis process exited with code {completed.returncode}")
    result = json.loads(lines[-1])
    return SynthOutcome(
        template=Path(result["template"]) if result.get("template") else None,
        findings=list(result.get("findings", [])),
        error=str(result.get("error", "")),
    )


def _synth_main(env_name: str) -> int:
    from rtp_cli.synthcache import synthesize_cached
    from stack.config import ConfigError

    try:
        result = synthesize_cached(env_name)
    except ConfigError as error:
        print(json.dumps({"error": str(error)}))
        return 0
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
        return 0
    findings = [
        f"{getattr(f, 'rule', '?')} {getattr(f, 'path', '?')}: {getattr(f, 'description', f)}"
        for f in result.findings
    ]
    print(json.dumps({"template": str(result.template_path), "findings": findings}))
    return 0


def serve_watching(
    prepared: Any,
    port: int,
    aws_port: int,
    transform: str | None,
    echo: Any,
    on_ready: Callable[[dict[str, Any]], None],
    report: Callable[[WatchEvent], None],
    *,
    watch_stack: bool = True,
) -> int:
    """`rtp deploy --env local --watch`: serve in the foreground with the watcher on (until Ctrl-C)."""
    from rtp_cli.local.control import start_foreground

    config = WatchConfig(
        transform=transform,
        stack_paths=stack_inputs("local") if watch_stack else (),
        env_name="local",
    )
    return start_foreground(
        prepared, port, aws_port, transform, echo, on_ready, watch=config, watch_report=report
    )


def render(event: WatchEvent) -> list[str]:
    """Console lines (rich markup) for one event."""
    styles = {
        "reloaded": "green",
        "error": "bold red",
        "paused": "yellow",
        "restart": "yellow",
        "template": "cyan",
        "synthesizing": "dim",
        "info": "dim",
    }
    style = styles.get(event.kind, "")
    from rich.markup import escape

    latency = (
        f" [dim](saved → running {event.latency_ms:.0f} ms)[/dim]" if event.latency_ms is not None else ""
    )
    lines = [f"[{style}]watch:[/] [{style}]{escape(event.message)}[/]{latency}"]
    lines.extend(f"  {escape(line)}" for line in event.details)
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "synth":
        raise SystemExit(_synth_main(sys.argv[2]))
    raise SystemExit("usage: python -m rtp_cli.watch synth ENV")
