"""The two test tiers, as a pytest plugin (its hooks are imported by tests/conftest.py).

- `make test`: everything.
- `make test-fast` (`pytest --fast`): the domain, handler and CLI unit tests, without the CDK. It deselects
  tests marked `synth` (they synthesize with the CDK in the test process: jsii starts Node), `e2e`
  (they start the local environment as processes) and `process` (they start other processes: the local
  runtime's function workers, the `rtp` CLI as a child, a child pytest, checkov), and keeps jsii out of
  the process.

A test is marked `synth` here, from the fixtures it uses (`SYNTH_FIXTURES`), so a new test is classified
without anyone remembering to mark it. A test that only needs a template uses `cached_templates` instead
(tests/conftest.py: the synth cache, filled by a child process on a miss) and stays in the fast tier.

In the fast tier, importing jsii or aws_cdk raises `CdkImportError`: a test that does it fails by name, a
test module that does it at module level is skipped as a whole (reported: it belongs to the synth tier),
and the run fails if either was loaded anyway (e.g. by a conftest before this plugin was configured).
`make test-fast` runs the tier on pytest-xdist workers: each worker blocks and checks in its own process
and reports a load to the controller (`workeroutput`), which fails the run.

Property-based tests run fewer examples in the fast tier (it is for feedback; `make test` runs the full
counts): the `rtp-fast` hypothesis profile (a tenth of hypothesis's 100) for tests that set no count, and
`examples(full)` for tests that set one: `@settings(max_examples=examples(300))`.
"""

from __future__ import annotations

import gc
import importlib.abc
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import hypothesis
import pytest

__all__ = [  # the hooks, for a conftest to import
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_pycollect_makemodule",
    "pytest_sessionfinish",
    "pytest_unconfigure",
]

SYNTH_FIXTURES = frozenset({"synthesized", "templates", "template_paths"})
SLOW_MARKERS = ("synth", "e2e", "process")
CDK_MODULES = ("jsii", "aws_cdk")  # constructs and cdk_nag load jsii first


FAST_PROFILE = "rtp-fast"
FAST_EXAMPLES_SHARE = 10  # the fast tier runs a tenth of a test's examples...
FAST_EXAMPLES_FLOOR = 5  # ...but at least this many (or the full count, when that is smaller)
_fast_run = False  # set by pytest_configure, before any test module is imported (collection)
# The fast tier's young-generation threshold (CPython's default: 700 allocations). moto and botocore allocate
# so much that the default ran a collection every few milliseconds: on the processor and replay tests 1,800
# collections, 1.9 s of 15 to 19 s of CPU; with 10,000, 96 collections, 0.4 s, and 5% more memory (measured
# 2026-11-29). Garbage is still collected, less often; `make test` keeps the default.
FAST_GC_THRESHOLD = 10_000


def examples(full: int) -> int:
    """A property-based test's `max_examples`: `full` in `make test`, a tenth of it (at least
    FAST_EXAMPLES_FLOOR) in the fast tier. Call it in the `@settings(...)` decorator: test modules are
    imported after the tier is known."""
    if not _fast_run:
        return full
    return min(full, max(FAST_EXAMPLES_FLOOR, full // FAST_EXAMPLES_SHARE))


class CdkImportError(ImportError):
    """Raised by an import of jsii or aws_cdk during a fast-tier run."""


class _CdkBlocker(importlib.abc.MetaPathFinder):
    """First on sys.meta_path during a fast run: refuses the CDK's modules and remembers who asked."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.attempts: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname.partition(".")[0] not in CDK_MODULES:
            return None
        caller = _project_frames(self.root)
        self.attempts.append(f"{fullname} (from {caller})")
        raise CdkImportError(
            f"`import {fullname}` in the fast tier (from {caller}): it starts jsii/Node. Use the "
            "`cached_templates` fixture for a template, or the synth tier (`synthesized`/`templates` "
            "fixtures, run by `make test`).",
            name=fullname,
        )


def _project_frames(root: Path) -> str:
    """The last frames under the rootdir that led to the import (not pytest, not site-packages)."""
    chain = [
        f"{path.relative_to(root)}:{frame.lineno}"
        for frame in traceback.extract_stack()[:-2]
        if (path := Path(frame.filename)).is_absolute()
        and path.is_relative_to(root)
        and ".venv" not in path.parts
        and path != Path(__file__).resolve()
    ]
    return " -> ".join(chain[-3:]) or "outside the rootdir"


_BLOCKER_KEY = pytest.StashKey[_CdkBlocker]()
_WORKER_LOADS_KEY = pytest.StashKey[list[str]]()
_LOADED_OUTPUT = "rtp_cdk_loaded"  # the worker's `workeroutput` key for its verdict


class _WorkerVerdicts:
    """On the controller of a pytest-xdist run (the workers run the tests): collects each worker's report
    of the CDK loaded in its process."""

    def __init__(self, loads: list[str]) -> None:
        self.loads = loads

    def pytest_testnodedown(self, node: Any, error: object) -> None:
        message = getattr(node, "workeroutput", {}).get(_LOADED_OUTPUT)
        if message:
            self.loads.append(f"[{node.gateway.id}] {message}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fast",
        action="store_true",
        help="the fast tier: deselect `synth`, `e2e` and `process` tests; fail on an import of jsii/aws_cdk",
    )


def fast_tier(config: pytest.Config) -> bool:
    return bool(config.getoption("--fast", default=False))


def pytest_configure(config: pytest.Config) -> None:
    global _fast_run
    _fast_run = fast_tier(config)
    if _fast_run and not config.getoption("hypothesis_profile", default=None):  # an explicit choice wins
        # on top of the profile loaded now (tests/conftest.py's `rtp`, at its import): fewer examples only
        hypothesis.settings.register_profile(FAST_PROFILE, max_examples=examples(100))
        hypothesis.settings.load_profile(FAST_PROFILE)
    if fast_tier(config):
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(FAST_GC_THRESHOLD, older, oldest)
        blocker = _CdkBlocker(config.rootpath)
        sys.meta_path.insert(0, blocker)
        config.stash[_BLOCKER_KEY] = blocker
        if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
            config.stash[_WORKER_LOADS_KEY] = []
            config.pluginmanager.register(_WorkerVerdicts(config.stash[_WORKER_LOADS_KEY]))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    blocker = config.stash.get(_BLOCKER_KEY, None)
    if blocker is not None and blocker in sys.meta_path:
        sys.meta_path.remove(blocker)
    if hasattr(config, "workerinput"):
        _leave_the_garbage_to_the_exit()


def _leave_the_garbage_to_the_exit() -> None:
    """An xdist worker's last act (its reports are sent): the interpreter's shutdown would run a full garbage
    collection over everything the tests left (moto accounts, clients, hypothesis data) while the controller
    waits for the process to end: from a worker's atexit to the controller's end 1.3 and 2.2 s measured, 0.2 s
    with the heap frozen (frozen objects are never collected; the process ends anyway)."""
    gc.disable()
    gc.freeze()


class _FastTierModule(pytest.Module):
    """A test module that, in the fast tier, is skipped (not failed) when it imports the CDK at import."""

    def collect(self) -> Any:
        try:
            return super().collect()
        except self.CollectError as error:
            if isinstance(error.__cause__, CdkImportError):
                pytest.skip(
                    f"{self.nodeid}: synth tier, imports {error.__cause__.name} at module level "
                    "(`make test` runs it)",
                    allow_module_level=True,
                )
            raise


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if fast_tier(parent.config):
        module: pytest.Module = _FastTierModule.from_parent(parent, path=module_path)
        return module
    return None  # pytest's own


@pytest.hookimpl(tryfirst=True)  # before `-m` filters on the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SYNTH_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.synth)
    if not fast_tier(config):
        return
    kept = [item for item in items if not any(item.get_closest_marker(m) for m in SLOW_MARKERS)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def pytest_collection_finish(session: pytest.Session) -> None:
    """In the fast tier, what collection built (every module imported, the test items) is frozen: it lives to
    the end, and the collector's full collections no longer walk it again and again (garbage collection took
    1.8 s of the 16 s of CPU of the processor and replay tests, 1.3 s with this; measured 2026-11-29)."""
    if fast_tier(session.config):
        gc.freeze()


def cdk_modules_loaded() -> list[str]:
    return [name for name in CDK_MODULES if name in sys.modules]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not fast_tier(session.config):
        return
    worker_loads: list[str] = session.config.stash.get(_WORKER_LOADS_KEY, [])
    failures = list(worker_loads)
    if loaded := cdk_modules_loaded():
        blocker = session.config.stash.get(_BLOCKER_KEY, None)
        attempts = blocker.attempts if blocker is not None else []
        failures.insert(
            0,
            f"fast tier: {', '.join(loaded)} loaded in this process (jsii starts Node); "
            f"blocked imports: {'; '.join(attempts) or 'none (loaded before the plugin was configured)'}",
        )
    if not failures:
        return
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: the controller reports it and fails the run
        worker_output[_LOADED_OUTPUT] = "; ".join(failures)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for message in failures:
            reporter.write_line(message, red=True, bold=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
