"""Shared fixtures. Every environment is synthesized once per test session and shared."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stack.config import available_environments
from stack.synth import SynthResult, synthesize

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
ENVIRONMENTS = available_environments()


class _LazySynth(Mapping[str, SynthResult]):
    """env name -> SynthResult, each environment synthesized on first use (once per session), so a run
    that needs only `local` (e.g. the handler tests) does not pay for every environment."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._done: dict[str, SynthResult] = {}

    def __getitem__(self, env: str) -> SynthResult:
        if env not in ENVIRONMENTS:
            raise KeyError(env)
        if env not in self._done:
            self._done[env] = synthesize(env, self._root / env)
        return self._done[env]

    def __iter__(self) -> Iterator[str]:
        return iter(ENVIRONMENTS)

    def __len__(self) -> int:
        return len(ENVIRONMENTS)


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


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, SynthResult]:
    """env name -> SynthResult (template, findings) for every file in config/ (synthesized on first use)."""
    return _LazySynth(tmp_path_factory.mktemp("cdk-out"))


@pytest.fixture(scope="session")
def templates(synthesized: _LazySynth) -> Mapping[str, dict[str, Any]]:
    return _LazyTemplates(synthesized)


@pytest.fixture(scope="session")
def template_paths(synthesized: dict[str, SynthResult]) -> dict[str, Path]:
    return {env: result.template_path for env, result in synthesized.items()}
