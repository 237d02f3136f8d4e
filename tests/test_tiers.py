"""The test tiers (tests/tiers.py): what `--fast` deselects, skips and refuses, shown on a small suite run
in a child pytest with stand-in `aws_cdk`/`jsii` packages (nothing heavy is imported)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tests.conftest
from tests.tiers import CDK_MODULES, SYNTH_FIXTURES

ROOT = Path(__file__).resolve().parent.parent

SUITE = {
    "pytest.ini": "[pytest]\nmarkers =\n    synth: stand-in\n    e2e: stand-in\n",
    "aws_cdk/__init__.py": "",
    "jsii/__init__.py": "",
    "conftest.py": """
        import os

        import pytest

        from tests.tiers import *  # noqa: F403 - the hooks under test

        # "1": in every process; "workers": only in pytest-xdist workers (the controller runs no tests)
        if os.environ.get("PRELOAD_CDK") == "1" or (
            os.environ.get("PRELOAD_CDK") == "workers" and os.environ.get("PYTEST_XDIST_WORKER")
        ):
            import aws_cdk  # noqa: F401 - loaded before the plugin is configured

        @pytest.fixture
        def synthesized():
            return {}
        """,
    "test_plain.py": "def test_plain():\n    pass\n",
    "test_uses_synth.py": "def test_uses_synth(synthesized):\n    pass\n",
    "test_imports_cdk_at_module_level.py": "import aws_cdk\n\ndef test_never_runs():\n    pass\n",
    "test_imports_cdk_inside.py": "def test_imports_jsii():\n    import jsii\n",
    "test_starts_a_process.py": "import pytest\n\n@pytest.mark.process\ndef test_worker():\n    pass\n",
}


# Each example appends a character to a file named for its test: how many examples each test ran.
PROPERTY_TESTS = {
    "test_properties.py": """
        from pathlib import Path

        from hypothesis import given, settings, strategies as st

        from tests.tiers import examples

        def ran(name):
            with Path(name).open("a") as runs:
                runs.write("x")

        @settings(max_examples=examples(200), database=None)
        @given(st.integers())
        def test_examples_set_by_the_test(n):
            ran("set_by_the_test")

        @settings(database=None)
        @given(st.integers())
        def test_examples_of_the_profile(n):
            ran("of_the_profile")
        """,
}


def run_suite(
    tmp_path: Path,
    *args: str,
    preload: bool = False,
    preload_in_workers: bool = False,
    extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    for name, text in {**SUITE, **(extra or {})}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    env = {
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
        "PATH": "/usr/bin:/bin",
        **({"PRELOAD_CDK": "1"} if preload else {}),
        **({"PRELOAD_CDK": "workers"} if preload_in_workers else {}),
    }
    command = [sys.executable, "-m", "pytest", "-rA", "--rootdir", str(tmp_path)]
    command += ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]  # quicker start
    return subprocess.run(
        [*command, *args, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.process
def test_fast_tier_deselects_synth_skips_cdk_modules_and_fails_a_cdk_import(tmp_path: Path) -> None:
    result = run_suite(tmp_path, "--fast")
    out = result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "PASSED test_plain.py::test_plain" in out
    # test_uses_synth (marked `synth` from its fixture) and test_starts_a_process (marked `process`)
    assert "2 deselected" in out
    assert "test_imports_cdk_at_module_level.py: synth tier, imports aws_cdk at module level" in out
    assert "FAILED test_imports_cdk_inside.py::test_imports_jsii" in out
    assert "CdkImportError: `import jsii` in the fast tier (from test_imports_cdk_inside.py:2)" in out


@pytest.mark.process
def test_the_full_tier_runs_everything(tmp_path: Path) -> None:
    result = run_suite(tmp_path)
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "5 passed" in result.stdout and "deselected" not in result.stdout


@pytest.mark.process
def test_fast_tier_fails_when_the_cdk_was_loaded_before_it_could_block(tmp_path: Path) -> None:
    result = run_suite(tmp_path, "--fast", "-k", "plain", preload=True)
    assert "1 passed" in result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "fast tier: aws_cdk loaded in this process" in result.stdout


@pytest.mark.process
def test_on_xdist_workers_the_fast_tier_keeps_every_verdict(tmp_path: Path) -> None:
    """`make test-fast` runs the tier on pytest-xdist workers: the same deselection, skip and failure."""
    result = run_suite(tmp_path, "--fast", "-n", "2")
    out = result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "PASSED test_plain.py::test_plain" in out
    assert "2 workers [2 items]" in out  # the workers deselected test_uses_synth and test_starts_a_process
    assert "test_imports_cdk_at_module_level.py: synth tier, imports aws_cdk at module level" in out
    assert "FAILED test_imports_cdk_inside.py::test_imports_jsii" in out
    assert "CdkImportError: `import jsii` in the fast tier (from test_imports_cdk_inside.py:2)" in out


@pytest.mark.process
def test_a_cdk_load_in_an_xdist_worker_fails_the_run(tmp_path: Path) -> None:
    """Only the workers load it (the controller's own check sees nothing): their report fails the run."""
    result = run_suite(tmp_path, "--fast", "-n", "2", "-k", "plain", preload_in_workers=True)
    assert "1 passed" in result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "] fast tier: aws_cdk loaded in this process" in result.stdout
    clean = run_suite(tmp_path, "--fast", "-n", "2", "-k", "plain")  # the same run without the load
    assert clean.returncode == pytest.ExitCode.OK, clean.stdout


@pytest.mark.process
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full"])
def test_the_fast_tier_runs_a_tenth_of_the_examples_and_the_full_tier_all(tmp_path: Path, fast: bool) -> None:
    result = run_suite(tmp_path, *(["--fast"] if fast else []), "-k", "examples", extra=PROPERTY_TESTS)
    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "2 passed" in result.stdout
    ran = {name: len((tmp_path / name).read_text()) for name in ("set_by_the_test", "of_the_profile")}
    assert ran == (
        {"set_by_the_test": 20, "of_the_profile": 10}
        if fast
        else {"set_by_the_test": 200, "of_the_profile": 100}
    )


def test_the_marking_fixtures_are_fixtures() -> None:
    """A renamed synth fixture would silently stop marking its tests: each name must be a real fixture."""
    fixture_type = type(tests.conftest.cached_templates)
    assert {name for name in SYNTH_FIXTURES if type(getattr(tests.conftest, name, None)) is fixture_type} == (
        SYNTH_FIXTURES
    )
    assert set(CDK_MODULES) == {"jsii", "aws_cdk"}


def test_a_test_using_a_synth_fixture_is_marked_synth(
    request: pytest.FixtureRequest, templates: object
) -> None:
    """(Runs in the full tier only, which is the point; `templates` synthesizes nothing until indexed.)"""
    assert request.node.get_closest_marker("synth") is not None


def test_a_test_using_the_synth_cache_stays_in_the_fast_tier(
    request: pytest.FixtureRequest, cached_templates: object
) -> None:
    assert request.node.get_closest_marker("synth") is None


# Modules the fast tier never collects (synth or end-to-end): their example counts are theirs to choose.
SLOW_TIER_MODULES = {"tests/test_stack.py"}
SLOW_TIER_DIRECTORIES = ("tests/e2e/",)


def test_fast_tier_tests_scale_their_example_counts() -> None:
    """A property-based test in the fast tier that writes `max_examples=<number>` runs all of them in
    `make test-fast` too (a new module of 200-example tests once added 9 s to it): it must say
    `max_examples=examples(n)`."""
    root = Path(__file__).resolve().parent.parent
    fixed = re.compile(r"max_examples\s*=\s*\d")
    offenders = [
        f"{relative}:{number}"
        for path in sorted((root / "tests").rglob("*.py"))
        if (relative := path.relative_to(root).as_posix()) not in SLOW_TIER_MODULES
        and not relative.startswith(SLOW_TIER_DIRECTORIES)
        and relative != "tests/test_tiers.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if fixed.search(line)
    ]
    assert offenders == [], "use max_examples=examples(n) (tests/tiers.py): " + ", ".join(offenders)


def test_an_xdist_worker_leaves_its_garbage_to_the_exit_and_the_controller_does_not() -> None:
    """The worker's unconfigure freezes the heap and stops the collector (tests/tiers.py: the final collection
    of a worker's heap was 1-2 s of `make test-fast`'s wall time); any other process keeps collecting."""
    import gc
    from types import SimpleNamespace

    from tests.tiers import pytest_unconfigure

    frozen_before = gc.get_freeze_count()
    try:
        pytest_unconfigure(SimpleNamespace(stash=pytest.Stash()))  # type: ignore[arg-type]  # a controller
        assert gc.isenabled() and gc.get_freeze_count() == frozen_before
        worker = SimpleNamespace(stash=pytest.Stash(), workerinput={"workerid": "gw0"})
        pytest_unconfigure(worker)  # type: ignore[arg-type]
        assert not gc.isenabled() and gc.get_freeze_count() > frozen_before
    finally:
        gc.enable()  # what it froze stays frozen, as the fast tier's collection freezes everything it built


def test_the_fast_tier_freezes_what_collection_built_and_the_full_tier_does_not() -> None:
    import gc
    from types import SimpleNamespace

    from tests.tiers import pytest_collection_finish

    def session(fast: bool) -> Any:
        return SimpleNamespace(config=SimpleNamespace(getoption=lambda name, default=None: fast))

    frozen_before = gc.get_freeze_count()
    pytest_collection_finish(session(fast=False))
    assert gc.get_freeze_count() == frozen_before
    pytest_collection_finish(session(fast=True))
    assert gc.get_freeze_count() > frozen_before


def test_the_fast_tier_collects_garbage_less_often_and_the_full_tier_as_python_does() -> None:
    import gc

    from tests import tiers

    young = gc.get_threshold()[0]
    assert (young == tiers.FAST_GC_THRESHOLD) == tiers._fast_run, (young, tiers._fast_run)
