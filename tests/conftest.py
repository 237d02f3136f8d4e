"""Shared fixtures. Every environment is synthesized once per test session and shared."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from stack.config import available_environments
from stack.synth import SynthResult, synthesize

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
ENVIRONMENTS = available_environments()


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SynthResult]:
    """env name -> SynthResult (template, findings) for every file in config/."""
    root = tmp_path_factory.mktemp("cdk-out")
    return {env: synthesize(env, root / env) for env in ENVIRONMENTS}


@pytest.fixture(scope="session")
def templates(synthesized: dict[str, SynthResult]) -> dict[str, dict[str, Any]]:
    return {env: result.template for env, result in synthesized.items()}


@pytest.fixture(scope="session")
def template_paths(synthesized: dict[str, SynthResult]) -> dict[str, Path]:
    return {env: result.template_path for env, result in synthesized.items()}
