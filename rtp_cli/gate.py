"""The compliance gate (`rtp check`, and the first step of `rtp deploy`): synth + cdk-nag + cfn-lint +
checkov (when installed) for one or more environments, as one list of findings, plus CI report writers
(JUnit XML, SARIF 2.1.0, JSON).

cfn-lint errors and warnings are findings (informational matches are not). checkov runs from `$CHECKOV`
or the project's `.venv-checkov` (it pins packages that clash with the project's, so it lives in its own
virtualenv); when neither exists it is reported as skipped, never as passed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rtp_cli.paths import PROJECT_ROOT

TOOLS = ("cdk-nag", "cfn-lint", "checkov")
TOOL_URIS = {
    "cdk-nag": "https://github.com/cdklabs/cdk-nag",
    "cfn-lint": "https://github.com/aws-cloudformation/cfn-lint",
    "checkov": "https://www.checkov.io",
}


@dataclass(frozen=True)
class GateFinding:
    env: str
    tool: str
    rule: str
    severity: str  # error | warning
    resource: str
    message: str
    location: str = ""


@dataclass
class ToolRun:
    env: str
    tool: str
    status: str  # passed | failed | skipped | error
    detail: str = ""
    seconds: float = 0.0


@dataclass
class GateReport:
    environments: list[str]
    findings: list[GateFinding] = field(default_factory=list)
    runs: list[ToolRun] = field(default_factory=list)
    templates: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings and all(run.status in ("passed", "skipped") for run in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "environments": self.environments,
            "templates": self.templates,
            "runs": [asdict(run) for run in self.runs],
            "findings": [asdict(finding) for finding in self.findings],
        }


def checkov_binary() -> Path | None:
    configured = os.environ.get("CHECKOV")
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    local = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"
    if local.is_file():
        return local
    found = shutil.which("checkov")
    return Path(found) if found else None


Progress = Callable[[str], None]


def run_gate(
    environments: list[str],
    outdir: Path | None = None,
    tools: tuple[str, ...] = TOOLS,
    progress: Progress | None = None,
) -> GateReport:
    """Synthesize each environment and run every tool. ConfigError propagates (a usage error)."""
    from stack.config import load_config
    from stack.synth import synthesize

    say = progress or (lambda _message: None)
    for env in environments:
        load_config(env)  # fail fast on a bad file, before the slow synths
    root = outdir or Path(tempfile.mkdtemp(prefix="rtp-check-"))
    report = GateReport(environments)
    templates: dict[str, Path] = {}
    for env in environments:
        say(f"{env}: synth + cdk-nag")
        started = time.monotonic()
        result = synthesize(env, root / env)
        templates[env] = result.template_path
        report.templates[env] = str(result.template_path)
        for finding in result.findings:
            report.findings.append(
                GateFinding(
                    env,
                    "cdk-nag",
                    finding.rule,
                    "error",
                    finding.path,
                    finding.description,
                    str(result.template_path),
                )
            )
        report.runs.append(
            ToolRun(
                env,
                "cdk-nag",
                "failed" if result.findings else "passed",
                f"{len(result.findings)} finding(s)",
                round(time.monotonic() - started, 2),
            )
        )
    if "cfn-lint" in tools:
        for env, path in templates.items():
            say(f"{env}: cfn-lint")
            report.runs.append(_cfn_lint(env, path, report.findings))
    if "checkov" in tools:
        say("checkov")
        report.runs.extend(_checkov(templates, report.findings))
    return report


def _cfn_lint(env: str, template: Path, findings: list[GateFinding]) -> ToolRun:
    started = time.monotonic()
    if not template.is_file():
        return ToolRun(env, "cfn-lint", "error", f"no template at {template} (synth failed)")
    from cfnlint.api import lint_file  # type: ignore[import-untyped]

    count = 0
    for match in lint_file(template):
        severity = str(getattr(match.rule, "severity", "error")).lower()
        if severity not in ("error", "warning"):
            continue
        count += 1
        path = getattr(match, "path", None) or []
        resource = (
            str(path[1]) if len(path) > 1 and path[0] == "Resources" else "/".join(str(p) for p in path)
        )
        findings.append(
            GateFinding(
                env,
                "cfn-lint",
                str(match.rule.id),
                severity,
                resource,
                str(match.message),
                f"{template}:{match.linenumber}",
            )
        )
    return ToolRun(
        env,
        "cfn-lint",
        "failed" if count else "passed",
        f"{count} error(s)/warning(s)",
        round(time.monotonic() - started, 2),
    )


def _checkov(templates: dict[str, Path], findings: list[GateFinding]) -> list[ToolRun]:
    binary = checkov_binary()
    if binary is None:
        return [
            ToolRun(
                env, "checkov", "skipped", "checkov is not installed (set $CHECKOV or run `make install`)"
            )
            for env in templates
        ]
    runs = []
    started = time.monotonic()
    command = [
        str(binary),
        "--framework",
        "cloudformation",
        "-o",
        "json",
        "--quiet",
        "--compact",
        "--skip-download",
    ]
    for path in templates.values():
        command += ["-f", str(path)]
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
        "LOG_LEVEL": "ERROR",
    }
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    elapsed = round(time.monotonic() - started, 2)
    try:
        parsed = json.loads(completed.stdout) if completed.stdout.strip() else {}
    except json.JSONDecodeError:
        detail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        return [
            ToolRun(env_name, "checkov", "error", f"could not read checkov output: {detail[0]}", elapsed)
            for env_name in templates
        ]
    results = parsed if isinstance(parsed, list) else [parsed]
    failed_by_file: dict[str, int] = {}
    by_path = {str(path.resolve()): env_name for env_name, path in templates.items()}
    for result in results:
        if not isinstance(result, dict):
            continue
        for check in result.get("results", {}).get("failed_checks", []):
            file_path = str(Path(check.get("file_abs_path") or check.get("file_path", "")).resolve())
            env_name = by_path.get(file_path, next(iter(templates)) if len(templates) == 1 else "?")
            failed_by_file[env_name] = failed_by_file.get(env_name, 0) + 1
            findings.append(
                GateFinding(
                    env_name,
                    "checkov",
                    str(check.get("check_id")),
                    "error",
                    str(check.get("resource", "")),
                    str(check.get("check_name", "")),
                    file_path,
                )
            )
    if completed.returncode not in (0, 1):
        return [
            ToolRun(env_name, "checkov", "error", f"checkov exited {completed.returncode}", elapsed)
            for env_name in templates
        ]
    for env_name in templates:
        count = failed_by_file.get(env_name, 0)
        runs.append(
            ToolRun(env_name, "checkov", "failed" if count else "passed", f"{count} failed check(s)", elapsed)
        )
    return runs


# ---- reports -----------------------------------------------------------------------------------------
def write_report(report: GateReport, fmt: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    elif fmt == "junit":
        path.write_text(junit_xml(report), encoding="utf-8")
    elif fmt == "sarif":
        path.write_text(json.dumps(sarif(report), indent=2) + "\n", encoding="utf-8")
    else:
        raise ValueError(f"unknown report format {fmt!r} (junit, sarif, json)")


def junit_xml(report: GateReport) -> str:
    suites = ET.Element("testsuites", name="rtp check")
    for env in report.environments:
        runs = [run for run in report.runs if run.env == env]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"rtp check {env}",
            tests=str(len(runs)),
            failures=str(sum(1 for r in runs if r.status == "failed")),
            errors=str(sum(1 for r in runs if r.status == "error")),
            skipped=str(sum(1 for r in runs if r.status == "skipped")),
        )
        for run in runs:
            case = ET.SubElement(
                suite, "testcase", classname=f"rtp.check.{env}", name=run.tool, time=str(run.seconds)
            )
            found = [f for f in report.findings if f.env == env and f.tool == run.tool]
            if run.status == "skipped":
                ET.SubElement(case, "skipped", message=run.detail)
            elif run.status == "error":
                ET.SubElement(case, "error", message=run.detail)
            elif found:
                failure = ET.SubElement(case, "failure", message=f"{len(found)} finding(s)", type=run.tool)
                failure.text = "\n".join(f"{f.rule} {f.resource}: {f.message}" for f in found)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def sarif(report: GateReport) -> dict[str, Any]:
    runs = []
    for tool in TOOLS:
        tool_findings = [f for f in report.findings if f.tool == tool]
        if not any(run.tool == tool for run in report.runs):
            continue
        rules = sorted({f.rule for f in tool_findings})
        runs.append(
            {
                "tool": {
                    "driver": {
                        "name": tool,
                        "informationUri": TOOL_URIS[tool],
                        "rules": [{"id": rule, "shortDescription": {"text": rule}} for rule in rules],
                    }
                },
                "results": [
                    {
                        "ruleId": f.rule,
                        "level": "error" if f.severity == "error" else "warning",
                        "message": {"text": f"[{f.env}] {f.resource}: {f.message}"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": _relative(f.location.split(":")[0])}
                                },
                                "logicalLocations": [{"name": f.resource, "kind": "resource"}],
                            }
                        ],
                    }
                    for f in tool_findings
                ],
            }
        )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": runs,
    }


def _relative(location: str) -> str:
    path = Path(location)
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
