"""The IaC gates: cdk-nag (AwsSolutions + Serverless), cfn-lint and checkov on every synthesized template.

Each gate also gets a negative test that proves it can fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_sqs as sqs
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

from stack.config import load_config
from stack.pipeline_stack import PipelineStack
from stack.synth import SynthResult, synthesize
from tests.conftest import ENVIRONMENTS
from tests.template_tools import ROOT, pipeline_functions

CHECKOV = Path(os.environ.get("CHECKOV") or ROOT / ".venv-checkov" / "bin" / "checkov")
# Each skip is declared in the resource's Metadata next to its construct in stack/, with its reason.
# A new kind of skip must be added here on purpose (and justified in the stack), not slip in.
ALLOWED_CHECKOV_SKIPS = {
    "CKV_AWS_18",  # access-log bucket: logging it to itself would loop
    "CKV_AWS_115",  # reserved concurrency: only where the config asks (new accounts cannot grant it)
    "CKV_AWS_116",  # function DLQ: sync (API Gateway) or ESM invocations never use it
    "CKV_AWS_117",  # VPC: the functions reach only AWS APIs, no private resources
    "CKV_AWS_120",  # API caching: POST ingestion and fast-changing status reads
}
GENERIC_REASON = re.compile(
    r"^\s*(suppress(ed)?|ignored?|false positive|not applicable|n/?a|ok|accepted( risk)?|by design|"
    r"intended|intentional|known|won'?t fix|todo|fixme|tbd|see above|not needed|not required)\W*$",
    re.IGNORECASE,
)
RULE_ID = re.compile(r"^(AwsSolutions|Serverless)-[A-Za-z0-9]+(\[.+\])?$")


def metadata_entries(template: dict[str, Any], key: str, field: str) -> list[tuple[str, dict[str, Any]]]:
    """(logical id, entry) for every entry of Metadata[key][field] in the template."""
    return [
        (logical_id, entry)
        for logical_id, resource in template["Resources"].items()
        for entry in resource.get("Metadata", {}).get(key, {}).get(field, [])
    ]


# --- cdk-nag ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cdk_nag_has_no_unacknowledged_findings(env: str, synthesized: Mapping[str, SynthResult]) -> None:
    findings = synthesized[env].findings
    assert findings == [], "\n".join(f"{f.rule} at {f.path}: {f.description[:120]}" for f in findings)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_cdk_nag_acknowledgement_has_a_specific_reason(
    env: str, templates: Mapping[str, dict[str, Any]]
) -> None:
    acknowledgements = metadata_entries(templates[env], "cdk_nag", "rules_to_suppress")
    assert acknowledgements, "write_suppressions_to_cloud_formation should put them in the template"
    for logical_id, entry in acknowledgements:
        rule, reason = entry["id"], entry.get("reason", "")
        assert RULE_ID.match(rule), (logical_id, rule)
        assert len(reason) > 40, f"{logical_id} {rule}: reason too short: {reason!r}"
        assert not GENERIC_REASON.match(reason), f"{logical_id} {rule}: generic reason {reason!r}"
        assert not re.search(r"\b(TODO|FIXME|TBD)\b", reason), (logical_id, rule)
    # A reason explains one rule: the same text is not pasted onto different rules.
    rules_by_reason: dict[str, set[str]] = {}
    for _, entry in acknowledgements:
        rules_by_reason.setdefault(entry["reason"], set()).add(re.sub(r"\[.*", "", entry["id"]))
    shared = {reason: rules for reason, rules in rules_by_reason.items() if len(rules) > 1}
    assert not shared, shared


def test_cdk_nag_flags_a_non_compliant_resource(tmp_path: Path) -> None:
    """The gate can fail: a bare queue (no DLQ, no TLS-only policy) added to the stack is reported."""

    def add_bare_queue(stack: PipelineStack) -> None:
        sqs.CfnQueue(stack, "BareQueue")

    result = synthesize("dev", tmp_path, config=load_config("dev"), extend=add_bare_queue)
    flagged = {f.rule for f in result.findings if "BareQueue" in f.path}
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4", "Serverless-SQSRedrivePolicy"} <= flagged, (
        result.findings
    )
    assert all("BareQueue" in f.path for f in result.findings), "only the added queue is flagged"


# --- cfn-lint ---------------------------------------------------------------------------------------


def _lint(path: Path, region: str | None) -> list[str]:
    matches = lint_file(path, config=ManualArgs(regions=[region or "us-east-1"]))
    return [f"{m.rule.id} {m.message} ({m.path_string})" for m in matches if m.rule.id[0] in "EW"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_cfn_lint_reports_no_errors_or_warnings(env: str, template_paths: Mapping[str, Path]) -> None:
    problems = _lint(template_paths[env], load_config(env).region)
    assert problems == []


def test_cfn_lint_catches_a_broken_template(templates: Mapping[str, dict[str, Any]], tmp_path: Path) -> None:
    broken = copy.deepcopy(templates["dev"])
    processor = pipeline_functions(broken)["processor"]
    broken["Resources"][processor]["Properties"]["Timeout"] = 5000  # Lambda allows at most 900
    path = tmp_path / "broken.template.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    problems = _lint(path, None)
    assert any(p.startswith("E") and f"Resources/{processor}/Properties/Timeout" in p for p in problems), (
        problems
    )
    # cfn-lint also knows the SQS rule this stack follows: visibility timeout >= function timeout.
    assert any("VisibilityTimeout" in p for p in problems), problems


# --- checkov ----------------------------------------------------------------------------------------

NEGATIVE = "dev-without-skips"


@pytest.fixture(scope="session")
def checkov_results(
    templates: Mapping[str, dict[str, Any]],
    template_paths: Mapping[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """One checkov run over every environment's template plus a copy of dev with its skips removed.

    Returns label -> {"passed"|"failed"|"skipped": [check records]}."""
    if not (CHECKOV.is_file() and os.access(CHECKOV, os.X_OK)):
        pytest.fail(f"checkov not found at {CHECKOV} (set CHECKOV, or run `make test`, which installs it)")
    stripped = copy.deepcopy(templates["dev"])
    for resource in stripped["Resources"].values():
        resource.get("Metadata", {}).pop("checkov", None)
    negative = tmp_path_factory.mktemp("checkov") / f"{NEGATIVE}.template.json"
    negative.write_text(json.dumps(stripped), encoding="utf-8")
    paths = {env: template_paths[env].resolve() for env in ENVIRONMENTS} | {NEGATIVE: negative.resolve()}

    args = [str(CHECKOV), "--framework", "cloudformation", "--output", "json", "--skip-download"]
    for path in paths.values():
        args += ["--file", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), f"checkov failed to run ({done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    label = {str(path): name for name, path in paths.items()}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"passed": [], "failed": [], "skipped": []} for name in paths
    }
    for part in reports:
        assert part["check_type"] == "cloudformation"
        assert part["results"]["parsing_errors"] == []
        for outcome in ("passed", "failed", "skipped"):
            for check in part["results"][f"{outcome}_checks"]:
                results[label[check["file_abs_path"]]][outcome].append(check)
    return results


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_checkov_has_no_failed_checks(env: str, checkov_results: dict) -> None:
    result = checkov_results[env]
    failed = [f"{c['check_id']} {c['check_name']} on {c['resource']}" for c in result["failed"]]
    assert failed == []
    assert len(result["passed"]) > 100, "checkov scanned the template"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_checkov_skips_are_few_declared_and_justified(
    env: str, checkov_results: dict, templates: Mapping[str, dict[str, Any]]
) -> None:
    declared = metadata_entries(templates[env], "checkov", "skip")
    assert {entry["id"] for _, entry in declared} <= ALLOWED_CHECKOV_SKIPS
    for logical_id, entry in declared:
        comment = entry.get("comment", "")
        assert len(comment) > 40 and not GENERIC_REASON.match(comment), (logical_id, entry)
    applied = {(c["check_id"], c["resource"].split(".", 1)[1]) for c in checkov_results[env]["skipped"]}
    assert applied == {(entry["id"], logical_id) for logical_id, entry in declared}, "every skip is used"
    # Reserved concurrency is only skipped where the config leaves it off.
    config = load_config(env)
    functions = pipeline_functions(templates[env])
    for name, logical_id in functions.items():
        skipped = ("CKV_AWS_115", logical_id) in applied
        assert skipped == (getattr(config.functions, name).reserved_concurrency is None), name


def test_checkov_fails_the_template_without_its_skips(checkov_results: dict) -> None:
    """The gate can fail, and every skip holds back a real finding (no stale skips)."""
    failed = {(c["check_id"], c["resource"]) for c in checkov_results[NEGATIVE]["failed"]}
    skipped_in_dev = {(c["check_id"], c["resource"]) for c in checkov_results["dev"]["skipped"]}
    assert failed == skipped_in_dev
    assert checkov_results[NEGATIVE]["skipped"] == []
