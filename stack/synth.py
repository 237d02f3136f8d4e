"""Synthesize one environment to a cloud assembly and report what cdk-nag found (used by the CLI
and tests)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import App

from stack.app import build_app
from stack.config import EnvironmentConfig, load_config
from stack.pipeline_stack import PipelineStack

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


@dataclass(frozen=True)
class Finding:
    pack: str
    rule: str
    description: str
    severity: str
    path: str


@dataclass
class SynthResult:
    config: EnvironmentConfig
    outdir: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{self.config.stack_name}.template.json"

    @property
    def template(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.template_path.read_text(encoding="utf-8"))
        return loaded


def synthesize(
    env_name: str,
    outdir: Path,
    config: EnvironmentConfig | None = None,
    extend: Callable[[PipelineStack], None] | None = None,
) -> SynthResult:
    """Synthesize `env_name` into `outdir`. Config errors raise ConfigError; nag findings are returned.

    `extend` may add to the stack before synthesis (the tests use it to prove the gates can fail)."""
    config = config or load_config(env_name)
    outdir.mkdir(parents=True, exist_ok=True)
    app = App(outdir=str(outdir), context={"env": env_name})
    stack = build_app(app, env_name, config)
    if extend is not None:
        extend(stack)
    result = SynthResult(config, outdir)
    try:
        app.synth()
    except RuntimeError as error:
        report = outdir / "validation-report.json"
        if "ValidationFailed" not in str(error) or not report.is_file():
            raise
        result.findings = _findings(json.loads(report.read_text(encoding="utf-8")))
    return result


def _findings(report: dict[str, Any]) -> list[Finding]:
    return [
        Finding(
            pack=plugin["pluginName"],
            rule=violation["ruleName"],
            description=violation["description"],
            severity=violation.get("severity", "error"),
            path=construct["constructPath"],
        )
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]
