"""`rtp doctor`: every check's outcomes against botocore Stubber (the exact AWS calls and responses),
the facts read from the real synthesized assembly, and the command's rendering and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import rtp_cli.app as cli
from rtp_cli import cdk as cdk_service
from rtp_cli import doctor
from rtp_cli.cdk import Identity
from rtp_cli.doctor import AssemblyFacts, CheckResult, DoctorReport
from stack.config import EnvironmentConfig, load_config
from stack.custom_resources.api_gateway_account.handler import trusts_apigateway
from tests.test_trust_policy import ANY_JSON, POLICIES
from tests.tiers import examples

REGION = "eu-west-1"
ACCOUNT = "111122223333"
IDENTITY = Identity(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/ci")
BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
# The shape of stack.functions.POWERTOOLS_LAYER_PARAMETER (importing it loads the CDK; the unit tests below
# need a parameter name, and test_facts_from_the_synthesized_assembly checks the real one).
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/arm64/python3.14/3.37.0"
FACTS = AssemblyFacts(BOOTSTRAP_PARAMETER, 6, (POWERTOOLS_LAYER_PARAMETER,))
LAYER_ARN = f"arn:aws:lambda:{REGION}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-arm64:1"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:rtp-prod-MonitoringAlarmTopic-ABC"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/service-role/ApiGatewayCloudWatchLogs"
TRUST_APIGW = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
runner = CliRunner()


class Aws:
    """One real boto3 client per service, each behind a Stubber that expects exactly the calls queued."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self.stubs: dict[str, Stubber] = {}

    def __call__(self, service: str) -> Any:
        self.stub(service)
        return self._clients[service]

    def stub(self, service: str) -> Stubber:
        if service not in self.stubs:
            client = boto3.client(
                service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
            )  # type: ignore[call-overload]
            self._clients[service] = client
            self.stubs[service] = Stubber(client)
            self.stubs[service].activate()
        return self.stubs[service]

    def ok(
        self, service: str, method: str, response: dict[str, Any], params: dict[str, Any] | None = None
    ) -> None:
        self.stub(service).add_response(method, response, params)

    def error(self, service: str, method: str, code: str, message: str = "", status: int = 400) -> None:
        self.stub(service).add_client_error(method, code, message or code, status)

    def verify(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


@pytest.fixture
def aws() -> Iterator[Aws]:
    fake = Aws()
    yield fake
    fake.verify()  # every queued AWS call was made: no check was silently skipped


def prod(**changes: Any) -> EnvironmentConfig:
    config = load_config("prod")
    return config.model_copy(update=changes) if changes else config


def stack(status: str = "UPDATE_COMPLETE", **outputs: str) -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": "rtp-prod",
                "CreationTime": "2026-01-01T00:00:00Z",
                "StackStatus": status,
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def not_deployed(aws: Aws) -> None:
    aws.error("cloudformation", "describe_stacks", "ValidationError", "Stack with id rtp-prod does not exist")


def parameter(name: str, value: str) -> dict[str, Any]:
    return {"Parameter": {"Name": name, "Type": "String", "Value": value}}


def bootstrapped(aws: Aws, version: str = "21") -> None:
    aws.ok("ssm", "get_parameter", parameter(BOOTSTRAP_PARAMETER, version), {"Name": BOOTSTRAP_PARAMETER})


def layer_published(aws: Aws) -> None:
    aws.ok(
        "ssm",
        "get_parameter",
        parameter(POWERTOOLS_LAYER_PARAMETER, LAYER_ARN),
        {"Name": POWERTOOLS_LAYER_PARAMETER},
    )


def lambda_account(aws: Aws, limit: int = 1000, unreserved: int = 1000) -> None:
    aws.ok(
        "lambda",
        "get_account_settings",
        {"AccountLimit": {"ConcurrentExecutions": limit, "UnreservedConcurrentExecutions": unreserved}},
    )


def apigw_account(aws: Aws, role: str | None = ROLE_ARN, rate: float = 10000.0, burst: int = 5000) -> None:
    response: dict[str, Any] = {"throttleSettings": {"burstLimit": burst, "rateLimit": rate}}
    if role:
        response["cloudwatchRoleArn"] = role
    aws.ok("apigateway", "get_account", response)


def role_exists(aws: Aws, trust: dict[str, Any] = TRUST_APIGW) -> None:
    aws.ok(
        "iam",
        "get_role",
        {
            "Role": {
                "Path": "/service-role/",
                "RoleName": "ApiGatewayCloudWatchLogs",
                "RoleId": "AROAEXAMPLEEXAMPLE123",
                "Arn": ROLE_ARN,
                "CreateDate": "2020-01-01T00:00:00Z",
                "AssumeRolePolicyDocument": json.dumps(trust),
            }
        },
        {"RoleName": "ApiGatewayCloudWatchLogs"},
    )


def healthy_fresh_account(aws: Aws) -> None:
    not_deployed(aws)
    bootstrapped(aws)
    layer_published(aws)
    lambda_account(aws)
    apigw_account(aws)
    role_exists(aws)


def run(
    aws: Aws, config: EnvironmentConfig | None = None, facts: AssemblyFacts | None = FACTS, **kw: Any
) -> DoctorReport:
    return doctor.run_doctor(
        config or prod(), IDENTITY, REGION, aws, facts, include_cdk_cli=False, cli_template_version=33, **kw
    )


def row(report: DoctorReport, name: str) -> CheckResult:
    (found,) = [c for c in report.checks if c.name == name]
    return found


# ---- the whole report ------------------------------------------------------------------------------------
def test_a_ready_fresh_account_passes_every_check(aws: Aws) -> None:
    healthy_fresh_account(aws)
    report = run(aws)
    assert [(c.name, c.status) for c in report.checks] == [
        ("credentials and account", "PASS"),
        ("stack state", "PASS"),
        ("CDK bootstrap", "PASS"),
        ("Powertools layer", "PASS"),
        ("Lambda concurrency", "PASS"),
        ("account_concurrency_limit", "PASS"),
        ("API Gateway CloudWatch role", "PASS"),
        ("API Gateway account throttle", "PASS"),
        ("alarm e-mail", "PASS"),
    ]
    assert report.ok and report.warnings == []
    assert "not deployed yet" in row(report, "stack state").detail
    assert "pinned CLI bootstraps version 33" in row(report, "CDK bootstrap").detail
    assert LAYER_ARN in row(report, "Powertools layer").detail
    assert "confirmation link" in row(report, "alarm e-mail").detail
    document = json.loads(json.dumps(report.to_dict()))
    assert document["ok"] is True and document["region"] == REGION and len(document["checks"]) == 9


def test_every_warning_and_failure_names_its_documentation(aws: Aws) -> None:
    """A fresh, unprepared account: each problem row carries the fix and the AWS page it encodes."""
    not_deployed(aws)
    aws.error("ssm", "get_parameter", "ParameterNotFound")
    aws.error("ssm", "get_parameter", "ParameterNotFound")
    lambda_account(aws, limit=10, unreserved=10)
    apigw_account(aws, role=None)
    report = run(aws)
    problems = [c for c in report.checks if c.status != "PASS"]
    assert {c.name for c in problems} == {
        "CDK bootstrap",
        "Powertools layer",
        "Lambda concurrency",
        "account_concurrency_limit",
        "API Gateway CloudWatch role",
    }
    assert not report.ok and len(report.failures) == 3
    for check in problems:
        assert check.doc.startswith("https://docs.aws.amazon.com/"), check
        assert check.fix, check


# ---- credentials and account ------------------------------------------------------------------------------
def test_identity_row_says_where_the_stack_goes() -> None:
    pinned = prod(account=ACCOUNT, region=REGION)
    assert (
        f"matches account {ACCOUNT} / {REGION}" in doctor.check_identity(pinned, IDENTITY, REGION, "x").detail
    )
    unpinned = doctor.check_identity(prod(), IDENTITY, "us-east-2", "from AWS_REGION / the profile")
    assert "pins no account" in unpinned.detail and "us-east-2 (from AWS_REGION" in unpinned.detail


def test_cdk_cli_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cdk_service, "PROJECT_ROOT", tmp_path)
    (tmp_path / "package.json").write_text(json.dumps({"devDependencies": {"aws-cdk": "2.1148.1"}}))
    missing = doctor.check_cdk_cli()
    assert missing.status == "FAIL" and "make install" in missing.fix
    installed = tmp_path / "node_modules" / "aws-cdk"
    installed.mkdir(parents=True)
    (installed / "package.json").write_text(json.dumps({"version": "2.1148.1"}))
    assert doctor.check_cdk_cli().status == "PASS"
    (installed / "package.json").write_text(json.dumps({"version": "2.1000.0"}))
    assert doctor.check_cdk_cli().status == "FAIL"


# ---- stack state ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "status", "fix"),
    [
        ("CREATE_COMPLETE", "PASS", ""),
        ("UPDATE_ROLLBACK_COMPLETE", "PASS", ""),
        ("ROLLBACK_COMPLETE", "FAIL", "rtp destroy --env prod"),
        ("DELETE_FAILED", "FAIL", "rtp destroy --env prod"),
        ("UPDATE_ROLLBACK_FAILED", "FAIL", "continue-update-rollback --stack-name rtp-prod"),
        ("UPDATE_IN_PROGRESS", "FAIL", "wait"),
        ("REVIEW_IN_PROGRESS", "WARN", "events"),
    ],
)
def test_stack_state(state: str, status: str, fix: str) -> None:
    result = doctor.check_stack_state("prod", "rtp-prod", stack(state)["Stacks"][0])
    assert result.status == status and fix in result.fix
    assert state in result.detail


def test_stack_state_access_denied_is_a_warning_not_a_pass(aws: Aws) -> None:
    aws.error("cloudformation", "describe_stacks", "AccessDenied", status=403)
    bootstrapped(aws)
    layer_published(aws)
    lambda_account(aws)
    apigw_account(aws)
    role_exists(aws)
    result = row(run(aws), "stack state")
    assert result.status == "WARN" and "could not check" in result.detail
    assert "may not call cloudformation:DescribeStacks" in result.detail


# ---- CDK bootstrap ----------------------------------------------------------------------------------------
def test_not_bootstrapped_fails_with_the_bootstrap_command(aws: Aws) -> None:
    aws.error("ssm", "get_parameter", "ParameterNotFound")
    result = doctor.check_bootstrap(aws, ACCOUNT, REGION, FACTS)
    assert result.status == "FAIL"
    assert f"npx cdk bootstrap aws://{ACCOUNT}/{REGION}" in result.fix
    assert "not CDK-bootstrapped" in result.detail and result.doc == doctor.DOC_BOOTSTRAP


@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.integers(min_value=1, max_value=60), minimum=st.integers(min_value=1, max_value=60))
def test_bootstrap_version_against_the_apps_minimum(version: int, minimum: int) -> None:
    fake = Aws()
    bootstrapped(fake, str(version))
    result = doctor.check_bootstrap(fake, ACCOUNT, REGION, AssemblyFacts(BOOTSTRAP_PARAMETER, minimum, ()))
    fake.verify()
    assert result.status == ("FAIL" if version < minimum else "PASS")
    if result.status == "FAIL":
        assert f"at least {minimum}" in result.detail and "cdk bootstrap" in result.fix


def test_bootstrap_uses_the_assembly_parameter_and_reports_unreadable_ones(aws: Aws) -> None:
    custom = AssemblyFacts("/cdk-bootstrap/myqualif/version", 6, ())
    aws.ok(
        "ssm",
        "get_parameter",
        parameter(custom.bootstrap_parameter, "30"),
        {"Name": custom.bootstrap_parameter},
    )
    assert doctor.check_bootstrap(aws, ACCOUNT, REGION, custom).status == "PASS"
    aws.error("ssm", "get_parameter", "AccessDeniedException", status=400)
    denied = doctor.check_bootstrap(aws, ACCOUNT, REGION, custom)
    assert denied.status == "WARN" and "could not check" in denied.detail
    bootstrapped(aws, "12")
    unknown = doctor.check_bootstrap(aws, ACCOUNT, REGION, None, "RuntimeError: synth broke")
    assert unknown.status == "WARN" and "synth broke" in unknown.detail


# ---- Powertools layer -------------------------------------------------------------------------------------
def test_powertools_layer_missing_in_the_region_fails(aws: Aws) -> None:
    aws.error("ssm", "get_parameter", "ParameterNotFound")
    (result,) = doctor.check_ssm_parameters(aws, "ap-southeast-7", (POWERTOOLS_LAYER_PARAMETER,))
    assert result.status == "FAIL" and result.name == "Powertools layer"
    assert "not published" in result.detail and "change-set" in result.detail
    assert "region" in result.fix and result.doc == doctor.DOC_POWERTOOLS_LAYER


def test_powertools_layer_resolves(aws: Aws) -> None:
    layer_published(aws)
    (result,) = doctor.check_ssm_parameters(aws, REGION, (POWERTOOLS_LAYER_PARAMETER,))
    assert result.status == "PASS" and LAYER_ARN in result.detail


# ---- Lambda concurrency -----------------------------------------------------------------------------------
def test_a_new_accounts_quota_cannot_grant_prods_reservations(aws: Aws) -> None:
    lambda_account(aws, limit=10, unreserved=10)
    concurrency, assumption = doctor.check_lambda_concurrency(aws, prod(), None)
    assert concurrency.status == "FAIL"
    assert "reserves 170 (ingest 100, processor 50, query 20)" in concurrency.detail
    assert "can grant at most 0" in concurrency.detail
    assert "at least 270" in concurrency.fix  # 10 + (100 - (10 - 170))
    assert assumption.status == "WARN"
    assert "assumes 1000" in assumption.detail and "quota is 10" in assumption.detail
    assert "account_concurrency_limit: 10" in assumption.fix


def test_the_deployed_stacks_own_reservations_are_given_back(aws: Aws) -> None:
    """Limit 300 with this stack already holding 170: unreserved reads 130, but the deploy replaces the
    stack's reservations, so 300 - 170 = 130 stay unreserved: enough."""
    lambda_account(aws, limit=300, unreserved=130)
    for name, reserved in (("ingest-fn", 100), ("processor-fn", 50), ("query-fn", 20)):
        aws.ok(
            "lambda",
            "get_function_concurrency",
            {"ReservedConcurrentExecutions": reserved},
            {"FunctionName": name},
        )
    deployed = stack(
        IngestFunctionName="ingest-fn", ProcessorFunctionName="processor-fn", QueryFunctionName="query-fn"
    )["Stacks"][0]
    concurrency, assumption = doctor.check_lambda_concurrency(aws, prod(), deployed)
    assert concurrency.status == "PASS", concurrency
    assert "leaves 130 unreserved" in concurrency.detail and "+170 held by this stack" in concurrency.detail
    assert assumption.status == "WARN"  # the YAML still claims 1000


def test_provisioned_concurrency_outside_a_reservation_counts(aws: Aws) -> None:
    config = load_config("dev")
    functions = config.functions.model_copy(
        update={"ingest": config.functions.ingest.model_copy(update={"provisioned_concurrency": 5})}
    )
    lambda_account(aws, limit=100, unreserved=100)
    concurrency, _ = doctor.check_lambda_concurrency(
        aws, config.model_copy(update={"functions": functions}), None
    )
    assert concurrency.status == "FAIL" and "5 provisioned" in concurrency.detail


@settings(max_examples=examples(60), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(min_value=10, max_value=5000),
    taken=st.integers(min_value=0, max_value=5000),
    reservations=st.lists(st.integers(min_value=1, max_value=400), min_size=0, max_size=3),
)
def test_concurrency_verdict_is_the_100_unreserved_rule(
    limit: int, taken: int, reservations: list[int]
) -> None:
    """FAIL exactly when the reservations would leave fewer than 100 unreserved (Lambda's rule)."""
    unreserved = max(limit - taken, 0)
    base = load_config("dev")
    names = ("ingest", "processor", "query")
    update = {
        name: getattr(base.functions, name).model_copy(update={"reserved_concurrency": n})
        for name, n in zip(names, reservations, strict=False)
    }
    config = base.model_copy(update={"functions": base.functions.model_copy(update=update)})
    fake = Aws()
    lambda_account(fake, limit, unreserved)
    concurrency, _ = doctor.check_lambda_concurrency(fake, config, None)
    fake.verify()
    claim = sum(reservations)
    expected = "PASS" if claim == 0 or unreserved - claim >= 100 else "FAIL"
    assert concurrency.status == expected


def test_lambda_settings_unreadable_is_a_warning(aws: Aws) -> None:
    aws.error("lambda", "get_account_settings", "AccessDeniedException", status=403)
    (result,) = doctor.check_lambda_concurrency(aws, prod(), None)
    assert result.status == "WARN" and "lambda:GetAccountSettings" in result.detail


def test_a_quota_above_the_yaml_passes_and_says_so(aws: Aws) -> None:
    lambda_account(aws, limit=3000, unreserved=3000)
    _, assumption = doctor.check_lambda_concurrency(aws, prod(), None)
    assert assumption.status == "PASS" and "may raise it to 3000" in assumption.detail


# ---- API Gateway account ----------------------------------------------------------------------------------
def test_api_gateway_role_unset_warns_that_deploy_sets_it(aws: Aws) -> None:
    result = doctor.check_api_gateway_account(aws, prod(), {"throttleSettings": {}})
    assert result.status == "WARN"
    assert "CloudWatch Logs role ARN must be set in account settings" in result.detail
    assert "custom resource" in result.fix and "stay after `rtp destroy`" in result.detail
    assert result.doc == doctor.DOC_APIGW_LOGGING


def test_api_gateway_role_dangling_warns_with_the_fix_for_an_existing_stack(aws: Aws) -> None:
    aws.error("iam", "get_role", "NoSuchEntity", status=404)
    result = doctor.check_api_gateway_account(aws, prod(), {"cloudwatchRoleArn": ROLE_ARN})
    assert result.status == "WARN" and "no longer exists" in result.detail
    # The custom resource runs on the stack's first deploy only: an existing stack gets the manual fix.
    assert "first deploy" in result.fix and "aws apigateway update-account" in result.fix


def test_api_gateway_role_present_and_trusted_passes(aws: Aws) -> None:
    role_exists(aws)
    result = doctor.check_api_gateway_account(aws, prod(), {"cloudwatchRoleArn": ROLE_ARN})
    assert result.status == "PASS" and ROLE_ARN in result.detail


def test_api_gateway_role_that_does_not_trust_api_gateway_warns(aws: Aws) -> None:
    role_exists(aws, {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]})
    result = doctor.check_api_gateway_account(aws, prod(), {"cloudwatchRoleArn": ROLE_ARN})
    assert result.status == "WARN" and "trust policy" in result.detail


@settings(max_examples=examples(60), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(POLICIES | ANY_JSON)
def test_api_gateway_role_with_any_trust_policy_gets_the_custom_resources_verdict(
    aws: Aws, trust: Any
) -> None:
    """Any trust policy IAM could hold (a `"*"` principal, a string, no Statement...): no traceback, and
    PASS exactly when the account-role custom resource would keep the role."""
    role_exists(aws, trust)
    result = doctor.check_api_gateway_account(aws, prod(), {"cloudwatchRoleArn": ROLE_ARN})
    assert result.status == ("PASS" if trusts_apigateway(trust) else "WARN")


@pytest.mark.parametrize(
    "trust",
    [
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]},
        {"Statement": [{"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}}]},
        {"Version": "2012-10-17"},
        {"Statement": "sts:AssumeRole"},
    ],
    ids=["star-principal", "list-of-other-services", "no-statement", "string-statement"],
)
def test_api_gateway_role_trust_shapes_that_used_to_crash_warn(aws: Aws, trust: dict[str, Any]) -> None:
    role_exists(aws, trust)
    result = doctor.check_api_gateway_account(aws, prod(), {"cloudwatchRoleArn": ROLE_ARN})
    assert result.status == "WARN" and "trust policy" in result.detail


def test_api_gateway_role_unreadable_is_a_warning(aws: Aws) -> None:
    aws.error("iam", "get_role", "AccessDenied", status=403)
    result = doctor.check_api_gateway_account(aws, prod(), {"cloudwatchRoleArn": ROLE_ARN})
    assert result.status == "WARN" and "could not check" in result.detail and "iam:GetRole" in result.detail


@pytest.mark.parametrize(
    ("rate", "burst", "status"), [(10000.0, 5000, "PASS"), (100.0, 5000, "WARN"), (10000.0, 200, "WARN")]
)
def test_stage_throttle_against_the_account_throttle(rate: float, burst: int, status: str) -> None:
    result = doctor.check_api_gateway_throttle(
        prod(), {"throttleSettings": {"rateLimit": rate, "burstLimit": burst}}
    )
    assert result.status == status  # prod asks 500 req/s, burst 1000
    if status == "WARN":
        assert "429" in result.detail and result.doc == doctor.DOC_APIGW_THROTTLING


# ---- alarm e-mail -----------------------------------------------------------------------------------------
def subscriptions(aws: Aws, *entries: tuple[str, str]) -> None:
    aws.ok(
        "sns",
        "list_subscriptions_by_topic",
        {
            "Subscriptions": [
                {
                    "SubscriptionArn": arn,
                    "Owner": ACCOUNT,
                    "Protocol": "email",
                    "Endpoint": email,
                    "TopicArn": TOPIC,
                }
                for email, arn in entries
            ]
        },
        {"TopicArn": TOPIC},
    )


DEPLOYED = stack(AlarmTopicArn=TOPIC)["Stacks"][0]


def test_pending_alarm_email_warns_with_the_fix(aws: Aws) -> None:
    subscriptions(aws, ("data-platform-oncall@example.com", "PendingConfirmation"))
    result = doctor.check_alarm_email(aws, prod(), DEPLOYED, REGION)
    assert result.status == "WARN" and "has not confirmed" in result.detail
    assert "Confirm subscription" in result.fix and "48 h" in result.fix


def test_confirmed_alarm_email_passes(aws: Aws) -> None:
    subscriptions(aws, ("Data-Platform-Oncall@example.com", f"{TOPIC}:0f1e2d3c"))
    assert doctor.check_alarm_email(aws, prod(), DEPLOYED, REGION).status == "PASS"


def test_missing_alarm_email_subscription_warns(aws: Aws) -> None:
    subscriptions(aws, ("someone-else@example.com", f"{TOPIC}:1"))
    result = doctor.check_alarm_email(aws, prod(), DEPLOYED, REGION)
    assert result.status == "WARN" and "not subscribed" in result.detail
    assert f"aws sns subscribe --region {REGION} --topic-arn {TOPIC}" in result.fix


def test_prod_without_an_alarm_email_warns_dev_does_not(aws: Aws) -> None:
    no_email = prod().model_copy(update={"alarms": prod().alarms.model_copy(update={"email": None})})
    assert doctor.check_alarm_email(aws, no_email, None, REGION).status == "WARN"
    assert doctor.check_alarm_email(aws, load_config("dev"), None, REGION).status == "PASS"


# ---- facts from the real synthesized assembly -------------------------------------------------------------
def test_facts_from_the_synthesized_assembly(synthesized: Any) -> None:
    """The pinned aws-cdk-lib's template asserts a minimum bootstrap version, the manifest agrees, and the
    Powertools layer is one of the SSM parameters the template resolves at deploy time."""
    from stack.functions import POWERTOOLS_LAYER_PARAMETER as SHIPPED_LAYER_PARAMETER

    result = synthesized["dev"]
    facts = doctor.assembly_facts(result.template_path, None, "rtp-dev")
    rule_minimum = doctor.min_version_from_rule(result.template)
    assert rule_minimum is not None and rule_minimum >= 6
    manifest = json.loads((result.template_path.parent / "manifest.json").read_text())
    required = manifest["artifacts"]["rtp-dev"]["properties"]["requiresBootstrapStackVersion"]
    assert facts.min_bootstrap_version == max(rule_minimum, required)
    assert facts.bootstrap_parameter == BOOTSTRAP_PARAMETER
    assert facts.ssm_parameters == (SHIPPED_LAYER_PARAMETER,)
    requalified = doctor.assembly_facts(result.template_path, "myqualif", "rtp-dev")
    assert requalified.bootstrap_parameter == "/cdk-bootstrap/myqualif/version"


def test_facts_take_the_stricter_of_rule_and_manifest(tmp_path: Path) -> None:
    template = {
        "Parameters": {
            "BootstrapVersion": {
                "Type": "AWS::SSM::Parameter::Value<String>",
                "Default": BOOTSTRAP_PARAMETER,
            },
            "Layer": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/aws/service/x"},
            "Plain": {"Type": "String", "Default": "y"},
        },
        "Rules": {
            "CheckBootstrapVersion": {
                "Assertions": [
                    {
                        "Assert": {
                            "Fn::Not": [{"Fn::Contains": [["1", "2", "3", "4", "5", "6", "7"], {"Ref": "x"}]}]
                        }
                    }
                ]
            }
        },
    }
    path = tmp_path / "s.template.json"
    path.write_text(json.dumps(template))
    assert doctor.assembly_facts(path) == AssemblyFacts(BOOTSTRAP_PARAMETER, 8, ("/aws/service/x",))
    manifest = {
        "artifacts": {
            "s": {"type": "aws:cloudformation:stack", "properties": {"requiresBootstrapStackVersion": 21}}
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert doctor.assembly_facts(path, stack_name="s").min_bootstrap_version == 21


def test_cli_bootstrap_template_version(tmp_path: Path) -> None:
    text = (
        "Resources:\n  CdkBootstrapVersion:\n    Type: AWS::SSM::Parameter\n"
        "    Properties:\n      Value: '29'\n"
    )
    template = tmp_path / cdk_service.CLI_BOOTSTRAP_TEMPLATE
    template.parent.mkdir(parents=True)
    template.write_text(text)
    assert cdk_service.cli_bootstrap_template_version(tmp_path) == 29
    assert cdk_service.cli_bootstrap_template_version(tmp_path / "none") is None
    if (cdk_service.PROJECT_ROOT / "node_modules" / cdk_service.CLI_BOOTSTRAP_TEMPLATE).is_file():
        installed = cdk_service.cli_bootstrap_template_version()
        assert installed is not None and installed >= 6


def test_bootstrap_qualifier_from_cdk_json(tmp_path: Path) -> None:
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps({"context": {"env": "dev"}}))
    assert cdk_service.bootstrap_qualifier(path) is None
    path.write_text(json.dumps({"context": {"@aws-cdk/core:bootstrapQualifier": "abc123xyz"}}))
    assert cdk_service.bootstrap_qualifier(path) == "abc123xyz"
    assert cdk_service.bootstrap_qualifier(tmp_path / "missing.json") is None
    assert cdk_service.bootstrap_qualifier() is None  # this repository uses the default qualifier


# ---- the command -----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _wider(monkeypatch: pytest.MonkeyPatch) -> None:  # the report's rows are long (tests/cli/conftest.py)
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def signed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "get_identity", lambda profile, region: IDENTITY)


def report_with(*statuses: doctor.Status) -> DoctorReport:
    report = DoctorReport("prod", ACCOUNT, REGION)
    for n, status in enumerate(statuses):
        report.checks.append(
            CheckResult(f"check {n}", status, f"detail {n}", f"fix {n}", "https://docs.aws.amazon.com/x")
        )
    return report


def test_doctor_local_is_a_usage_error() -> None:
    result = runner.invoke(cli.app, ["doctor", "--env", "local"])
    assert result.exit_code == 2 and "needs neither" in result.output


def test_doctor_unknown_environment_is_a_usage_error() -> None:
    result = runner.invoke(cli.app, ["doctor", "--env", "nosuchenv"])
    assert result.exit_code == 2 and "no such environment file" in result.output


def test_doctor_without_credentials_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    called: list[Any] = []
    monkeypatch.setattr(cli, "run_doctor", lambda *a: called.append(a))
    result = runner.invoke(cli.app, ["doctor", "--env", "dev"])
    assert result.exit_code == 2 and "no AWS credentials" in result.output
    assert called == []


@pytest.mark.parametrize(("statuses", "code"), [(("PASS", "WARN"), 0), (("PASS", "FAIL", "WARN"), 1)])
def test_doctor_exit_code_follows_the_worst_row(
    signed_in: None, monkeypatch: pytest.MonkeyPatch, statuses: tuple[doctor.Status, ...], code: int
) -> None:
    monkeypatch.setattr(cli, "run_doctor", lambda config, identity, profile: report_with(*statuses))
    result = runner.invoke(cli.app, ["doctor", "--env", "prod"])
    assert result.exit_code == code, result.output
    for n, status in enumerate(statuses):
        assert f"check {n}" in result.output and status in result.output
    assert "fix 1 https://docs.aws.amazon.com/x" in result.output
    as_json = runner.invoke(cli.app, ["doctor", "--env", "prod", "--json"])
    assert as_json.exit_code == code
    document = json.loads(as_json.output)
    assert [c["status"] for c in document["checks"]] == list(statuses) and document["ok"] is (code == 0)


def test_doctor_that_cannot_run_exits_2(signed_in: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> DoctorReport:
        raise doctor.DoctorError("no AWS region for environment 'dev'")

    monkeypatch.setattr(cli, "run_doctor", refuse)
    result = runner.invoke(cli.app, ["doctor", "--env", "dev"])
    assert result.exit_code == 2 and "no AWS region" in result.output


def test_doctor_command_end_to_end_over_stubbed_aws(
    signed_in: None, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real `diagnose` with Stubber clients: a fresh account whose Lambda quota cannot hold prod."""
    not_deployed(aws)
    bootstrapped(aws, "5")
    layer_published(aws)
    lambda_account(aws, limit=10, unreserved=10)
    apigw_account(aws, role=None)
    monkeypatch.setattr(doctor, "aws_clients", lambda profile, region: (aws, region or REGION))
    monkeypatch.setattr(doctor, "facts_for", lambda env, qualifier: FACTS)
    result = runner.invoke(cli.app, ["doctor", "--env", "prod", "--json"])
    assert result.exit_code == 1, result.output
    statuses = {c["name"]: c["status"] for c in json.loads(result.output)["checks"]}
    assert statuses["CDK bootstrap"] == "FAIL" and statuses["Lambda concurrency"] == "FAIL"
    assert statuses["API Gateway CloudWatch role"] == "WARN" and statuses["Powertools layer"] == "PASS"


def test_doctor_needs_a_region(signed_in: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "aws_clients", lambda profile, region: (Aws(), None))
    result = runner.invoke(cli.app, ["doctor", "--env", "dev"])
    assert result.exit_code == 2 and "no AWS region" in result.output
