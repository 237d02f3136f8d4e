"""Shared fixtures. Every environment is synthesized once per test session and shared.

The CDK (jsii, which starts Node) is imported only inside the synth fixtures, so a run that needs none of
them (`make test-fast`) never loads it; tests/tiers.py marks the tests that use them `synth`.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest

from tests.local_environments import (  # noqa: F401 - the end-to-end fixtures, one family for tests/
    incident_stack,
    local_env,
    main_stack,
    rtp,
    stopped_stack,
    tuned_env,
)
from tests.tiers import (  # the test tiers' hooks (pytest finds hooks by name in a conftest)
    pytest_addoption,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_pycollect_makemodule,
    pytest_sessionfinish,
    pytest_unconfigure,
)

if TYPE_CHECKING:
    from stack.synth import SynthResult

__all__ = [
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_pycollect_makemodule",
    "pytest_sessionfinish",
    "pytest_unconfigure",
]

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
# No per-example deadline (hypothesis's default is 200 ms): on a shared 2-core machine, and with the fast
# tier on one xdist worker per core, an example of a correct test can take longer, and the test then fails
# for the machine's load. What must be fast has a test of its own (e.g. pathological nesting is refused
# quickly, tests/handlers/test_validation.py).
hypothesis.settings.register_profile("rtp", deadline=None)
hypothesis.settings.load_profile("rtp")
ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _environments() -> list[str]:
    """Every config/*.yaml, by name. Read on first use: stack.config loads pydantic, which the xdist
    controller of `make test-fast` (it imports this module, runs no test) would load for nothing."""
    from stack.config import available_environments

    return available_environments()


def __getattr__(name: str) -> Any:
    if name == "ENVIRONMENTS":  # `from tests.conftest import ENVIRONMENTS`: the synth-tier modules
        return _environments()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _LazySynth(Mapping[str, "SynthResult"]):
    """env name -> SynthResult, each environment synthesized on first use (once per session), so a run
    that needs only `local` (e.g. the handler tests) does not pay for every environment."""

    def __init__(self, root: Path, synthesize: Callable[[str, Path], SynthResult]) -> None:
        self._root = root
        self._synthesize = synthesize
        self._done: dict[str, SynthResult] = {}

    def __getitem__(self, env: str) -> SynthResult:
        if env not in _environments():
            raise KeyError(env)
        if env not in self._done:
            self._done[env] = self._synthesize(env, self._root / env)
        return self._done[env]

    def __iter__(self) -> Iterator[str]:
        return iter(_environments())

    def __len__(self) -> int:
        return len(_environments())


class _LazyTemplates(Mapping[str, dict[str, Any]]):
    def __init__(self, results: _LazySynth) -> None:
        self._results = results
        self._loaded: dict[str, dict[str, Any]] = {}

    def __getitem__(self, env: str) -> dict[str, Any]:
        if env not in self._loaded:
            self._loaded[env] = self._results[env].template
        return self._loaded[env]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


@pytest.fixture(scope="session", autouse=True)
def _moto_as_the_local_runtime_runs_it() -> None:
    """In-process moto gets the local runtime's transaction snapshot (rtp_cli/local/emulation.py), so the
    handler tests run against the emulation `rtp deploy --env local` serves. It changes what a transaction
    costs, not what it does (tests/test_moto_guards.py); a redelivery test takes ~1 s instead of ~4 s.
    Its KMS keys share one unused private key (patch_moto_kms): ~0.2 s less per stack built in moto; its
    SQS queues spell attribute names from a cache (patch_moto_sqs); its DynamoDB items are built and its
    JSON requests parsed as the served runtime's are (rtp_cli/local/speedups.py: the same answers, checked
    against moto's own in tests/test_moto_guards.py); its responses are serialized with a plain dict's
    member names looked up once per shape (rtp_cli/local/serializer.py: moto's own bytes, checked in
    tests/test_moto_serializer.py)."""
    from rtp_cli.local.emulation import patch_moto

    patch_moto()  # the set the served runtime installs (start_emulation)


@pytest.fixture(scope="session", autouse=True)
def _one_botocore_loader() -> None:
    """moto's `mock_aws()` takes boto3's default session away, so every `boto3.client()` inside a mock
    starts a new botocore session, and each new session parses the service's JSON model files again
    (about 8 s of CPU per fast-tier run). Here every session of the test process shares one loader per
    data path: the files are the same, and one session already shares the parsed models among its
    clients. (boto3 appends its own data path to the loader once per session: harmless duplicates.)"""
    import botocore.session

    create_loader = botocore.session.create_loader
    if getattr(create_loader, "shared", False):
        return
    loaders: dict[str | None, Any] = {}

    def shared_loader(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = create_loader(search_path_string)
        return loaders[search_path_string]

    shared_loader.shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = shared_loader


@pytest.fixture(scope="session", autouse=True)
def _one_click_command_per_app() -> Iterator[None]:
    """typer's `CliRunner.invoke` turns the Typer app into a click command on every call: for `rtp`, every
    command's signature and type hints read again, ~150 ms, about 15 s of CPU over the suite's invocations.
    Here each app is turned into its command once; click makes a fresh context for every invocation, so the
    command carries nothing from one to the next. (An app given a new command after its first invocation
    would not show it: no test does that; each builds its own app first.)"""
    import typer
    import typer.testing

    build = getattr(typer.testing, "_get_command", None)
    if build is None:  # typer no longer builds it there: nothing to share
        yield
        return
    built: weakref.WeakKeyDictionary[typer.Typer, Any] = weakref.WeakKeyDictionary()

    def command_of(typer_instance: typer.Typer) -> Any:  # typer's own parameter name
        if typer_instance not in built:
            built[typer_instance] = build(typer_instance)
        return built[typer_instance]

    typer.testing._get_command = command_of
    yield
    typer.testing._get_command = build


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, SynthResult]:
    """env name -> SynthResult (template, findings) for every file in config/ (synthesized on first use)."""
    # Imported here, not at collection: jsii/Node load only for a test that uses this fixture. Bound now,
    # so a test that monkeypatches stack.synth.synthesize with a function reading this fixture still works.
    from stack.synth import synthesize

    return _LazySynth(tmp_path_factory.mktemp("cdk-out"), synthesize)


@pytest.fixture(scope="session")
def templates(synthesized: _LazySynth) -> Mapping[str, dict[str, Any]]:
    return _LazyTemplates(synthesized)


@pytest.fixture(scope="session")
def template_paths(synthesized: dict[str, SynthResult]) -> dict[str, Path]:
    return {env: result.template_path for env, result in synthesized.items()}


class _CachedTemplates(Mapping[str, dict[str, Any]]):
    """env name -> template from the synth cache (rtp_cli/synthcache.py, shared with `rtp deploy --env
    local`). On a miss a child process synthesizes and fills the cache, so this process never loads jsii.
    The template is the one a fresh synth gives (same inputs, same key); there are no cdk-nag findings."""

    def __init__(self) -> None:
        self._loaded: dict[str, dict[str, Any]] = {}

    def __getitem__(self, env: str) -> dict[str, Any]:
        if env not in _environments():
            raise KeyError(env)
        if env not in self._loaded:
            from rtp_cli.synthcache import CACHE_ROOT, cached_template

            path = cached_template(env)
            if path is None:
                # pytest-xdist workers miss together: one synthesizes while the others wait, then read its
                # entry (two fillers would replace each other's entry while it is being read).
                CACHE_ROOT.mkdir(parents=True, exist_ok=True)
                with (CACHE_ROOT / ".tests.lock").open("w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    path = cached_template(env) or self._fill(env)
            self._loaded[env] = json.loads(path.read_text(encoding="utf-8"))
        return self._loaded[env]

    @staticmethod
    def _fill(env: str) -> Path:
        from rtp_cli.synthcache import cached_template

        child = subprocess.run(
            [sys.executable, "-m", "rtp_cli.synthcache", env],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        path = cached_template(env)
        if child.returncode != 0 or path is None:
            pytest.fail(f"could not synthesize {env} into the synth cache:\n{child.stderr[-3000:]}")
        return path

    def __iter__(self) -> Iterator[str]:
        return iter(_environments())

    def __len__(self) -> int:
        return len(_environments())


@pytest.fixture(scope="session")
def cached_templates() -> Mapping[str, dict[str, Any]]:
    """env name -> template, from the synth cache: for tests that read a template but need no synth of
    their own (the fast tier). Do not modify it: copy.deepcopy first (it is shared by the session)."""
    return _CachedTemplates()
