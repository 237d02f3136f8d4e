"""Every `rtp` command through Typer's runner: help, exact CDK invocations, refusals and exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from typer.testing import CliRunner

import rtp_cli.app as cli
from rtp_cli import cdk as cdk_service
from rtp_cli import doctor, gate
from rtp_cli.cdk import Identity
from rtp_cli.target import Target, TargetError
from stack.config import load_config
from tests.cli.fakes import FakeCdk

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def gate_passes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    runs: list[list[str]] = []

    def run_gate(environments: list[str], **_: Any) -> gate.GateReport:
        runs.append(environments)
        report = gate.GateReport(environments)
        report.runs = [gate.ToolRun(env, tool, "passed") for env in environments for tool in gate.TOOLS]
        return report

    monkeypatch.setattr(gate, "run_gate", run_gate)
    return runs


def _finding_report(environments: list[str], **_: Any) -> gate.GateReport:
    report = gate.GateReport(environments)
    report.runs = [gate.ToolRun(environments[0], "cdk-nag", "failed", "1 finding(s)")]
    report.findings = [
        gate.GateFinding(
            environments[0], "cdk-nag", "AwsSolutions-S1", "error", "rtp-x/Bucket", "no access logs", "t.json"
        )
    ]
    return report


# ---- help and usage ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["synth", "check", "deploy", "diff", "destroy", "status"])
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(cli.app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and "--env" in result.output


def test_top_level_help_lists_commands() -> None:
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for command in ("synth", "check", "deploy", "diff", "destroy", "status"):
        assert command in result.output


@pytest.mark.parametrize("command", ["synth", "check", "deploy", "diff", "destroy", "status"])
def test_unknown_environment_is_a_usage_error(command: str, fake_cdk: FakeCdk) -> None:
    result = runner.invoke(cli.app, [command, "--env", "nosuchenv"])
    assert result.exit_code == 2, result.output
    assert "no such environment file" in result.output and "known environments" in result.output
    assert fake_cdk.calls == []


def test_check_refuses_an_unknown_report_format(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["check", "--env", "dev", "--report", "html", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "junit, sarif or json" in result.output


# ---- deploy / diff / destroy for AWS environments -----------------------------------------------------
def test_deploy_prod_builds_the_pinned_cdk_invocation(
    fake_cdk: FakeCdk, signed_in: list[Any], gate_passes: list[Any]
) -> None:
    result = runner.invoke(cli.app, ["deploy", "--env", "prod", "--profile", "ops"])
    assert result.exit_code == 0, result.output
    assert gate_passes == [["prod"]]
    assert signed_in == [("ops", None)]
    assert fake_cdk.calls == [
        [
            "npx", "--no-install", "cdk", "deploy", "rtp-prod", "--app", "python3 main.py", "-c", "env=prod",
            "--require-approval", "broadening",
            "--outputs-file", str(ROOT / ".rtp" / "outputs-prod.json"),
            "--progress", "events",
            "--profile", "ops",
        ]
    ]  # fmt: skip


def test_deploy_non_prod_needs_no_approval(
    fake_cdk: FakeCdk, signed_in: list[Any], gate_passes: list[Any]
) -> None:
    result = runner.invoke(cli.app, ["deploy", "--env", "dev"])
    assert result.exit_code == 0, result.output
    command = fake_cdk.calls[0]
    assert command[command.index("--require-approval") + 1] == "never"
    assert "--profile" not in command and "env=dev" in command


def test_deploy_refuses_when_the_gate_fails(
    fake_cdk: FakeCdk, signed_in: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate, "run_gate", _finding_report)
    result = runner.invoke(cli.app, ["deploy", "--env", "staging"])
    assert result.exit_code == 1
    assert "AwsSolutions-S1" in result.output and "nothing was deployed" in result.output
    assert fake_cdk.calls == []


def test_deploy_refuses_without_credentials(
    fake_cdk: FakeCdk, gate_passes: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    result = runner.invoke(cli.app, ["deploy", "--env", "dev"])
    assert result.exit_code == 2, result.output
    assert "no AWS credentials" in result.output
    assert fake_cdk.calls == [] and gate_passes == []


def test_deploy_refuses_an_unknown_profile(
    fake_cdk: FakeCdk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = runner.invoke(cli.app, ["deploy", "--env", "dev", "--profile", "nope"])
    assert result.exit_code == 2
    assert "'nope' not found" in result.output
    assert fake_cdk.calls == []


def test_deploy_refuses_the_wrong_account() -> None:
    config = load_config("dev").model_copy(update={"account": "999988887777", "region": "eu-west-1"})
    with pytest.raises(TargetError, match="pins account 999988887777"):
        cdk_service.check_account(config, Identity("111122223333", "arn:aws:iam::111122223333:user/ci"))


def test_failed_cdk_run_exits_1(
    monkeypatch: pytest.MonkeyPatch, signed_in: list[Any], gate_passes: list[Any]
) -> None:
    monkeypatch.setattr(cli, "run_cdk", FakeCdk(code=3))
    result = runner.invoke(cli.app, ["deploy", "--env", "dev"])
    assert result.exit_code == 1
    assert "cdk deploy failed (exit 3)" in result.output


def test_diff_builds_the_cdk_invocation(fake_cdk: FakeCdk, signed_in: list[Any]) -> None:
    result = runner.invoke(cli.app, ["diff", "--env", "staging", "--fail"])
    assert result.exit_code == 0, result.output
    assert fake_cdk.calls == [
        [
            "npx",
            "--no-install",
            "cdk",
            "diff",
            "rtp-staging",
            "--app",
            "python3 main.py",
            "-c",
            "env=staging",
            "--fail",
        ]
    ]


def test_diff_local_is_a_usage_error(fake_cdk: FakeCdk) -> None:
    result = runner.invoke(cli.app, ["diff", "--env", "local"])
    assert result.exit_code == 2 and fake_cdk.calls == []


def test_destroy_prod_without_confirmation_is_refused_in_automation(
    fake_cdk: FakeCdk, signed_in: list[Any]
) -> None:
    result = runner.invoke(cli.app, ["destroy", "--env", "prod"])
    assert result.exit_code == 2
    assert "--yes" in result.output
    assert fake_cdk.calls == []


def test_destroy_prod_needs_the_name_typed_back(
    fake_cdk: FakeCdk, signed_in: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "interactive", lambda: True)
    wrong = runner.invoke(cli.app, ["destroy", "--env", "prod"], input="staging\n")
    assert wrong.exit_code == 2 and "did not match" in wrong.output
    assert fake_cdk.calls == []
    right = runner.invoke(cli.app, ["destroy", "--env", "prod"], input="prod\n")
    assert right.exit_code == 0, right.output
    assert fake_cdk.calls == [
        [
            "npx",
            "--no-install",
            "cdk",
            "destroy",
            "rtp-prod",
            "--app",
            "python3 main.py",
            "-c",
            "env=prod",
            "--force",
        ]
    ]


def test_destroy_with_yes_for_automation(fake_cdk: FakeCdk, signed_in: list[Any]) -> None:
    result = runner.invoke(cli.app, ["destroy", "--env", "dev", "--yes", "--profile", "ci"])
    assert result.exit_code == 0, result.output
    assert fake_cdk.calls[0][3:5] == ["destroy", "rtp-dev"] and fake_cdk.calls[0][-2:] == ["--profile", "ci"]


def test_cdk_cli_pin_is_installed_and_matches() -> None:
    if not (ROOT / "node_modules" / "aws-cdk").is_dir():
        pytest.skip("node_modules not installed (make install)")
    cdk_service.check_cdk_installed()  # raises if node_modules holds another version than package.json pins


# ---- check ---------------------------------------------------------------------------------------------
def test_check_all_environments_is_green_with_a_json_report(
    synthesized: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real gate (cfn-lint and, when installed, checkov) on every environment's template. The
    templates come from the session's synthesis (stack.synth, tested by the stack tests) to save ~40 s."""
    import stack.synth

    monkeypatch.setattr(stack.synth, "synthesize", lambda env, outdir, config=None: synthesized[env])
    report_path = tmp_path / "reports" / "check.json"
    result = runner.invoke(cli.app, ["check", "--env", "all", "--report", "json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output
    report = json.loads(report_path.read_text())
    assert report["ok"] is True and report["findings"] == []
    assert sorted(report["environments"]) == sorted(synthesized)
    tools = {(run["env"], run["tool"]): run["status"] for run in report["runs"]}
    for env in synthesized:
        assert tools[(env, "cdk-nag")] == "passed" and tools[(env, "cfn-lint")] == "passed"
        expected = "passed" if gate.checkov_binary() else "skipped"
        assert tools[(env, "checkov")] == expected


def test_check_with_findings_exits_1_and_writes_junit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(gate, "run_gate", _finding_report)
    report_path = tmp_path / "junit.xml"
    result = runner.invoke(cli.app, ["check", "--env", "dev", "--report", "junit", str(report_path)])
    assert result.exit_code == 1
    assert "gate failed" in result.output
    suite = ET.parse(report_path).getroot().find("testsuite")  # noqa: S314 - our own report
    assert suite is not None and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "AwsSolutions-S1" in (failure.text or "")


def test_sarif_report_shape() -> None:
    report = _finding_report(["dev"])
    report.runs.append(gate.ToolRun("dev", "checkov", "skipped", "not installed"))
    document = gate.sarif(report)
    assert document["version"] == "2.1.0"
    (nag,) = [run for run in document["runs"] if run["tool"]["driver"]["name"] == "cdk-nag"]
    assert nag["results"][0]["ruleId"] == "AwsSolutions-S1"
    assert nag["results"][0]["level"] == "error"
    assert nag["tool"]["driver"]["rules"] == [
        {"id": "AwsSolutions-S1", "shortDescription": {"text": "AwsSolutions-S1"}}
    ]
    junit = ET.fromstring(gate.junit_xml(report))  # noqa: S314 - our own report
    assert junit.find("testsuite/testcase/skipped") is not None


def test_synth_reports_findings_and_exits_1(monkeypatch: pytest.MonkeyPatch, synthesized: Any) -> None:
    import stack.synth
    from stack.synth import Finding

    clean = synthesized["dev"]
    dirty = type(clean)(
        clean.config,
        clean.outdir,
        [Finding("AwsSolutions", "AwsSolutions-L1", "old runtime", "error", "rtp-dev/Fn")],
    )
    monkeypatch.setattr(stack.synth, "synthesize", lambda env, outdir, config=None: dirty)
    result = runner.invoke(cli.app, ["synth", "--env", "dev"])
    assert result.exit_code == 1
    assert "AwsSolutions-L1" in result.output
    monkeypatch.setattr(stack.synth, "synthesize", lambda env, outdir, config=None: clean)
    ok = runner.invoke(cli.app, ["synth", "--env", "dev"])
    assert ok.exit_code == 0 and "0 unacknowledged findings" in ok.output


# ---- status ------------------------------------------------------------------------------------------
def test_status_local_when_not_running() -> None:
    result = runner.invoke(cli.app, ["status", "--env", "local"])
    assert result.exit_code == 2
    assert "not running" in result.output and "rtp deploy --env local" in result.output


def test_destroy_local_when_not_running_is_fine() -> None:
    result = runner.invoke(cli.app, ["destroy", "--env", "local"])
    assert result.exit_code == 0
    assert "not running" in result.output


def test_status_local_with_a_dead_pid(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "local.json").write_text(json.dumps({"pid": 2**22 + 7, "url": "http://127.0.0.1:1/v1/"}))
    result = runner.invoke(cli.app, ["status", "--env", "local"])
    assert result.exit_code == 2 and "no longer running" in result.output


@pytest.fixture
def aws_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A deployed `rtp-dev` stack as CloudFormation would describe it (moto), with a firing alarm."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        work = sqs.create_queue(QueueName="rtp-dev-work")["QueueUrl"]
        dlq = sqs.create_queue(QueueName="rtp-dev-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=dlq, MessageBody="{}")
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {
                "ApiUrl": {"Value": "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/"},
                "WorkQueueUrl": {"Value": work},
                "DeadLetterQueueUrl": {"Value": dlq},
            },
        }
        boto3.client("cloudformation", region_name="eu-west-1").create_stack(
            StackName="rtp-dev", TemplateBody=json.dumps(template)
        )
        cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
        for name in ("rtp-dev-MonitoringDeadLetters-1", "other-stack-alarm"):
            cloudwatch.put_metric_alarm(
                AlarmName=name, MetricName="ApproximateNumberOfMessagesVisible", Namespace="AWS/SQS",
                Statistic="Maximum", Period=60, EvaluationPeriods=1, Threshold=0,
                ComparisonOperator="GreaterThanThreshold",
            )  # fmt: skip
            cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="DLQ not empty")
        yield {"work": work, "dlq": dlq}


def test_status_of_an_aws_environment(aws_stack: dict[str, str]) -> None:
    result = runner.invoke(cli.app, ["status", "--env", "dev", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] == "CREATE_COMPLETE"
    assert report["apiUrl"].startswith("https://abc123.execute-api")
    assert [a["name"] for a in report["alarms"]] == ["rtp-dev-MonitoringDeadLetters-1"]
    dlq = next(q for q in report["queues"] if q["label"] == "dead-letter queue")
    assert dlq["visible"] == 1
    strict = runner.invoke(cli.app, ["status", "--env", "dev", "--strict"])
    assert strict.exit_code == 1
    assert "alarm(s) in ALARM" in strict.output and "rtp-dev-MonitoringDeadLetters-1" in strict.output


def test_status_of_an_environment_that_is_not_deployed(aws_stack: dict[str, str]) -> None:
    result = runner.invoke(cli.app, ["status", "--env", "staging"])
    assert result.exit_code == 2
    assert "rtp-staging is not deployed" in result.output


def test_status_with_an_id_shows_that_record(monkeypatch: pytest.MonkeyPatch) -> None:
    if cli.register_operate_commands is None:
        pytest.skip("operating commands not installed")
    import rtp_cli.operate.commands as operate

    seen: list[tuple[str, str, str | None]] = []
    monkeypatch.setattr(
        operate, "show_id", lambda identifier, env, profile: seen.append((identifier, env, profile))
    )
    result = runner.invoke(cli.app, ["status", "rec-1", "--env", "local"])
    assert result.exit_code == 0
    assert seen == [("rec-1", "local", None)]


# ---- deploy --env local: refusals (the running environment is covered in tests/e2e) --------------------
def test_deploy_local_with_a_missing_template() -> None:
    result = runner.invoke(
        cli.app, ["deploy", "--env", "local", "--template", "/nonexistent/t.json", "--detach"]
    )
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_deploy_local_names_what_it_cannot_honour(template_paths: Any, tmp_path: Path) -> None:
    document = json.loads(Path(template_paths["local"]).read_text())
    document["Resources"]["Stream"] = {"Type": "AWS::Kinesis::Stream", "Properties": {"ShardCount": 1}}
    queue = next(r for r in document["Resources"].values() if r["Type"] == "AWS::SQS::Queue")
    queue["Properties"]["FifoThroughputLimit"] = "perMessageGroupId"
    path = Path(template_paths["local"]).parent / "rtp-local.template.cli-unsupported.json"
    path.write_text(json.dumps(document))
    result = runner.invoke(
        cli.app, ["deploy", "--env", "local", "--template", str(path), "--detach", "--port", "0"]
    )
    assert result.exit_code == 1
    assert "Stream (AWS::Kinesis::Stream): resource type not implemented locally" in result.output
    assert "property FifoThroughputLimit is not implemented locally" in result.output
    assert not (tmp_path / "state" / "local.json").exists()


# ---- the gate's tool adapters find real problems -----------------------------------------------------
BAD_TEMPLATE = {
    "Resources": {
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"NoSuchProperty": True}},
        "Queue": {"Type": "AWS::SQS::Queue"},
    }
}


def test_cfn_lint_adapter_reports_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.template.json"
    path.write_text(json.dumps(BAD_TEMPLATE))
    findings: list[gate.GateFinding] = []
    run = gate._cfn_lint("dev", path, findings)
    assert run.status == "failed"
    assert any(f.resource == "Bucket" and "NoSuchProperty" in f.message for f in findings)


@pytest.mark.process
def test_checkov_adapter_reports_failed_checks(tmp_path: Path) -> None:
    if gate.checkov_binary() is None:
        pytest.skip("checkov is not installed (make install creates .venv-checkov)")
    path = tmp_path / "bad.template.json"
    template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}  # unencrypted queue: a checkov failure
    path.write_text(json.dumps(template))
    findings: list[gate.GateFinding] = []
    (run,) = gate._checkov({"dev": path}, findings)
    assert run.status == "failed", run
    assert findings and all(f.tool == "checkov" and f.rule.startswith("CKV") for f in findings)
    assert {f.env for f in findings} == {"dev"}


# ---- deploy runs `rtp doctor` first (the checks themselves: tests/cli/test_doctor.py) ---------------------
def _doctor_report(env: str, *statuses: doctor.Status) -> doctor.DoctorReport:
    report = doctor.DoctorReport(env, "111122223333", "eu-west-1")
    for n, status in enumerate(statuses):
        report.checks.append(
            doctor.CheckResult(f"check-{n}", status, f"saw {status}", f"fix-{n}", "https://d/x")
        )
    return report


@pytest.fixture(autouse=True)
def doctor_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """By default the doctor passes; tests below make it warn, fail or refuse."""
    runs: list[str] = []

    def run_doctor(config: Any, identity: Identity, profile: str | None) -> doctor.DoctorReport:
        runs.append(config.name)
        return _doctor_report(config.name, "PASS")

    monkeypatch.setattr(cli, "run_doctor", run_doctor)
    return runs


def test_deploy_runs_doctor_before_the_gate(
    fake_cdk: FakeCdk, signed_in: list[Any], gate_passes: list[Any], doctor_runs: list[str]
) -> None:
    result = runner.invoke(cli.app, ["deploy", "--env", "staging"])
    assert result.exit_code == 0, result.output
    assert doctor_runs == ["staging"] and gate_passes == [["staging"]] and len(fake_cdk.calls) == 1
    assert result.output.index("doctor passed") < result.output.index("gate passed")


def test_deploy_stops_on_a_doctor_failure_before_any_cdk_call(
    fake_cdk: FakeCdk, signed_in: list[Any], gate_passes: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cli, "run_doctor", lambda config, identity, profile: _doctor_report("prod", "PASS", "FAIL")
    )
    result = runner.invoke(cli.app, ["deploy", "--env", "prod"])
    assert result.exit_code == 1, result.output
    assert "1 check(s) failed: nothing was deployed" in result.output
    assert "check-1" in result.output and "fix-1" in result.output
    assert fake_cdk.calls == [] and gate_passes == []


def test_deploy_prints_doctor_warnings_and_continues(
    fake_cdk: FakeCdk, signed_in: list[Any], gate_passes: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cli, "run_doctor", lambda config, identity, profile: _doctor_report("dev", "PASS", "WARN")
    )
    result = runner.invoke(cli.app, ["deploy", "--env", "dev"])
    assert result.exit_code == 0, result.output
    assert (
        "WARN" in result.output
        and "fix-1" in result.output
        and "doctor passed with 1 warning(s)" in result.output
    )
    assert len(fake_cdk.calls) == 1


def test_deploy_skip_doctor(
    fake_cdk: FakeCdk, signed_in: list[Any], gate_passes: list[Any], doctor_runs: list[str]
) -> None:
    result = runner.invoke(cli.app, ["deploy", "--env", "dev", "--skip-doctor"])
    assert result.exit_code == 0, result.output
    assert doctor_runs == [] and "doctor skipped (--skip-doctor)" in result.output
    assert len(fake_cdk.calls) == 1


def test_deploy_when_doctor_cannot_run_is_a_usage_error(
    fake_cdk: FakeCdk, signed_in: list[Any], gate_passes: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(config: Any, identity: Identity, profile: str | None) -> doctor.DoctorReport:
        raise doctor.DoctorError("no AWS region for environment 'dev'")

    monkeypatch.setattr(cli, "run_doctor", refuse)
    result = runner.invoke(cli.app, ["deploy", "--env", "dev"])
    assert result.exit_code == 2 and "no AWS region" in result.output
    assert fake_cdk.calls == [] and gate_passes == []


def test_deploy_local_does_not_run_doctor(doctor_runs: list[str]) -> None:
    result = runner.invoke(cli.app, ["deploy", "--env", "local", "--template", "/nonexistent/t.json"])
    assert result.exit_code == 2 and doctor_runs == []


# ---- status: an alarm e-mail that never confirmed --------------------------------------------------------
@pytest.fixture
def prod_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A deployed `rtp-prod` (moto) whose alarm topic's SNS answers come from a Stubber, because moto
    confirms e-mail subscriptions at once and real SNS does not."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    topic = "arn:aws:sns:eu-west-1:123456789012:rtp-prod-MonitoringAlarmTopic-X"
    with mock_aws():
        template = {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {
                "ApiUrl": {"Value": "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/"},
                "AlarmTopicArn": {"Value": topic},
            },
        }
        boto3.client("cloudformation", region_name="eu-west-1").create_stack(
            StackName="rtp-prod", TemplateBody=json.dumps(template)
        )
        sns = boto3.client("sns", region_name="eu-west-1")
        stub = Stubber(sns)
        original = Target.client

        def client(self: Target, service: str, **kwargs: Any) -> Any:
            return sns if service == "sns" else original(self, service, **kwargs)

        monkeypatch.setattr(Target, "client", client)
        with stub:
            yield {"topic": topic, "stub": stub}
        stub.assert_no_pending_responses()


def _subscribed(prod_stack: dict[str, Any], arn: str) -> None:
    prod_stack["stub"].add_response(
        "list_subscriptions_by_topic",
        {
            "Subscriptions": [
                {
                    "SubscriptionArn": arn,
                    "Owner": "123456789012",
                    "Protocol": "email",
                    "Endpoint": "data-platform-oncall@example.com",
                    "TopicArn": prod_stack["topic"],
                }
            ]
        },
        {"TopicArn": prod_stack["topic"]},
    )


def test_status_warns_about_a_pending_alarm_email(prod_stack: dict[str, Any]) -> None:
    _subscribed(prod_stack, "PendingConfirmation")
    result = runner.invoke(cli.app, ["status", "--env", "prod"])
    assert result.exit_code == 0, result.output
    assert (
        "warning:" in result.output and "data-platform-oncall@example.com has not confirmed" in result.output
    )
    assert "Confirm subscription" in result.output
    _subscribed(prod_stack, "PendingConfirmation")
    report = json.loads(runner.invoke(cli.app, ["status", "--env", "prod", "--json"]).output)
    (warning,) = report["warnings"]
    assert "has not confirmed" in warning["detail"] and "48 h" in warning["fix"]


def test_status_is_quiet_about_a_confirmed_alarm_email(prod_stack: dict[str, Any]) -> None:
    _subscribed(prod_stack, prod_stack["topic"] + ":5f2b")
    report = json.loads(runner.invoke(cli.app, ["status", "--env", "prod", "--json"]).output)
    assert report["warnings"] == []
